"""What Argo Rollouts does with rumgate's answers, from the first measurement to the Rollout's
pause, abort or next step: deploy/argo/'s manifests, the real API, and Argo's rules ported.

The rules are those of Argo Rollouts v1.9.1 (github.com/argoproj/argo-rollouts), ported
function by function:

* the arguments: ``BuildArgumentsForRolloutAnalysisRun`` and ``extractValueFromRollout``
  (utils/analysis/factory.go), ``MergeArgs`` (utils/analysis/helpers.go), ``{{args.x}}``
  substitution (utils/template/template.go ``ResolveQuotedArgs``);
* one measurement: ``Provider.Run`` (metricproviders/webmetric/webmetric.go) and
  ``EvaluateResult`` (utils/evaluate/evaluate.go), i.e. ``web_measurement`` of
  tests/test_deploy.py, reused;
* the counters of a metric: ``runMeasurements`` (analysis/analysis.go);
* when the next measurement is taken: ``generateMetricTasks`` (the interval, or
  ``DefaultErrorRetryInterval`` = 10 s after an Error, analysis/analysis.go);
* a metric's phase: ``assessMetricStatus`` and ``assessMetricFailureInconclusiveOrError``,
  with ``DefaultConsecutiveErrorLimit`` = 4 (utils/defaults/defaults.go);
* the run's phase: ``assessRunStatus`` (the worst completed metric; Running while any metric
  is not completed unless the run is terminating, ``IsTerminating`` in
  utils/analysis/helpers.go) and ``analysisStatusOrder`` (same file);
* the Rollout: ``reconcileStepBasedAnalysisRun`` and ``reconcileBackgroundAnalysisRun``
  (rollout/analysis.go): Inconclusive pauses, Failed or Error aborts, a Successful step run
  lets the Rollout go on, a Successful background run does nothing.

An AnalysisRun is reconciled when a measurement is due (``calculateNextReconcileTime``) and
again after each status update (its informer's UpdateFunc, analysis/controller.go).
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient, TestServer

from detectors.policy import DEFAULT_POLICY
from detectors.rollout import Rollout
from detectors.verdict import ReasonCode, Verdict
from streams.http.api import Backend, make_api
from tests.test_deploy import HOLD_TEMPLATE, REGISTER_TEMPLATE, ROLLOUT, TEMPLATE, TOKEN, one, web_measurement

APP = "shop-web"
OLD, NEW = "2026.11.20-f00", "2026.11.23-abc"
COMPLETED = ("Successful", "Failed", "Error", "Inconclusive")
#: analysisStatusOrder (utils/analysis/helpers.go): best to worst.
STATUS_ORDER = ("Successful", "Running", "Pending", "Inconclusive", "Error", "Failed")
DEFAULT_ERROR_RETRY_S = 10  # DefaultErrorRetryInterval, analysis/analysis.go
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4  # DefaultConsecutiveErrorLimit, utils/defaults/defaults.go


# -- arguments -------------------------------------------------------------------------------

def extract_value_from_rollout(rollout: dict, path: str) -> str:
    """``extractValueFromRollout``: split the path at ``.``, ``[`` and ``]`` and walk the JSON."""
    node = rollout
    for section in re.split(r"[.\[\]]+", path):
        if section == "":
            continue
        if isinstance(node, list):
            node = node[int(section)]
        elif isinstance(node, dict):
            node = node.get(section)
        else:
            raise ValueError(f"invalid path {path} in rollout")
    if node is None or isinstance(node, (list, dict)):
        raise ValueError(f"path {path} in rollout must terminate in a primitive value")
    return str(node)


def field_ref(rollout: dict, path: str) -> str:
    """A fieldRef's value: ``metadata...`` by Kubernetes' fieldpath (a missing annotation is
    ""), anything else by :func:`extract_value_from_rollout`."""
    if path.startswith("metadata"):
        m = re.fullmatch(r"metadata\.(annotations|labels)\['([^']*)'\]", path)
        if m:
            return (rollout["metadata"].get(m.group(1)) or {}).get(m.group(2), "")
        assert path in ("metadata.name", "metadata.namespace"), f"fieldpath {path!r} not ported"
        return rollout["metadata"].get(path.split(".")[1], "")
    return extract_value_from_rollout(rollout, path)


def resolved_args(rollout: dict, analysis: dict, template: dict) -> dict[str, str]:
    """The AnalysisRun's arguments: the Rollout's (value or fieldRef) over the template's
    (``MergeArgs``), the secretKeyRef read at each measurement (here: the token)."""
    incoming = {}
    for a in analysis.get("args", []):
        if "value" in a:
            incoming[a["name"]] = a["value"]
        else:
            incoming[a["name"]] = field_ref(rollout, a["valueFrom"]["fieldRef"]["fieldPath"])
    out = {}
    for a in template["spec"]["args"]:
        if a["name"] in incoming:
            out[a["name"]] = incoming[a["name"]]
        elif "secretKeyRef" in a.get("valueFrom", {}):
            out[a["name"]] = TOKEN
        else:
            assert "value" in a, f'argument "{a["name"]}" was not supplied'  # ResolveArgs' error
            out[a["name"]] = a["value"]
    return out


def resolve_metric(metric: dict, args: dict[str, str]) -> dict:
    """``ResolveQuotedArgs`` over the metric: every ``{{args.x}}`` replaced."""
    def sub(x):
        if isinstance(x, str):
            return re.sub(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}", lambda m: args[m.group(1)], x)
        if isinstance(x, list):
            return [sub(v) for v in x]
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        return x
    return sub(metric)


# -- an AnalysisRun ----------------------------------------------------------------------------

def seconds(duration: str) -> int:
    m = re.fullmatch(r"(\d+)([smh])", duration)
    assert m, duration
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


@dataclass
class MetricResult:
    phase: str = "Running"
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0
    measurements: list[tuple[int, str, object]] = field(default_factory=list)  # (t, phase, body)

    def record(self, t: int, phase: str, body: object) -> None:
        """The counters ``runMeasurements`` keeps per measurement phase."""
        self.measurements.append((t, phase, body))
        if phase == "Error":
            self.error += 1
            self.consecutive_error += 1
            self.consecutive_success = 0
            return
        self.count += 1
        self.consecutive_error = 0
        if phase == "Successful":
            self.successful += 1
            self.consecutive_success += 1
        else:
            self.consecutive_success = 0
            if phase == "Failed":
                self.failed += 1
            else:
                self.inconclusive += 1


def failure_inconclusive_or_error(metric: dict, r: MetricResult) -> tuple[str, str]:
    """``assessMetricFailureInconclusiveOrError``: the later checks override the earlier."""
    phase = message = ""
    failure_limit = metric.get("failureLimit", 0)
    if failure_limit >= 0 and r.failed > failure_limit:
        phase, message = "Failed", f"failed ({r.failed}) > failureLimit ({failure_limit})"
    inconclusive_limit = metric.get("inconclusiveLimit", 0)
    if r.inconclusive > inconclusive_limit:
        phase, message = "Inconclusive", f"inconclusive ({r.inconclusive}) > inconclusiveLimit ({inconclusive_limit})"
    error_limit = metric.get("consecutiveErrorLimit", DEFAULT_CONSECUTIVE_ERROR_LIMIT)
    if r.consecutive_error > error_limit:
        phase, message = "Error", f"consecutiveErrors ({r.consecutive_error}) > consecutiveErrorLimit ({error_limit})"
    return phase, message


def metric_status(metric: dict, r: MetricResult, terminating: bool) -> str:
    """``assessMetricStatus``."""
    if r.phase in COMPLETED:
        return r.phase
    if not r.measurements:
        return "Successful" if terminating else "Pending"
    phase, _ = failure_inconclusive_or_error(metric, r)
    if phase:
        return phase
    success_limit = metric.get("consecutiveSuccessLimit", 0)
    if success_limit > 0 and r.consecutive_success >= success_limit:
        return "Successful"
    count = metric.get("count")
    if count is not None and r.count >= count:
        failure_applicable = metric.get("failureLimit", 0) >= 0
        if failure_applicable and success_limit > 0:
            return "Inconclusive"
        return "Failed" if success_limit > 0 else "Successful"
    return "Successful" if terminating else "Running"


class AnalysisRun:
    """One AnalysisRun of resolved metrics, measured by ``measure(metric, t) -> (phase, body)``."""

    def __init__(self, metrics: list[dict], measure: Callable[[dict, int], Awaitable[tuple[str, object]]]) -> None:
        self.metrics = metrics
        self.measure = measure
        self.results: dict[str, MetricResult] = {}
        self.phase = "Running"
        self.message = ""

    def terminating(self) -> bool:
        """``IsTerminating``: a metric already Failed, Error or Inconclusive."""
        return any(r.phase in ("Failed", "Error", "Inconclusive") for r in self.results.values())

    def due(self, metric: dict) -> int | None:
        """When ``generateMetricTasks`` measures ``metric`` next (None: never again)."""
        r = self.results.get(metric["name"])
        if self.phase in COMPLETED or self.terminating() or (r is not None and r.phase in COMPLETED):
            return None
        if r is None or not r.measurements:
            return 0
        if metric.get("count") is not None and r.count >= metric["count"]:
            return None
        last_t, last_phase, _ = r.measurements[-1]
        return last_t + (DEFAULT_ERROR_RETRY_S if last_phase == "Error" else seconds(metric["interval"]))

    def next_due(self) -> int | None:
        times = [t for t in map(self.due, self.metrics) if t is not None]
        return min(times) if times else None

    async def reconcile(self, t: int) -> None:
        """``reconcileAnalysisRun`` at ``t``, then again while its status changes."""
        while self.phase not in COMPLETED:
            before = (self.phase, [r.phase for r in self.results.values()])
            for metric in self.metrics:
                due = self.due(metric)
                if due is not None and due <= t:
                    phase, body = await self.measure(metric, t)
                    self.results.setdefault(metric["name"], MetricResult()).record(t, phase, body)
            self.phase, self.message = self.assess()
            if (self.phase, [r.phase for r in self.results.values()]) == before:
                return

    def assess(self) -> tuple[str, str]:
        """``assessRunStatus``: the worst completed metric, once all are (or the run terminates)."""
        terminating = self.terminating()
        worst, message, everything = "", "", True
        for metric in self.metrics:
            r = self.results.get(metric["name"])
            if r is None:
                everything = False
                continue
            r.phase = metric_status(metric, r, terminating)
            if r.phase not in COMPLETED:
                everything = False
                continue
            why = failure_inconclusive_or_error(metric, r)[1]
            if worst == "" or STATUS_ORDER.index(r.phase) > STATUS_ORDER.index(worst):
                worst = r.phase
                if why:
                    message = f'Metric "{metric["name"]}" assessed {r.phase} due to {why}'
        if terminating:
            return worst or "Successful", message
        if not everything or worst == "":
            return "Running", ""
        return worst, message


# -- a Rollout at its analysis step, against the real API -------------------------------------

def event(kind: str, code: str, seq: int, rollout: str = f"{APP}:{NEW}", reason: str | None = None) -> dict:
    """A verdict event as the judge publishes it (with its hold kind)."""
    _, _, canary = rollout.partition(":")
    return Verdict(rollout=rollout, app=APP, canary=canary, baseline=OLD, seq=seq, verdict=kind, severity="none",
                   at=1_763_856_000_000 + seq * 5000, policy={"name": "default", "hash": "sha256:00", "dry_run": False},
                   reasons=[reason or f"{code} (sample)"], reason_codes=[ReasonCode(code)], metrics=[]).to_dict()


Timeline = list[tuple[int, dict]]  # (from t in seconds, the latest verdict from then on)


@dataclass
class Outcome:
    t: int  # when the Rollout acted (or the simulation ended)
    action: str  # "next step", "pause", "abort", or "waiting"
    step: AnalysisRun
    background: AnalysisRun


def rollout_doc(annotation: str = f"{APP}:{NEW}", image_tag: str = NEW) -> dict:
    doc = copy.deepcopy(one(ROLLOUT, "Rollout"))
    doc["metadata"]["annotations"]["rumgate.io/rollout-id"] = annotation
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["image"] = container["image"].rpartition(":")[0] + ":" + image_tag
    return doc


def analysis_step(rollout: dict, template: str, nth: int = 0) -> dict:
    """The ``nth`` analysis step of the Rollout that runs ``template``."""
    steps = [s["analysis"] for s in rollout["spec"]["strategy"]["canary"]["steps"]
             if "analysis" in s and s["analysis"]["templates"][0]["templateName"] == template]
    return steps[nth]


def metrics_of(rollout: dict, analysis: dict, paths: tuple) -> list[dict]:
    """The run's metrics, its args resolved (FlattenTemplates: the templates' metrics in one run)."""
    out = []
    for path in paths:
        template = one(path, "AnalysisTemplate")
        args = resolved_args(rollout, analysis, template)
        out += [resolve_metric(m, args) for m in template["spec"]["metrics"]]
    return out


async def web_request(client: TestClient, metric: dict) -> tuple[str, object]:
    """One measurement as the web provider takes it (``Provider.Run``): its method, URL,
    headers and body, then the answer judged (:func:`web_measurement`)."""
    web = metric["provider"]["web"]
    url = web["url"].removeprefix("http://rumgate.rumgate.svc")
    resp = await client.request(web.get("method", "GET"), url, data=web.get("body"),
                                headers={h["key"]: h["value"] for h in web["headers"]})
    body = await resp.json(content_type=None) if resp.status < 300 else None
    return web_measurement(metric, resp.status, body), body


def step_action(phase: str) -> str | None:
    """``reconcileStepBasedAnalysisRun`` (and Successful: the step is done, the Rollout goes on)."""
    return {"Inconclusive": "pause", "Error": "abort", "Failed": "abort", "Successful": "next step"}.get(phase)


def background_action(phase: str) -> str | None:
    """``reconcileBackgroundAnalysisRun``: nothing on Successful."""
    return {"Inconclusive": "pause", "Error": "abort", "Failed": "abort"}.get(phase)


def deploy(timelines: dict[str, Timeline], rollout: dict | None = None, until: int = 3 * 3600,
           step_templates: tuple = (TEMPLATE,), stop_at_next_step: bool = False) -> Outcome:
    """Run the Rollout's analysis step (and its background analysis, both created on entering
    the step at t = 0) until the Rollout pauses or aborts, or ``until``.

    ``timelines``: per rumgate rollout id, its latest verdict over time (an id without one
    is registered with no verdict yet; an id not in it is unknown to rumgate: 404).
    """
    rollout = rollout or rollout_doc()
    backend = Backend()
    for rid in timelines:
        _, _, canary = rid.partition(":")
        backend.rollouts[rid] = Rollout(rid, APP, canary, OLD, 1, DEFAULT_POLICY)
    canary = rollout["spec"]["strategy"]["canary"]
    step = analysis_step(rollout, "rumgate-verdict")

    async def run() -> Outcome:
        async with TestClient(TestServer(make_api(backend, token=TOKEN))) as client:
            async def measure(metric: dict, t: int) -> tuple[str, object]:
                for rid, timeline in timelines.items():
                    latest = [e for since, e in timeline if since <= t]
                    if latest:
                        backend.latest[rid] = latest[-1]
                return await web_request(client, metric)

            runs = (AnalysisRun(metrics_of(rollout, step, step_templates), measure),
                    AnalysisRun(metrics_of(rollout, canary["analysis"], (HOLD_TEMPLATE,)), measure))
            step_run, background_run = runs
            while True:
                times = [t for t in (r.next_due() for r in runs) if t is not None]
                if not times or min(times) > until:
                    return Outcome(until, "waiting", *runs)
                t = min(times)
                for r in runs:
                    await r.reconcile(t)
                for action in (background_action(background_run.phase), step_action(step_run.phase)):
                    if action in ("pause", "abort") or (action == "next step" and stop_at_next_step):
                        return Outcome(t, action, *runs)

    return asyncio.run(run())


def phases(run: AnalysisRun, metric: str) -> list[tuple[int, str]]:
    return [(t, p) for t, p, _ in run.results[metric].measurements]


STEP, HOLD = "rumgate-verdict", "rumgate-final-hold"
ID = f"{APP}:{NEW}"


def transient_start(rid: str = ID) -> Timeline:
    """What a rollout meets before it decides: warm-up, the silent canary, a split mismatch, an incident."""
    return [(0, event("continue", "warmup", 1, rid)), (120, event("hold", "no_canary", 24, rid)),
            (300, event("hold", "srm", 60, rid)), (420, event("hold", "global_incident", 84, rid)),
            (540, event("continue", "collecting", 108, rid))]


# -- the paths a rollout takes ------------------------------------------------------------------

def test_a_promote_after_transient_holds_ends_the_step_and_the_watch_goes_on():
    timeline = [*transient_start(), (700, event("promote", "proven_not_worse", 140))]
    out = deploy({ID: timeline}, stop_at_next_step=True)
    assert (out.t, out.action, out.step.phase) == (720, "next step", "Successful")
    assert phases(out.step, STEP)[-1] == (720, "Successful")
    assert {p for _, p in phases(out.step, STEP)[:-1]} == {"Inconclusive"}
    # The background run saw every transient hold as no reason to stop, and keeps watching.
    assert out.background.phase == "Running"
    assert {p for _, p in phases(out.background, HOLD)} == {"Successful"} and len(phases(out.background, HOLD)) == 25


@pytest.mark.parametrize("code", ["deadline", "override_hold"])
def test_a_final_hold_pauses_the_rollout_within_two_measurements(code):
    """Issue 17: the Rollout paused only at the 241st Inconclusive; now at the first
    measurement of the background run that sees the final hold."""
    timeline = [*transient_start(), (605, event("hold", code, 121))]
    out = deploy({ID: timeline})
    assert out.action == "pause" and out.background.phase == "Inconclusive"
    assert out.t == 630  # the background run's first measurement after 605 s
    seen = [t for t, p in phases(out.background, HOLD) if p == "Inconclusive"]
    assert seen == [630] and len([t for t, _ in phases(out.background, HOLD) if t >= 605]) <= 2
    assert out.background.message == 'Metric "rumgate-final-hold" assessed Inconclusive due to inconclusive (1) > ' \
                                     'inconclusiveLimit (0)'
    assert out.step.phase == "Running"  # alone it would have waited up to two hours
    body = out.background.results[HOLD].measurements[-1][2]
    assert body["hold"] == "final" and body["reason_codes"] == [code]


def test_a_transient_hold_keeps_waiting_up_to_the_step_runs_limit():
    timeline = [(0, event("continue", "warmup", 1)), (120, event("hold", "srm", 24))]
    out = deploy({ID: timeline})
    assert (out.t, out.action, out.step.phase) == (7200, "pause", "Inconclusive")  # 241 x 30 s, from t = 0
    assert out.step.message == 'Metric "rumgate-verdict" assessed Inconclusive due to inconclusive (241) > ' \
                               'inconclusiveLimit (240)'
    assert out.background.phase == "Running" and out.background.results[HOLD].inconclusive == 0


def test_a_rollback_aborts_at_its_first_measurement():
    out = deploy({ID: [*transient_start(), (400, event("rollback", "worse", 80))]})
    assert (out.t, out.action, out.step.phase) == (420, "abort", "Failed")
    assert out.step.message == 'Metric "rumgate-verdict" assessed Failed due to failed (1) > failureLimit (0)'


def test_a_rollback_after_the_step_aborts_through_the_background_analysis():
    """After the step's promote the background run keeps watching: a post-promotion watch that
    breaks at the next weight aborts the Rollout."""
    timeline = [(0, event("continue", "warmup", 1)), (700, event("promote", "proven_not_worse", 140)),
                (2000, event("rollback", "watch_broken", 400))]
    out = deploy({ID: timeline})
    assert out.step.phase == "Successful"
    assert (out.t, out.action, out.background.phase) == (2010, "abort", "Failed")


def test_an_unknown_rollout_aborts_after_about_100_s_not_5_min():
    """Every measurement a 404 Error, retried every 10 s (DefaultErrorRetryInterval, whatever the
    interval): the 11th in a row exceeds consecutiveErrorLimit 10, 100 s after the first."""
    out = deploy({}, rollout=rollout_doc(annotation=f"{APP}:never-started"))
    assert (out.t, out.action) == (100, "abort")
    assert [t for t, _ in phases(out.step, STEP)] == list(range(0, 101, 10))
    assert out.step.message == 'Metric "rumgate-verdict" assessed Error due to consecutiveErrors (11) > ' \
                               'consecutiveErrorLimit (10)'


# -- stale releases (issue 17): no promote and no rollback for a release never judged ---------

@pytest.mark.parametrize("previous", [("promote", "proven_not_worse"), ("rollback", "worse"), ("hold", "deadline")])
@pytest.mark.parametrize("new_registered", [True, False], ids=["new-registered", "new-not-registered"])
def test_an_annotation_still_naming_the_previous_release_pauses_at_t0(previous, new_registered):
    """``kubectl argo rollouts set image`` (or a patch like the CI example's) deploys NEW while
    rumgate.io/rollout-id still names OLD, whose rollout ended promote (or rollback, or held):
    before, the first measurement was Successful at t = 0 (or Failed). Now both runs read a
    final hold naming the mismatch, and the Rollout pauses at once."""
    old_id = f"{APP}:{OLD}"
    timelines = {old_id: [(0, event(*previous, 500, old_id))]}
    if new_registered:
        timelines[ID] = [(0, event("continue", "warmup", 1))]
    out = deploy(timelines, rollout=rollout_doc(annotation=old_id, image_tag=NEW))
    assert (out.t, out.action) == (0, "pause")
    assert phases(out.step, STEP) == [(0, "Inconclusive")]  # not Successful, not Failed
    assert phases(out.background, HOLD) == [(0, "Inconclusive")]
    body = out.step.results[STEP].measurements[0][2]
    assert (body["verdict"], body["hold"], body["reason_codes"][0]) == ("hold", "final", "release_mismatch")
    assert body["reasons"][0].startswith(
        f"release mismatch: image 'ghcr.io/acme/shop-web:{NEW}' (tag '{NEW}') is not the canary '{OLD}' of "
        f"rollout '{old_id}'")
    assert body["judged"]["verdict"] == previous[0]


def test_the_id_and_the_image_of_the_same_release_are_answered():
    out = deploy({ID: [(0, event("promote", "proven_not_worse", 140))]}, stop_at_next_step=True)
    assert (out.t, out.action) == (0, "next step")
    body = out.step.results[STEP].measurements[0][2]
    assert body["release"] == {"image": f"ghcr.io/acme/shop-web:{NEW}", "tag": NEW, "canary": NEW, "match": True}


def test_the_args_are_what_argo_resolves_from_the_rollout():
    doc = rollout_doc(annotation=f"{APP}:{OLD}", image_tag=NEW)
    canary = doc["spec"]["strategy"]["canary"]
    step = analysis_step(doc, "rumgate-verdict")
    for analysis, path in ((step, TEMPLATE), (canary["analysis"], HOLD_TEMPLATE)):
        args = resolved_args(doc, analysis, one(path, "AnalysisTemplate"))
        assert args == {"rollout-id": f"{APP}:{OLD}", "image": f"ghcr.io/acme/shop-web:{NEW}", "api-token": TOKEN}
    # extractValueFromRollout splits at dots: a label key with dots cannot be read this way,
    # which is why the release comes from the image and not from app.kubernetes.io/version.
    with pytest.raises(ValueError):
        extract_value_from_rollout(doc, "spec.template.metadata.labels['app.kubernetes.io/version']")


# -- why the hold watch is a background analysis, not a second metric of the step ------------

def test_a_second_metric_in_the_step_template_would_never_let_a_promote_end_the_step():
    """Had the step listed both templates (one run, both metrics: FlattenTemplates), the
    promote completes the verdict metric, but the hold metric, which never completes on
    success, keeps the run Running: the Rollout would wait at 5 % for ever."""
    timeline = [(0, event("continue", "warmup", 1)), (700, event("promote", "proven_not_worse", 140))]
    out = deploy({ID: timeline}, step_templates=(TEMPLATE, HOLD_TEMPLATE), until=4 * 3600)
    assert out.action == "waiting" and out.step.phase == "Running"
    assert out.step.results[STEP].phase == "Successful" and out.step.results[HOLD].phase == "Running"


# -- the registration steps: the rollout starts by itself, the split as Argo sets it ------------

def register(backend: Backend, doc: dict, nth: int = 0, until: int = 600) -> tuple[str | None, AnalysisRun]:
    """The ``nth`` registration step's AnalysisRun against the real API, until it completes:
    what the Rollout then does, and the run."""
    analysis = analysis_step(doc, "rumgate-register", nth)

    async def run() -> AnalysisRun:
        async with TestClient(TestServer(make_api(backend, token=TOKEN))) as client:
            async def measure(metric: dict, t: int) -> tuple[str, object]:
                return await web_request(client, metric)

            r = AnalysisRun(metrics_of(doc, analysis, (REGISTER_TEMPLATE,)), measure)
            while r.phase not in COMPLETED and (t := r.next_due()) is not None and t <= until:
                await r.reconcile(t)
            return r

    r = asyncio.run(run())
    return step_action(r.phase), r


def publishing_backend(*rollouts: Rollout, latest: dict | None = None) -> tuple[Backend, list[Rollout]]:
    published: list[Rollout] = []

    async def publish(rollout: Rollout) -> None:
        published.append(rollout)

    backend = Backend(publish_rollout=publish)
    backend.rollouts.update({r.id: r for r in rollouts})
    backend.latest.update(latest or {})
    return backend, published


def test_the_first_step_registers_the_release_against_the_live_one_and_ends_the_stale_rollout():
    """CI set only the image and the annotation: the first step starts rollout APP:NEW against
    the release the previous rollout promoted, and the rollout left running by an abandoned
    deploy ends. Run again (a retried step), it finds the same rollout and publishes nothing."""
    promoted = Rollout(f"{APP}:{OLD}", APP, OLD, "2026.11.17-e0e", 1, DEFAULT_POLICY, ended_at=2,
                       end_reason="decided: promote (proven_not_worse), verdict #90")
    abandoned = Rollout(f"{APP}:2026.11.21-bad", APP, "2026.11.21-bad", OLD, 3, DEFAULT_POLICY)
    backend, published = publishing_backend(promoted, abandoned, latest={promoted.id: event("promote", "proven_not_worse", 90,
                                                                                          promoted.id)})
    action, run = register(backend, rollout_doc())
    assert (action, run.phase) == ("next step", "Successful")
    assert [(t, p) for t, p, _ in run.results["rumgate-register"].measurements] == [(0, "Successful")]
    created = backend.rollouts[ID]
    assert (created.canary, created.baseline, created.expected_share) == (NEW, OLD, 0.05)
    assert backend.rollouts[abandoned.id].end_reason == f"superseded by {ID}"
    assert [r.id for r in published] == [ID, abandoned.id]
    again, _ = register(backend, rollout_doc())
    assert again == "next step" and len(published) == 2


def test_the_step_before_a_new_weight_changes_the_expected_share():
    backend, published = publishing_backend(Rollout(ID, APP, NEW, OLD, 1, DEFAULT_POLICY, 0.05))
    action, _ = register(backend, rollout_doc(), nth=1)
    assert action == "next step"
    (changed,) = published
    assert changed.expected_share == 0.05 and [share for _, share in changed.share_changes] == [0.25]


def test_a_stale_annotation_aborts_at_the_registration_step_before_any_user_sees_the_release():
    """The annotation still names OLD's rollout while the image is NEW: rumgate refuses the
    registration (409), Argo retries every 10 s, and the 5th error in a row aborts the Rollout
    at its first step, where the canary has no weight yet."""
    backend, published = publishing_backend(Rollout(f"{APP}:{OLD}", APP, OLD, "2026.11.17-e0e", 1, DEFAULT_POLICY))
    action, run = register(backend, rollout_doc(annotation=f"{APP}:{OLD}", image_tag=NEW))
    assert action == "abort" and run.phase == "Error"
    assert [t for t, _ in phases(run, "rumgate-register")] == [0, 10, 20, 30, 40]
    assert run.message == 'Metric "rumgate-register" assessed Error due to consecutiveErrors (5) > ' \
                          'consecutiveErrorLimit (4)'
    assert published == []
