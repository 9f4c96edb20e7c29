"""The series behind the rollout page (streams.http.series), from verdict events the decision
core made: one simulated rollout whose canary's LCP regresses, with a dry-run policy beside it.

Also the route ``GET /v1/rollouts/{id}/series``: its JSON, one chart's, the 404s and 400s, the
read rules, and that a history is read again only when the latest verdict changed.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import orjson
import pytest

from detectors.pipeline.run import Run
from detectors.policy import parse_policy
from detectors.rollout import Rollout
from streams.http import series as series_module
from streams.http.series import METRIC_COLUMNS, build_series, dry_run_key, series_json, verdict_events
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons
from tests.http.serve import AUTHZ, api, backend

SCENARIO = replace(SCENARIOS["stationary"], duration_s=300.0, canary_share=0.2, regressions=(Regression("LCP", 1.25, start_s=120.0),))
POLICY = parse_policy("name: page-test\nmetrics:\n  - metric: LCP\n  - metric: errors\n"
                      "segments: [all, mobile]\nwarmup: 15s\nmin_duration: 2m\n")
DRY = replace(parse_policy("name: strict\nalpha: 0.01\nmetrics:\n  - metric: LCP\nwarmup: 0s\n"), dry_run=True)
ROLLOUT = Rollout(f"{SCENARIO.app}:{SCENARIO.canary}", SCENARIO.app, SCENARIO.canary, SCENARIO.baseline,
                  SCENARIO.start_ms, POLICY, dry_run_policies=(DRY,))


@cache
def _judged() -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    records = [orjson.dumps(b) for b in generate_beacons(SCENARIO, seed=3)]
    run = Run(ROLLOUT)
    run.add(0, list(enumerate(records)))
    verdicts = run.finish(flush=True).verdicts
    # As they come back from rum.verdicts: JSON.
    events = [orjson.loads(orjson.dumps(v.to_dict())) for v in verdicts]
    return (tuple(e for e in events if not e["policy"]["dry_run"]),
            tuple(e for e in events if e["policy"]["dry_run"]))


def history() -> list[dict]:
    """The enforcing policy's verdict events, as the history endpoint reads them."""
    return [dict(e) for e in _judged()[0]]


def dry_history() -> list[dict]:
    return [dict(e) for e in _judged()[1]]


def filled_backend(events: list[dict] | None = None, dry: list[dict] | None = None, rollout: Rollout = ROLLOUT):
    """A backend holding ``rollout`` with its history (and latest verdicts) from the core."""
    events = history() if events is None else events
    dry = dry_history() if dry is None else dry
    b, rec = backend(rollout)
    rec.history[rollout.id] = events
    rec.history[dry_run_key(rollout.id, DRY.name)] = dry
    if events:
        b.latest[rollout.id] = events[-1]
    if dry:
        b.latest[dry_run_key(rollout.id, DRY.name)] = dry[-1]
    return b, rec


def test_the_core_run_is_what_the_page_is_tested_on():
    events = history()
    assert events[-1]["verdict"] == "rollback" and len(events) > 20
    assert events[0]["reason_codes"][0] == "warmup"
    assert dry_history() and all(e["rollout"] == ROLLOUT.id for e in dry_history())


def test_one_point_per_verdict_in_every_series():
    events = history()
    s = build_series(ROLLOUT, events, {DRY.name: dry_history()})
    assert [(m["metric"], m["segment"]) for m in s.metrics] == [
        ("LCP", "all"), ("LCP", "mobile"), ("errors", "all"), ("errors", "mobile")]
    for m in s.metrics:
        assert m["at"] == [e["at"] for e in events]
        for column in METRIC_COLUMNS:
            assert len(m[column]) == len(events), (m["metric"], column)
        assert all(v is not None for v in m["e_rollback"] + m["e_promote"] + m["e_worse"])
    lcp = s.metric("LCP", "all")
    assert lcp["threshold_rollback"] == events[-1]["metrics"][0]["threshold_rollback"]
    assert lcp["rollback_tolerance"] == POLICY.metrics[0].rollback_tolerance
    assert lcp["e_rollback"][-1] == events[-1]["metrics"][0]["e_rollback"]
    assert lcp["effect"][-1] == pytest.approx(events[-1]["metrics"][0]["ratio"] - 1)
    assert s.timeline["seq"] == [e["seq"] for e in events]
    assert s.timeline["verdict"][-1] == "rollback" and s.timeline["code"][0] == "warmup"
    assert len(s.dry_runs[DRY.name]["seq"]) == len(dry_history())
    assert not s.live  # decided
    assert s.quality["at"] == [e["at"] for e in events]
    assert s.quality["canary_share"][-1] == events[-1]["data_quality"]["canary_share"]
    assert len(s.quality["late_beacons"]) == len(events)


def test_each_window_has_its_own_values_and_page_views_beside_the_cumulative_ones():
    events = history()
    s = build_series(ROLLOUT, events)
    lcp = s.metric("LCP", "all")
    assert lcp["window_canary"] == [e["metrics"][0]["window_canary"] for e in events]
    judged = [i for i, v in enumerate(lcp["window_canary"]) if v is not None]
    assert len(judged) > 20 and any(lcp["window_canary"][i] != lcp["canary"][i] for i in judged)
    views = [e["data_quality"]["window_page_views"] for e in events]
    assert s.quality["views_canary"] == [v["canary"] for v in views] and min(s.quality["views_canary"]) > 0
    assert s.quality["views_baseline"] == [v["baseline"] for v in views]
    late = [e["data_quality"]["late_beacons"] for e in events]
    assert s.quality["late_window"] == [float(b - a) for a, b in zip([0, *late], late)]
    assert s.quality["incident"] == [False] * len(events)  # the policy watches for incidents; none here
    assert s.markers == []


def _flagged(events: list[dict], incident: set[int] = frozenset()) -> list[dict]:
    out = []
    for i, e in enumerate(events):
        e = orjson.loads(orjson.dumps(e))
        e["detectors"]["global_anomaly"] = i in incident
        out.append(e)
    return out


def test_markers_for_split_changes_and_each_run_of_incident_windows():
    events = _flagged(history(), incident={10, 11, 12, 13, 20})
    split_at = events[5]["at"] - 1000
    rollout = ROLLOUT.with_share(0.25, split_at)
    got = build_series(rollout, events).markers
    assert [(m["at"], m["kind"]) for m in got] == [(split_at, "split"), (events[10]["at"], "incident"),
                                                  (events[20]["at"], "incident")]
    assert got[0]["label"] == "split change: the canary's expected share is now 25.0%"
    assert got[1]["label"] == "global incident: the baseline moved too, 4 windows in a row"
    assert got[2]["label"] == "global incident: the baseline moved too, 1 window in a row"
    out = series_json(build_series(rollout, events))
    assert out["markers"] == got and out["share_changes"] == [[split_at, 0.25]]


def test_markers_of_odd_quality_fields_are_skipped_not_trusted():
    events = _flagged(history())
    events[3]["detectors"]["global_anomaly"] = "yes"
    events[5]["data_quality"]["window_page_views"] = [1, 2]
    s = build_series(ROLLOUT, events)
    assert s.quality["incident"][3] is None
    assert s.quality["views_canary"][5] is None and s.markers == []


def test_a_repeated_event_and_what_is_not_a_verdict_count_nothing():
    events = history()
    noisy = [events[0], events[0], "not an event", {"seq": "x"}, *events[1:], dict(events[3])]
    s = build_series(ROLLOUT, noisy)
    assert len(s.events) == len(events)
    assert len(s.metric("LCP", "all")["at"]) == len(events)


def test_fields_of_the_wrong_type_read_as_null():
    bad = {"seq": 1, "at": 5000, "verdict": "continue", "reason_codes": [7],
           "metrics": [{"metric": "LCP", "segment": "all", "e_rollback": "1e9", "ratio": True, "n_canary": 2.5},
                       {"metric": 3, "segment": "all"}, "junk"]}
    s = build_series(ROLLOUT, [bad])
    (m,) = s.metrics
    assert m["e_rollback"] == [None] and m["effect"] == [None] and m["n_canary"] == [None]
    assert s.timeline["code"] == [None]


def test_the_bracket_narrows_as_evidence_grows():
    lcp = build_series(ROLLOUT, history()).metric("LCP", "all")
    lower = [v for v in lcp["worse_by_at_least"] if v is not None]
    assert lower and lower[-1] >= lower[0]  # proven worse, by more as the windows come
    assert lcp["status"][-1] == "worse"


# -- the route --------------------------------------------------------------------------------


def test_the_series_endpoint_serves_every_chart():
    b, _ = filled_backend()
    reply = api(b).call("GET", f"/v1/rollouts/{ROLLOUT.id}/series")
    assert reply.status == 200 and reply.content_type.startswith("application/json")
    want = series_json(build_series(ROLLOUT, history(), {DRY.name: dry_history()}, b.latest[ROLLOUT.id]))
    assert reply.body == orjson.loads(orjson.dumps(want))
    assert reply.body["windows"] == len(history()) and reply.body["live"] is False
    assert reply.body["policy"]["hash"] == POLICY.hash


def test_one_chart_by_metric_and_segment():
    b, _ = filled_backend()
    one = api(b).call("GET", f"/v1/rollouts/{ROLLOUT.id}/series?metric=LCP&segment=mobile")
    assert one.status == 200
    assert [(m["metric"], m["segment"]) for m in one.body["metrics"]] == [("LCP", "mobile")]
    both = api(b).call("GET", f"/v1/rollouts/{ROLLOUT.id}/series?metric=errors")
    assert [m["segment"] for m in both.body["metrics"]] == ["all", "mobile"]


def test_refusals_say_what_is_wrong():
    b, _ = filled_backend()
    served = api(b)
    missing = served.call("GET", "/v1/rollouts/shop:nope/series")
    assert missing.status == 404 and missing.error == "no rollout 'shop:nope'"
    unknown = served.call("GET", f"/v1/rollouts/{ROLLOUT.id}/series?metric=INP")
    assert unknown.status == 404 and "LCP/all" in unknown.error and "'INP'" in unknown.error
    alone = served.call("GET", f"/v1/rollouts/{ROLLOUT.id}/series?segment=all")
    assert alone.status == 400 and "give metric too" in alone.error
    long = served.call("GET", f"/v1/rollouts/{ROLLOUT.id}/series?metric={'x' * 65}")
    assert long.status == 400 and "1 to 64 characters" in long.error


def test_the_series_follow_the_read_rules():
    b, _ = filled_backend()
    path = f"/v1/rollouts/{ROLLOUT.id}/series"
    assert api(b).call("GET", path, headers={}).status == 401
    assert api(b).call("GET", path, headers={"Authorization": "Bearer wrong"}).status == 403
    assert api(b, read_open=True).call("GET", path, headers={}).status == 200


def test_an_id_with_a_slash_is_reached_percent_encoded():
    rollout = replace(ROLLOUT, id="team/shop+web:r2")
    b, _ = filled_backend([dict(e, rollout=rollout.id) for e in history()], [], rollout)
    reply = api(b).call("GET", "/v1/rollouts/team%2Fshop%2Bweb:r2/series")
    assert reply.status == 200 and reply.body["rollout"] == "team/shop+web:r2"


def test_the_history_is_read_again_only_when_the_latest_verdict_changed():
    series_module._cache.clear()
    events = history()
    b, rec = filled_backend(events[:10], [])
    served = api(b)
    path = f"/v1/rollouts/{ROLLOUT.id}/series"
    first, again = served.calls([("GET", path, None, AUTHZ, None)] * 2)
    assert first.body == again.body and first.body["windows"] == 10
    assert rec.history_asked.count(ROLLOUT.id) == 1
    rec.history[ROLLOUT.id] = events[:11]  # a new verdict: on the topic, then the latest
    b.latest[ROLLOUT.id] = events[10]
    assert served.call("GET", path).body["windows"] == 11
    assert rec.history_asked.count(ROLLOUT.id) == 2


def test_a_history_that_is_not_a_list_is_an_empty_one():
    assert verdict_events(None) == [] and verdict_events({"seq": 1}) == []
