"""The series behind the rollout page's charts, from a rollout's verdict history.

``GET /v1/rollouts/{id}/series`` serves them as JSON (``?metric=LCP&segment=all`` for one
chart's); :mod:`streams.http.pages` draws them. Everything comes from the verdict events
(``rum.verdicts``, read through :attr:`~streams.http.backend.Backend.history`), one point
per event, so one per judged window:

* per (metric, segment): the rollback, "worse at all" and promote e-values with their
  thresholds, the cumulative canary and baseline estimates (p75 or rate over every window
  so far, as the gate computes them), the measured effect (ratio − 1) and the anytime-valid
  bracket ``worse_by_at_least`` / ``not_worse_than``, the samples counted and the status;
* the verdict timeline of the enforcing policy and of each dry-run policy: seq, time,
  verdict, severity, the first (deciding) reason code, and whether an override set it;
* per (metric, segment) too: the window's own canary and baseline values (its p75 or rate
  alone, ``window_canary`` / ``window_baseline``), null for a window an arm had no sample in;
* data quality: the canary's share of page views so far against the expected one, each
  window's page views per arm, late beacons, the sample-ratio e-value, and whether the
  window was flagged as a global incident;
* markers: the rollout's split changes, and the first window of each run of incident
  windows (:func:`markers`).

Which stage-1 partitions were silent when a window was judged is not in the history: the
judge learns it from the live heartbeat, on the wall clock, and a verdict must be the same
live and replayed, so it is not written into verdicts.

Columns, not rows: each series is a list aligned with its ``at`` list (epoch ms of the
window's end), ``null`` where the event had no value (no estimate yet, a bound not proven).
A history may repeat an event (at-least-once); the first of each ``seq`` counts. An event
that is not a verdict (no integer ``seq``) is skipped, and a field of the wrong type reads
as ``null``: the page shows what the topic holds without trusting it.

Reading a history scans ``rum.verdicts``, so :func:`load` keeps the series of the last
rollouts asked for until their latest verdict (or the rollout) changes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from detectors.rollout import Rollout
from detectors.verdict import Verdict
from streams.http import auth
from streams.http.backend import Backend, backend_of
from streams.http.replies import error, json, shown
from streams.http.rollouts import rollout_or_404

__all__ = ["METRIC_COLUMNS", "QUALITY_COLUMNS", "quality", "ROUTES", "Series", "build_series", "dry_run_key", "load",
           "markers", "metric_series", "timeline", "series_json"]

#: The per-(metric, segment) columns, each aligned with that series' ``at``.
METRIC_COLUMNS = ("e_rollback", "e_worse", "e_promote", "canary", "baseline", "effect",
                  "worse_by_at_least", "not_worse_than", "n_canary", "n_baseline", "status",
                  "window_canary", "window_baseline")
_FLOATS = ("e_rollback", "e_worse", "e_promote", "canary", "baseline", "worse_by_at_least", "not_worse_than",
           "window_canary", "window_baseline")
_CACHED = 32  # rollouts whose series are kept (each some 1 MB for a 2-hour rollout with 6 metrics)
_MAX_QUERY = 64


def dry_run_key(rollout_id: str, policy_name: str) -> str:
    """The verdict key of one of a rollout's dry-run policies (``ID~dry-run:NAME``)."""
    return f"{rollout_id}~dry-run:{policy_name}"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _text(x: Any) -> str | None:
    return x if isinstance(x, str) else None


def verdict_events(events: Any) -> list[dict]:
    """The verdict events of a history in ``seq`` order, the first of each ``seq`` kept."""
    seen: dict[int, dict] = {}
    for e in events if isinstance(events, list) else ():
        if isinstance(e, dict):
            seq = _int(e.get("seq"))
            if seq is not None and seq not in seen:
                seen[seq] = e
    return [seen[s] for s in sorted(seen)]


def timeline(events: list[dict]) -> dict[str, list]:
    """The verdicts of ``events`` (already :func:`verdict_events`) as columns."""
    out: dict[str, list] = {"seq": [], "at": [], "verdict": [], "severity": [], "code": [], "override": []}
    for e in events:
        codes = e.get("reason_codes")
        code = _text(codes[0]) if isinstance(codes, list) and codes else None
        out["seq"].append(e["seq"])
        out["at"].append(_int(e.get("at")))
        out["verdict"].append(_text(e.get("verdict")))
        out["severity"].append(_text(e.get("severity")))
        out["code"].append(code)
        out["override"].append(bool(code and code.startswith("override_")))
    return out


#: The data-quality columns of the verdict events: the share, late beacons and sample-ratio
#: e-value cumulative since the rollout's start, the page views per arm the window's own
#: (``late_window``: the late beacons the window added, from the cumulative count),
#: ``incident`` whether the window was flagged as a global incident.
QUALITY_COLUMNS = ("canary_share", "expected_share", "late_beacons", "srm_e", "views_canary", "views_baseline",
                   "late_window", "incident")
_CUMULATIVE = ("canary_share", "expected_share", "late_beacons", "srm_e")


def quality(events: list[dict]) -> dict[str, list]:
    """The events' ``data_quality`` as columns aligned with ``at`` (null where absent)."""
    out: dict[str, list] = {"at": [], **{c: [] for c in QUALITY_COLUMNS}}
    for e in events:
        dq = e.get("data_quality") if isinstance(e.get("data_quality"), dict) else {}
        views = dq.get("window_page_views") if isinstance(dq.get("window_page_views"), dict) else {}
        detectors = e.get("detectors") if isinstance(e.get("detectors"), dict) else {}
        out["at"].append(_int(e.get("at")))
        for c in _CUMULATIVE:
            out[c].append(_num(dq.get(c)))
        out["views_canary"].append(_int(views.get("canary")))
        out["views_baseline"].append(_int(views.get("baseline")))
        late, before = out["late_beacons"][-1], out["late_beacons"][-2] if len(out["late_beacons"]) > 1 else 0.0
        out["late_window"].append(None if late is None or before is None else max(late - before, 0.0))
        anomaly = detectors.get("global_anomaly")
        out["incident"].append(anomaly if isinstance(anomaly, bool) else None)
    return out


def markers(rollout: Rollout, q: dict[str, list]) -> list[dict[str, Any]]:
    """What the verdict timeline marks besides the verdicts, in time order: each of the
    rollout's split changes (``split``), and the first window of each run of windows flagged
    as a global incident (``incident``), with how many windows the run lasted. Each is
    ``{"at", "kind", "label"}``.
    """
    out: list[dict[str, Any]] = [
        {"at": at, "kind": "split", "label": "split change: the canary's expected share is now "
                                            + ("unknown" if share is None else f"{share:.1%}")}
        for at, share in rollout.share_changes]
    runs: list[list] = []  # [first window's end, windows]
    previous = False
    for at, flagged in zip(q["at"], q["incident"]):
        flagged = flagged is True and at is not None
        if flagged and previous:
            runs[-1][1] += 1
        elif flagged:
            runs.append([at, 1])
        previous = flagged
    out += [{"at": at, "kind": "incident",
             "label": f"global incident: the baseline moved too, {n} window{'s' * (n != 1)} in a row"}
            for at, n in runs]
    return sorted(out, key=lambda m: (m["at"], m["kind"]))


def metric_series(rollout: Rollout, events: list[dict]) -> list[dict[str, Any]]:
    """One series per (metric, segment) in the order the events list them."""
    tolerances = {m.metric: (m.rollback_tolerance, m.promote_tolerance) for m in rollout.policy.metrics}
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        at = _int(e.get("at"))
        metrics = e.get("metrics")
        if at is None or not isinstance(metrics, list):
            continue
        for m in metrics:
            if not isinstance(m, dict) or not isinstance(m.get("metric"), str) or not isinstance(m.get("segment"), str):
                continue
            key = (m["metric"], m["segment"])
            s = series.get(key)
            if s is None:
                rb, pr = tolerances.get(m["metric"], (None, None))
                s = series[key] = {"metric": m["metric"], "segment": m["segment"],
                                   "statistic": _text(m.get("statistic")), "name": _text(m.get("name")) or m["metric"],
                                   "rollback_tolerance": rb, "promote_tolerance": pr,
                                   "threshold_rollback": None, "threshold_promote": None,
                                   "at": [], **{c: [] for c in METRIC_COLUMNS}}
            s["at"].append(at)
            for c in _FLOATS:
                s[c].append(_num(m.get(c)))
            ratio = _num(m.get("ratio"))
            s["effect"].append(None if ratio is None else round(ratio - 1, 6))
            s["n_canary"].append(_int(m.get("n_canary")))
            s["n_baseline"].append(_int(m.get("n_baseline")))
            s["status"].append(_text(m.get("status")))
            for t in ("threshold_rollback", "threshold_promote"):
                if _num(m.get(t)) is not None:
                    s[t] = _num(m.get(t))
    return list(series.values())


def _decided(event: dict | None) -> bool:
    if event is None:
        return False
    try:
        return Verdict.from_dict(event).decided
    except (TypeError, ValueError, KeyError):  # not a verdict this rumgate can read: keep watching
        return False


@dataclass
class Series:
    """Everything the page draws for one rollout."""

    rollout: Rollout
    events: list[dict]  # the enforcing policy's verdict events, in seq order
    metrics: list[dict[str, Any]]
    timeline: dict[str, list]
    dry_runs: dict[str, dict[str, list]] = field(default_factory=dict)  # policy name → timeline
    latest: dict | None = None  # the latest verdict event (the backend's, else the history's last)
    quality: dict[str, list] = field(default_factory=dict)  # data quality columns (:func:`quality`)
    markers: list[dict[str, Any]] = field(default_factory=list)  # split changes and incidents

    @property
    def live(self) -> bool:
        """Whether more verdicts may come: the rollout has not ended and is not decided."""
        return self.rollout.ended_at is None and not _decided(self.latest)

    def metric(self, metric: str, segment: str) -> dict[str, Any] | None:
        return next((s for s in self.metrics if s["metric"] == metric and s["segment"] == segment), None)


def build_series(rollout: Rollout, history: list[dict], dry_runs: dict[str, list[dict]] | None = None,
                 latest: dict | None = None) -> Series:
    """The series of ``rollout`` from its verdict ``history`` (and its dry-run policies')."""
    events = verdict_events(history)
    if latest is None or (events and _int(latest.get("seq")) is not None and latest["seq"] < events[-1]["seq"]):
        latest = events[-1] if events else latest
    q = quality(events)
    return Series(rollout, events, metric_series(rollout, events), timeline(events),
                  {name: timeline(verdict_events(h)) for name, h in (dry_runs or {}).items()}, latest,
                  q, markers(rollout, q))


def series_json(s: Series, metric: str | None = None, segment: str | None = None) -> dict[str, Any]:
    """The JSON of ``GET /v1/rollouts/{id}/series`` (one (metric, segment) when both are given)."""
    r = s.rollout
    metrics = s.metrics if metric is None else [m for m in s.metrics if m["metric"] == metric
                                                and (segment is None or m["segment"] == segment)]
    return {"rollout": r.id, "app": r.app, "canary": r.canary, "baseline": r.baseline,
            "started_at": r.started_at, "ended_at": r.ended_at, "live": s.live,
            "expected_share": r.expected_share, "share_changes": [list(c) for c in r.share_changes],
            "policy": {"name": r.policy.name, "hash": r.policy.hash, "dry_run": r.policy.dry_run},
            "latest_seq": _int((s.latest or {}).get("seq")), "windows": len(s.events),
            "timeline": s.timeline, "dry_runs": s.dry_runs, "quality": s.quality, "markers": s.markers,
            "metrics": metrics}


# -- reading, with a small cache --------------------------------------------------------------

_cache: OrderedDict[str, tuple[tuple, Series]] = OrderedDict()


def _token(backend: Backend, rollout: Rollout) -> tuple:
    """What the series of ``rollout`` depend on: the rollout record and the latest verdict of
    each of its keys, as the objects themselves (the backend replaces them when they change;
    the cache holds them, so no other object can take their identity)."""
    keys = [rollout.id, *(dry_run_key(rollout.id, p.name) for p in rollout.dry_run_policies)]
    return (backend, rollout, *(backend.latest.get(k) for k in keys))


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


async def load(backend: Backend, rollout: Rollout) -> Series:
    """The series of ``rollout``, read from the backend's history when its verdicts changed."""
    token = _token(backend, rollout)
    hit = _cache.get(rollout.id)
    if hit is not None and _same(hit[0], token) and token[2] is not None:
        _cache.move_to_end(rollout.id)
        return hit[1]
    read = backend.history
    history = await read(rollout.id) if read else []
    dry = {p.name: (await read(dry_run_key(rollout.id, p.name)) if read else []) for p in rollout.dry_run_policies}
    s = build_series(rollout, history, dry, backend.latest.get(rollout.id))
    if token[2] is not None:  # before the first verdict there is nothing worth keeping
        _cache[rollout.id] = (token, s)
        _cache.move_to_end(rollout.id)
        while len(_cache) > _CACHED:
            _cache.popitem(last=False)
    return s


# -- the route --------------------------------------------------------------------------------


def _query(request: web.Request, name: str) -> str | None | web.Response:
    value = request.query.get(name)
    if value is not None and not 0 < len(value) <= _MAX_QUERY:
        return error(400, f"{name}: must be 1 to {_MAX_QUERY} characters, got {shown(value)}")
    return value


@auth.read
async def get_series(request: web.Request) -> web.Response:
    rollout = rollout_or_404(request)
    if isinstance(rollout, web.Response):
        return rollout
    rid, backend = rollout.id, backend_of(request)
    metric, segment = _query(request, "metric"), _query(request, "segment")
    for q in (metric, segment):
        if isinstance(q, web.Response):
            return q
    if segment is not None and metric is None:
        return error(400, "segment: give metric too (e.g. ?metric=LCP&segment=mobile)")
    s = await load(backend, rollout)
    out = series_json(s, metric, segment)
    if metric is not None and not out["metrics"]:
        which = f"metric {shown(metric)}" + ("" if segment is None else f", segment {shown(segment)}")
        known = ", ".join(f"{m['metric']}/{m['segment']}" for m in s.metrics) or "none yet (no verdict)"
        return error(404, f"rollout {rid!r} has no series for {which}; it has: {known}")
    return json(out)


ROUTES = [web.get("/v1/rollouts/{id}/series", get_series)]
