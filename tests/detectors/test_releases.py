"""detectors.releases: a new release in an app's windows, and the judge that watches for it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.beacon import CohortKey
from detectors.pipeline.judge import Judge, WindowsRecord
from detectors.releases import MAX_RELEASES_PER_APP, NewRelease, ReleaseWatch
from detectors.windows import WindowSummary

W = 5_000


def test_a_release_there_since_the_watch_began_is_not_new_nor_is_the_top_one():
    watch = ReleaseWatch(known_after_ms=60_000, min_page_views=10, within_ms=60_000)
    found = []
    for start in range(0, 300_000, W):
        views = {"r1": 50, "r0": 5}  # r0: an old release some cached clients still run
        if start >= 120_000:
            views["r2"] = 5 if start < 200_000 else 90  # new, then it carries most traffic
        found += watch.observe("shop", start, views)
    assert {f.release for f in found} == {"r2"}
    assert all(f == NewRelease("shop", "r2", "r1", 120_000) for f in found)
    # Once it carries most of the traffic it is the app's release, no longer a new one.
    assert watch.observe("shop", 300_000, {"r1": 5, "r2": 90}) == []


def test_apps_are_watched_apart():
    watch = ReleaseWatch(known_after_ms=10_000, min_page_views=1, within_ms=W)
    for start in range(0, 20_000, W):
        watch.observe("a", start, {"a1": 10})
    assert watch.observe("b", 20_000, {"b1": 10, "b2": 3}) == []  # b just appeared: nothing known
    assert watch.observe("a", 20_000, {"a1": 10, "a2": 3}) == [NewRelease("a", "a2", "a1", 20_000)]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.dictionaries(st.text(min_size=1, max_size=4), st.integers(0, 30), max_size=12), max_size=40))
def test_memory_stays_bounded_and_every_answer_is_a_release_of_the_window(windows):
    watch = ReleaseWatch(known_after_ms=2 * W, min_page_views=5, within_ms=3 * W, max_releases=8)
    for i, views in enumerate(windows):
        for new in watch.observe("shop", i * W, views):
            assert views.get(new.release, 0) > 0 and new.baseline != new.release
            assert new.first_seen <= i * W
        a = watch.apps["shop"]
        assert len(a.first_seen) <= 8 and len(a.last_seen) <= 8 and len(a.recent) <= 3


def test_an_invented_flood_costs_at_most_the_release_cap():
    watch = ReleaseWatch(known_after_ms=0, min_page_views=1, within_ms=W)
    watch.observe("shop", 0, {f"fake-{i}": 1 for i in range(10_000)})
    assert len(watch.apps["shop"].first_seen) == MAX_RELEASES_PER_APP
    assert len(watch.apps["shop"].recent[-1][1]) == MAX_RELEASES_PER_APP


def _record(start: int, views: dict[tuple[str, str], int]) -> WindowsRecord:
    """One source's record closing the window at ``start``: page views per (app, release)."""
    summaries = []
    for (app, release), n in views.items():
        s = WindowSummary.empty(CohortKey(app, release, None, "desktop"), start, W)
        s.page_views = n
        summaries.append(s)
    return WindowsRecord(0, start + W, False, summaries)


def test_the_judge_collects_new_releases_of_the_apps_that_opted_in_only():
    watching = Judge(1, auto_rollout_apps=frozenset({"shop"}),
                     release_watch=ReleaseWatch(known_after_ms=30_000, min_page_views=10, within_ms=30_000))
    everyone = Judge(1, auto_rollout_apps=frozenset({"*"}),
                     release_watch=ReleaseWatch(known_after_ms=30_000, min_page_views=10, within_ms=30_000))
    quiet = Judge(1, release_watch=ReleaseWatch(known_after_ms=30_000, min_page_views=10, within_ms=30_000))
    for start in range(0, 120_000, W):
        views = {("shop", "r1"): 40, ("cart", "c1"): 40}
        if start >= 60_000:
            views.update({("shop", "r2"): 4, ("cart", "c2"): 4})
        for judge in (watching, everyone, quiet):
            judge.add(_record(start, views))
    assert {(n.app, n.release, n.baseline, n.first_seen) for n in watching.new_releases} == {("shop", "r2", "r1", 60_000)}
    assert {(n.app, n.release) for n in everyone.new_releases} == {("shop", "r2"), ("cart", "c2")}
    assert quiet.new_releases == []
