"""One page view counted once, however many beacons carry it (detectors/views.py, in windows and stage 1)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.beacon import Beacon, BeaconBatch
from detectors.pipeline.aggregate import Checkpoint, PartitionAggregator
from detectors.views import PageViews
from detectors.windows import TumblingWindows

T = 1_763_856_000_000
APP, RELEASE = "shop-web", "r2"


def beacon(ts: int, view: str | None, metrics: dict | None = None, errors: int = 0,
           session: str | None = None, id: str | None = None, part: bool = False) -> Beacon:  # noqa: A002
    return Beacon(ts=T + ts, app=APP, release=RELEASE, metrics=metrics or {}, errors=errors, device="desktop",
                  session=session, view=view, id=id, part=part)


def totals(summaries) -> dict:
    out = {"page_views": 0, "error_views": 0, "sessions": 0, "late": 0, "capped": 0}
    counts: dict[str, int] = {}
    for s in summaries:
        for k in ("page_views", "error_views", "sessions", "late", "capped"):
            out[k] += getattr(s, k)
        for m, sk in s.sketches.items():
            counts[m] = counts.get(m, 0) + sk.count
    out["counts"] = {m: n for m, n in counts.items() if n}
    return out


def count(beacons: list[Beacon], chunk: int = 1000, **kw) -> dict:
    w = TumblingWindows(5000, 0, views=PageViews(horizon_ms=kw.pop("horizon_ms", 600_000), capacity=1024), **kw)
    closed = []
    for i in range(0, len(beacons), chunk):
        closed += w.add(BeaconBatch.from_beacons(beacons[i:i + chunk]))
    return totals(closed + w.flush())


def test_a_page_view_split_over_beacons_and_windows_is_one_page_view():
    """web-vitals' way: FCP and TTFB at load, LCP soon after, CLS and INP on hide minutes later."""
    beacons = [beacon(0, "v1", {"FCP": 900.0}, session="s1"), beacon(10, "v1", {"TTFB": 200.0}, session="s1"),
               beacon(1500, "v1", {"LCP": 2100.0}, session="s1"),
               beacon(180_000, "v1", {"CLS": 0.05, "INP": 120.0}, session="s1")]
    assert count(beacons) == {"page_views": 1, "error_views": 0, "sessions": 1, "late": 0, "capped": 0,
                              "counts": {"LCP": 1, "INP": 1, "CLS": 1, "FCP": 1, "TTFB": 1}}


def test_each_metric_counts_its_first_value_and_the_error_view_once():
    beacons = [beacon(0, "v1", {"LCP": 2000.0, "CLS": 0.01}), beacon(100, "v1", {"LCP": 2000.0, "CLS": 0.3}, errors=1),
               beacon(200, "v1", {"CLS": 0.4}, errors=2)]
    w = TumblingWindows(5000, 0, views=PageViews(600_000, 1024))
    w.add(BeaconBatch.from_beacons(beacons))
    (summary,) = w.flush()
    assert (summary.page_views, summary.error_views, summary.errors) == (1, 1, 3)
    assert summary.sketches["CLS"].count == 1 and summary.over_good["CLS"] == 0  # the first, 0.01


def test_beacons_without_a_view_are_each_a_page_view_and_views_are_per_app():
    beacons = [beacon(0, None, {"LCP": 1.0}), beacon(1, None, {"LCP": 1.0})]
    other = Beacon(ts=T + 2, app="blog", release=RELEASE, metrics={"LCP": 1.0}, view="v1")
    assert count(beacons + [beacon(3, "v1"), other])["page_views"] == 4


def test_a_beacon_after_the_horizon_starts_the_page_view_again():
    beacons = [beacon(0, "v1", {"LCP": 1.0}), beacon(70_000, "other"), beacon(70_001, "v1", {"LCP": 2.0})]
    assert count(beacons, horizon_ms=60_000)["page_views"] == 3
    assert count(beacons, horizon_ms=80_000)["page_views"] == 2


def test_the_later_beacons_of_a_capped_page_view_are_not_counted_either():
    beacons = [beacon(i, f"v{i}", {"LCP": 1.0}, session="bot") for i in range(3)]
    beacons += [beacon(10 + i, f"v{i}", {"CLS": 0.2}, errors=1, session="bot") for i in range(3)]
    got = count(beacons, max_views_per_session=2)
    assert (got["page_views"], got["capped"], got["error_views"], got["counts"]) == (2, 1, 2, {"LCP": 2, "CLS": 2})


def test_a_part_counts_in_its_sessions_latest_page_view():
    """Faro's way: the page load's requests name its view, an exception alone names none."""
    beacons = [beacon(0, "nav1", {"FCP": 900.0, "TTFB": 5.0}, session="s1"),
               beacon(400, None, errors=1, session="s1", id="e1", part=True),
               beacon(900, None, errors=1, session="s1", id="e2", part=True),  # a second error request
               beacon(2000, "nav1", {"LCP": 216.0}, session="s1")]
    assert count(beacons) == {"page_views": 1, "error_views": 1, "sessions": 1, "late": 0, "capped": 0,
                              "counts": {"LCP": 1, "FCP": 1, "TTFB": 1}}


def test_a_part_joins_the_sessions_page_view_it_follows_not_an_earlier_one():
    beacons = [beacon(0, "v1", {"TTFB": 5.0}, session="s1"), beacon(5000, "v2", {"TTFB": 5.0}, session="s1"),
               beacon(6000, None, {"CLS": 0.2}, errors=1, session="s1", id="p", part=True),
               beacon(7000, "v2", {"CLS": 0.3}, session="s1")]  # v2's CLS was counted: the part's
    got = count(beacons)
    assert (got["page_views"], got["error_views"], got["counts"]) == (2, 1, {"CLS": 1, "TTFB": 2})


def test_parts_without_a_session_count_what_they_carry_once_and_are_no_page_views():
    """web-vitals one metric per request: the TTFB beacon is the page view, the others parts."""
    page = [beacon(0, None, {"TTFB": 4.0}, id="t"), beacon(1, None, {"FCP": 104.0}, id="f", part=True),
            beacon(2, None, {"LCP": 252.0}, id="l", part=True), beacon(9000, None, {"CLS": 0.09}, id="c", part=True)]
    retried = beacon(9001, None, {"CLS": 0.09}, id="c", part=True)  # a copy of the CLS send
    assert count(page + [retried]) == {"page_views": 1, "error_views": 0, "sessions": 1, "late": 0, "capped": 0,
                                       "counts": {"LCP": 1, "CLS": 1, "FCP": 1, "TTFB": 1}}


def test_a_part_whose_sessions_page_view_is_past_the_horizon_joins_none():
    beacons = [beacon(0, "v1", {"TTFB": 5.0}, session="s1"),
               beacon(70_000, None, {"CLS": 0.2}, errors=1, session="s1", id="p", part=True),
               beacon(75_000, "v1", {"CLS": 0.2}, errors=1, session="s1")]
    got = count(beacons, horizon_ms=60_000)  # v1 is forgotten: the part counts alone, v1 starts again
    assert (got["page_views"], got["error_views"], got["counts"]) == (2, 2, {"CLS": 2, "TTFB": 1})
    got = count(beacons, horizon_ms=80_000)  # the part is v1's
    assert (got["page_views"], got["error_views"], got["counts"]) == (1, 1, {"CLS": 1, "TTFB": 1})


def test_parts_are_no_page_views_without_a_view_table_either():
    w = TumblingWindows(5000, 0)
    w.add(BeaconBatch.from_beacons([beacon(0, None, {"TTFB": 5.0}, id="t"),
                                    beacon(1, None, {"LCP": 9.0}, errors=1, id="l", part=True)]))
    (summary,) = w.flush()
    assert (summary.page_views, summary.error_views, summary.sketches["LCP"].count) == (1, 1, 1)


parts_of = st.lists(st.tuples(st.integers(0, 60_000), st.sampled_from(["a", "b", None]),
                              st.sampled_from(["s1", "s2", None]), st.sampled_from(["p1", "p2", "p3", None]),
                              st.sampled_from(["LCP", "CLS", "TTFB"]), st.booleans()), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(parts_of, st.integers(1, 20))
def test_how_beacons_and_parts_are_batched_never_changes_what_is_counted(rows, chunk):
    beacons = [beacon(t, v if p is None else None, {m: 100.0 + t}, errors=int(e), session=s, id=p, part=p is not None)
               for t, v, s, p, m, e in sorted(rows, key=lambda r: r[0])]
    got = count(beacons, chunk=chunk)
    assert got == count(beacons, chunk=len(beacons))
    assert got["page_views"] == len({b.view for b in beacons if b.view}) + sum(
        1 for b in beacons if b.view is None and not b.part)


views_of = st.lists(st.tuples(st.integers(0, 60_000), st.sampled_from(["a", "b", "c", "d", None]),
                              st.sampled_from(["LCP", "CLS", "INP"]), st.booleans()), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(views_of, st.integers(1, 20))
def test_how_beacons_are_batched_never_changes_what_is_counted(rows, chunk):
    beacons = [beacon(t, v, {m: 100.0 + t}, errors=int(e), session=v) for t, v, m, e in sorted(rows, key=lambda r: r[0])]
    assert count(beacons, chunk=chunk) == count(beacons, chunk=len(beacons))


@settings(max_examples=150, deadline=None)
@given(views_of)
def test_page_views_are_the_distinct_views_plus_the_beacons_without_one(rows):
    beacons = [beacon(t, v, {m: 1.0}, errors=int(e)) for t, v, m, e in sorted(rows, key=lambda r: r[0])]
    got = count(beacons)
    with_view = {b.view for b in beacons if b.view}
    assert got["page_views"] == len(with_view) + sum(b.view is None for b in beacons)
    assert got["error_views"] == len({b.view for b in beacons if b.view and b.errors}) + sum(
        1 for b in beacons if b.view is None and b.errors)
    for m in ("LCP", "CLS", "INP"):
        assert got["counts"].get(m, 0) == len({b.view for b in beacons if b.view and m in b.metrics}) + sum(
            1 for b in beacons if b.view is None and m in b.metrics)


def record(b: Beacon) -> bytes:
    return orjson.dumps({"ts": b.ts, "app": b.app, "release": b.release, "view": b.view, "metrics": b.metrics,
                         "errors": b.errors, "device": b.device})


def test_a_restart_from_the_checkpoint_joins_page_views_that_began_before_it():
    """Views begun before the checkpoint and continued after it count once across a restart,
    as in a run without one: the restarted aggregator re-reads from ``views_from``."""
    beacons = [beacon(i * 1000, f"v{i % 7}", {"LCP": 100.0} if i < 7 else {"CLS": 0.01}) for i in range(40)]
    records = list(enumerate(map(record, beacons)))

    def through(agg, recs):
        closed = []
        for r in recs:
            closed += agg.process([r]).closed
        return closed

    whole = PartitionAggregator(0, 5000, 0, view_horizon_ms=600_000, view_slots=1024)
    expected = totals(through(whole, records) + whole.flush().closed)
    first = PartitionAggregator(0, 5000, 0, view_horizon_ms=600_000, view_slots=1024)
    closed, checkpoint = [], None
    for r in records[:20]:
        step = first.process([r])
        closed += step.closed
        checkpoint = step.checkpoint or checkpoint
    assert checkpoint is not None and checkpoint.views_from == 0 < checkpoint.offset
    restored = Checkpoint.from_dict(orjson.loads(orjson.dumps(checkpoint.to_dict())))
    assert restored == checkpoint
    second = PartitionAggregator(0, 5000, 0, restored, view_horizon_ms=600_000, view_slots=1024)
    # as the judge keeps them: the first publication of each window and cohort
    kept = {(s.start, s.key): s for s in closed}
    for s in through(second, records[restored.read_from:]) + second.flush().closed:
        kept.setdefault((s.start, s.key), s)
    got = totals(kept.values())
    assert got == expected and expected["page_views"] == 7


def test_views_from_moves_on_once_page_views_are_past_the_horizon():
    agg = PartitionAggregator(0, 5000, 0, view_horizon_ms=10_000, view_slots=1024)
    checkpoint = None
    for i in range(60):
        step = agg.process([(i, record(beacon(i * 1000, f"v{i}", {"LCP": 1.0})))])
        checkpoint = step.checkpoint or checkpoint
    assert 40 <= checkpoint.views_from < checkpoint.offset  # about 10 s of records before it


def test_the_table_has_a_fixed_size_and_counts_views_forgotten_early():
    views = PageViews(horizon_ms=600_000, capacity=8)
    n = 200
    views.observe(["a"] * n, [f"v{i}" for i in range(n)], list(range(n)), list(range(n)), [1] * n, [False] * n)
    assert views.nbytes == 8 * (16 + 24) and views.evicted_early >= n - 8


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_a_horizon_must_be_positive_whole_ms(bad):
    with pytest.raises(ValueError, match="horizon_ms"):
        PageViews(horizon_ms=bad)


def test_copies_of_a_beacon_without_a_view_are_one_page_view():
    """A retry stored twice (two ingestion replicas, or a record the producer gave up on
    that landed anyway beside its retry) carries the same id: it counts once."""
    first = {"ts": T, "app": APP, "release": RELEASE, "id": "b-1", "metrics": {"LCP": 900.0}, "errors": 1}
    other = {**first, "id": "b-2"}
    records = list(enumerate(orjson.dumps(b) for b in (first, first, other, {**first, "id": 7})))
    agg = PartitionAggregator(0, 5000, 0, view_horizon_ms=600_000, view_slots=1024)
    agg.process(records)
    (summary,) = agg.flush().closed
    # b-1 once, b-2, and the beacon whose id is no string (a page view of its own)
    assert (summary.page_views, summary.error_views, summary.sketches["LCP"].count) == (3, 3, 3)
