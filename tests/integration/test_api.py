"""The worker's HTTP API over real HTTP, served by real worker processes on the real broker.

* every endpoint: the success case and the refusals (401 / 403 / 404 / 400 / 409 / 413);
* an override posted through the API is applied by the judge to later verdicts;
* an Argo Rollouts ``web`` metric poller drives a clean canary to Successful and a
  regressed one to Failed;
* the Flagger webhooks answer 200 or 409 from the verdict.

Workers take seconds to start, so the checks share module-scoped deployments.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from detectors.policy import parse_policy
from streams.http.api import Backend, make_api
from detectors.rollout import Rollout
from streams.http.openapi import OPENAPI
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons
from tests.integration.conftest import TOKEN, Pipeline, Worker

# The scenarios and policy of test_pipeline.py (not imported: that would import the CLI).
POLICY_TEXT = "name: it\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 2m\n"
POLICY = parse_policy(POLICY_TEXT)
REGRESSED = replace(SCENARIOS["stationary"], duration_s=600.0, canary_share=0.2, regressions=(Regression("LCP", 1.25),))
CLEAN = replace(SCENARIOS["clean"], duration_s=600.0, canary_share=0.2)
READ_PATHS = ("", "/verdict", "/verdicts", "/overrides")  # after /v1/rollouts/{id}


# -- HTTP ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON, or the text when the body is not JSON
    content_type: str

    @property
    def error(self) -> str:
        assert isinstance(self.body, dict) and isinstance(self.body.get("error"), str), self
        return self.body["error"]


_DEFAULT = object()


def call(base: str, method: str, path: str, body: Any = None, *, token: Any = _DEFAULT,
         raw: bytes | None = None, authorization: str | None = None) -> Answer:
    """One HTTP request; ``token=None`` sends no Authorization header."""
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif token is not None:
        headers["Authorization"] = f"Bearer {TOKEN if token is _DEFAULT else token}"
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, payload, ctype = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = payload.decode(errors="replace")
    return Answer(status, parsed, ctype)


def wait_for_api(worker: Worker, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited ({worker.process.returncode}):\n{worker.output()[-4000:]}")
        try:
            if call(worker.http, "GET", "/healthz", token=None).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the API never came up:\n{worker.output()[-4000:]}")


def eventually(check, timeout_s: float = 30.0, what: str = "condition"):
    """``check()``'s first truthy value within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def metric_value(text: str, sample: str) -> float | None:
    """The value of one sample (``name{labels}`` exactly as exposed) in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# -- deployments -----------------------------------------------------------------------------


@dataclass
class Deployments:
    main: Pipeline  # one worker with RUMGATE_API_TOKEN=TOKEN
    api: Worker
    other: Pipeline  # a read-open worker and a worker without a token
    open: Worker
    tokenless: Worker


@pytest.fixture(scope="module")
def deployments(broker, tmp_path_factory):
    main = Pipeline(broker, tmp_path_factory.mktemp("api-main"))
    other = Pipeline(broker, tmp_path_factory.mktemp("api-other"))
    try:
        api = main.start_worker()
        open_ = other.start_worker(RUMGATE_API_READ_OPEN="true")
        tokenless = other.start_worker(RUMGATE_API_TOKEN="")
        for w in (api, open_, tokenless):
            wait_for_api(w)
        yield Deployments(main, api, other, open_, tokenless)
    finally:
        main.stop()
        other.stop()


def rollout_on_topic(pipeline: Pipeline, rollout_id: str) -> list[dict]:
    return [orjson.loads(r.value) for r in pipeline.read(pipeline.topics.rollouts)
            if r.key == rollout_id.encode()]


def start(base: str, **body) -> Answer:
    return call(base, "POST", "/v1/rollouts", body)


# -- 1. every endpoint -------------------------------------------------------------------------


def test_reads_need_the_token_and_unknown_rollouts_are_404(deployments):
    d = deployments
    # A rollout started on the topic (as `rumgate rollout start` does): the worker follows it.
    d.main.start_rollout(Rollout("reads:r2", "reads", "r2", "r1", CLEAN.start_ms, POLICY))
    eventually(lambda: call(d.api.http, "GET", "/v1/rollouts/reads:r2").status == 200, what="the rollout")

    for path in ["/v1/rollouts"] + [f"/v1/rollouts/reads:r2{p}" for p in READ_PATHS]:
        missing = call(d.api.http, "GET", path, token=None)
        assert missing.status == 401 and "Authorization" in missing.error, (path, missing)
        assert missing.content_type.startswith("application/json")
        wrong = call(d.api.http, "GET", path, token="not-the-token")
        assert wrong.status == 403 and wrong.error == "wrong token", (path, wrong)
        basic = call(d.api.http, "GET", path, authorization=f"Basic {TOKEN}")
        assert basic.status == 403, (path, basic)
        empty = call(d.api.http, "GET", path, authorization="Bearer ")
        assert empty.status == 403, (path, empty)
        assert call(d.api.http, "GET", path).status == 200, path
        assert call(d.api.http, "GET", path, authorization=f"bearer {TOKEN}").status == 200, path  # scheme: any case

    for p in READ_PATHS:
        unknown = call(d.api.http, "GET", f"/v1/rollouts/nope{p}")
        assert unknown.status == 404 and unknown.error == "no rollout 'nope'", (p, unknown)
        assert call(d.api.http, "GET", f"/v1/rollouts/nope{p}", token=None).status == 401  # auth first

    listing = call(d.api.http, "GET", "/v1/rollouts").body["rollouts"]
    mine = [r for r in listing if r["id"] == "reads:r2"]
    assert len(mine) == 1 and mine[0]["verdict"] is None
    assert (mine[0]["app"], mine[0]["canary"], mine[0]["baseline"], mine[0]["started_at"]) == (
        "reads", "r2", "r1", CLEAN.start_ms)
    one = call(d.api.http, "GET", "/v1/rollouts/reads:r2").body
    assert one["policy"] == {"name": "it", "hash": POLICY.hash, "dry_run": False}
    assert one["overrides"] == [] and one["dry_run_verdicts"] == {} and one["ended_at"] is None
    verdict = call(d.api.http, "GET", "/v1/rollouts/reads:r2/verdict").body
    assert verdict["verdict"] == "continue" and verdict["seq"] == 0 and "no verdict yet" in verdict["reasons"][0]
    assert call(d.api.http, "GET", "/v1/rollouts/reads:r2/verdicts").body == {"rollout": "reads:r2", "verdicts": []}
    assert call(d.api.http, "GET", "/v1/rollouts/reads:r2/overrides").body == {"rollout": "reads:r2", "overrides": []}
    # Unknown routes and methods are JSON errors too.
    assert call(d.api.http, "GET", "/v1/nothing-here").status == 404
    wrong_method = call(d.api.http, "DELETE", "/v1/rollouts")
    assert wrong_method.status == 405 and wrong_method.error


def test_start_a_rollout(deployments):
    d = deployments
    shadow = "name: shadow\nmetrics:\n  - metric: LCP\n"
    before = int(time.time() * 1000)
    started = start(d.api.http, app="cart", canary="r2", baseline="r1", policy=POLICY_TEXT, expected_share=0.1,
                    dry_run_policies=[shadow])
    assert started.status == 201, started
    s = started.body
    assert (s["id"], s["app"], s["canary"], s["baseline"], s["expected_share"]) == ("cart:r2", "cart", "r2", "r1", 0.1)
    assert s["policy"]["name"] == "it" and s["policy"]["hash"] == POLICY.hash and s["dry_run_policies"] == ["shadow"]
    assert before <= s["started_at"] <= int(time.time() * 1000) and s["ended_at"] is None and s["verdict"] is None

    assert "cart:r2" in [r["id"] for r in call(d.api.http, "GET", "/v1/rollouts").body["rollouts"]]
    on_topic = rollout_on_topic(d.main, "cart:r2")
    assert len(on_topic) == 1
    recorded = Rollout.from_dict(on_topic[0])
    assert (recorded.app, recorded.canary, recorded.baseline, recorded.expected_share, recorded.started_at) == (
        "cart", "r2", "r1", 0.1, s["started_at"])
    assert recorded.policy.hash == POLICY.hash and [p.name for p in recorded.dry_run_policies] == ["shadow"]
    assert call(d.api.http, "GET", "/v1/rollouts/cart:r2").body["dry_run_verdicts"] == {"shadow": None}

    again = start(d.api.http, app="cart", canary="r2", baseline="r1")
    assert again.status == 409 and again.error.startswith("rollout 'cart:r2' is already running")

    # A chosen id and started_at.
    chosen = start(d.api.http, id="cart-blue", app="cart", canary="r3", baseline="r2", started_at=CLEAN.start_ms)
    assert chosen.status == 201 and chosen.body["id"] == "cart-blue" and chosen.body["started_at"] == CLEAN.start_ms

    refused = {
        "app": ({"canary": "r2", "baseline": "r1"}, "app: required"),
        "blank canary": ({"app": "bad1", "canary": " ", "baseline": "r1"}, "canary: required"),
        "same release": ({"app": "bad2", "canary": "r1", "baseline": "r1"}, "canary and baseline must be different"),
        "policy": ({"app": "bad3", "canary": "r2", "baseline": "r1", "policy": "name: x\nalpha: 2\n"},
                   "policy refused: policy:2:8: alpha: must be in (0, 1), got 2"),
        "policy type": ({"app": "bad4", "canary": "r2", "baseline": "r1", "policy": {"name": "x"}},
                        "policy: must be the policy's YAML text"),
        "share": ({"app": "bad5", "canary": "r2", "baseline": "r1", "expected_share": 1.5},
                  "expected_share: must be a number between 0 and 1, got 1.5"),
        "share type": ({"app": "bad6", "canary": "r2", "baseline": "r1", "expected_share": "5%"},
                       "expected_share"),
        "started_at": ({"app": "bad7", "canary": "r2", "baseline": "r1", "started_at": "yesterday"},
                       "started_at: must be epoch milliseconds"),
        "unknown field": ({"app": "bad8", "canary": "r2", "baseline": "r1", "colour": "blue"},
                          "unknown field(s): colour"),
        "not an object": (["app", "bad9"], "body: must be a JSON object"),
    }
    for case, (body, message) in refused.items():
        answer = start(d.api.http, **body) if isinstance(body, dict) else call(d.api.http, "POST", "/v1/rollouts", body)
        assert answer.status == 400 and message in answer.error, (case, answer)
    not_json = call(d.api.http, "POST", "/v1/rollouts", raw=b"{app: cart")
    assert not_json.status == 400 and "body: not valid JSON" in not_json.error
    too_big = call(d.api.http, "POST", "/v1/rollouts", raw=b" " * (300 * 1024))
    assert too_big.status == 413 and "larger than" in too_big.error

    body = {"app": "bad10", "canary": "r2", "baseline": "r1"}
    assert call(d.api.http, "POST", "/v1/rollouts", body, token=None).status == 401
    assert call(d.api.http, "POST", "/v1/rollouts", body, token="nope").status == 403
    # Nothing refused reached the topic or the list.
    ids = {r["id"] for r in call(d.api.http, "GET", "/v1/rollouts").body["rollouts"]}
    on_topic = {orjson.loads(r.value)["id"] for r in d.main.read(d.main.topics.rollouts)}
    assert not any(i.startswith("bad") for i in ids | on_topic), ids | on_topic


def test_end_a_rollout(deployments):
    d = deployments
    assert start(d.api.http, app="end", canary="r2", baseline="r1").status == 201
    assert call(d.api.http, "POST", "/v1/rollouts/end:r2/end", token=None).status == 401
    assert call(d.api.http, "POST", "/v1/rollouts/end:r2/end", token="nope").status == 403
    ended = call(d.api.http, "POST", "/v1/rollouts/end:r2/end")
    assert ended.status == 200, ended
    assert isinstance(ended.body["ended_at"], int) and ended.body["ended_at"] >= ended.body["started_at"]
    assert call(d.api.http, "GET", "/v1/rollouts/end:r2").body["ended_at"] == ended.body["ended_at"]
    assert [r["ended_at"] for r in rollout_on_topic(d.main, "end:r2")] == [None, ended.body["ended_at"]]
    again = call(d.api.http, "POST", "/v1/rollouts/end:r2/end")
    assert again.status == 409 and again.error == "rollout 'end:r2' has already ended"
    unknown = call(d.api.http, "POST", "/v1/rollouts/nope/end")
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'"


def test_overrides_endpoint(deployments):
    d = deployments
    assert start(d.api.http, app="ovr", canary="r2", baseline="r1").status == 201
    path = "/v1/rollouts/ovr:r2/overrides"
    hold = {"action": "hold", "actor": "ana", "reason": "launch", "ticket": "OPS-1", "ttl_s": 600}
    before = int(time.time() * 1000)
    added = call(d.api.http, "POST", path, hold)
    assert added.status == 201, added
    o = added.body
    assert (o["rollout"], o["action"], o["actor"], o["reason"], o["ticket"]) == (
        "ovr:r2", "hold", "ana", "launch", "OPS-1")
    assert before <= o["at"] <= int(time.time() * 1000) and o["expires_at"] == o["at"] + 600_000

    assert call(d.api.http, "GET", path).body == {"rollout": "ovr:r2", "overrides": [o]}
    on_topic = [orjson.loads(r.value) for r in d.main.read(d.main.topics.overrides) if r.key == b"ovr:r2"]
    assert on_topic == [o]
    # The worker reads its own override back from the topic: still listed once.
    d.api.wait_for("override on ovr:r2 by ana")
    assert call(d.api.http, "GET", path).body["overrides"] == [o]
    assert call(d.api.http, "GET", "/v1/rollouts/ovr:r2").body["overrides"] == [o]

    refused = {
        "action": ({**hold, "action": "ship"}, "override refused: action: must be one of promote, hold, rollback"),
        "actor": ({"action": "hold", "reason": "launch"}, "override refused: actor: required"),
        "reason": ({"action": "hold", "actor": "ana", "reason": ""}, "override refused: reason"),
        "unknown field": ({**hold, "colour": "red"}, "override refused: unknown field(s): colour"),
        "expired": ({"action": "hold", "actor": "ana", "reason": "x", "expires_at": 1000}, "expired"),
        "expired, at in the past": ({"action": "hold", "actor": "ana", "reason": "x", "at": 1000, "expires_at": 2000},
                                    "override refused: expires_at: already expired"),
        "ttl": ({**hold, "ttl_s": -5}, "override refused: ttl_s"),
        "both": ({**hold, "expires_at": int(time.time() * 1000) + 60_000}, "expires_at or ttl_s, not both"),
        "not an object": ([hold], "override refused: override: must be a JSON object"),
    }
    for case, (body, message) in refused.items():
        answer = call(d.api.http, "POST", path, body)
        assert answer.status == 400 and message in answer.error, (case, answer)
    not_json = call(d.api.http, "POST", path, raw=b"hold please")
    assert not_json.status == 400 and "not valid JSON" in not_json.error
    unknown = call(d.api.http, "POST", "/v1/rollouts/nope/overrides", hold)
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'"
    assert call(d.api.http, "POST", path, hold, token=None).status == 401
    assert call(d.api.http, "POST", path, hold, token="nope").status == 403
    # None of the refused ones is on record.
    assert call(d.api.http, "GET", path).body["overrides"] == [o]
    assert [r.key for r in d.main.read(d.main.topics.overrides)].count(b"ovr:r2") == 1


def test_healthz_metrics_and_openapi_are_open(deployments):
    d = deployments
    health = call(d.api.http, "GET", "/healthz", token=None)
    assert health.status == 200 and health.body["status"] == "ok" and isinstance(health.body["rollouts"], int)
    metrics = call(d.api.http, "GET", "/metrics", token=None)
    assert metrics.status == 200 and metrics.content_type.startswith("text/plain")
    assert "# TYPE rumgate_beacons_total counter" in metrics.body
    assert metric_value(metrics.body, "rumgate_beacons_total") is not None
    assert "# TYPE rumgate_verdicts_total counter" in metrics.body
    # What the dashboard's health row reads: readiness as /readyz says it, the ingestion counts.
    ready = call(d.api.http, "GET", "/readyz", token=None)
    scraped = call(d.api.http, "GET", "/metrics", token=None).body
    assert metric_value(scraped, "rumgate_ready") == (1.0 if ready.status == 200 else 0.0)
    assert metric_value(scraped, 'rumgate_ingest_items_total{outcome="accepted"}') is not None

    served = call(d.api.http, "GET", "/v1/openapi.json", token=None)
    assert served.status == 200 and served.body == orjson.loads(orjson.dumps(OPENAPI))
    spec = served.body
    assert spec["openapi"] == "3.1.0" and spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"

    routes, documented = api_routes(), documented_routes(spec)
    assert len(routes) == 25, routes  # the API's 21 (tests/http/test_openapi.py) and ingestion's 4
    # Every route is described, and nothing else.
    assert routes - documented == set(), "routes missing from the OpenAPI description"
    assert documented - routes == set(), "OpenAPI describes routes that do not exist"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (path, method)
            assert op["responses"], (path, method)
            if op.get("security") != []:
                assert {"401", "403"} <= set(op["responses"]), (path, method)

    def refs(node):
        if isinstance(node, dict):
            yield from ([node["$ref"]] if "$ref" in node else [])
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(spec):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in spec["components"]["schemas"], ref


def api_routes() -> set[tuple[str, str]]:
    """(path, method) of every route the worker serves (HEAD comes with each GET)."""
    from streams.ingest.endpoint import IngestConfig, Ingestor, add_ingest_routes

    app = make_api(Backend())
    add_ingest_routes(app, Ingestor(IngestConfig(), sink=None))
    return {(r.resource.canonical, r.method.lower()) for r in app.router.routes() if r.method != "HEAD"}


def documented_routes(spec: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in spec["paths"].items() for method in ops}


def test_every_route_is_in_the_openapi_description(deployments):
    spec = call(deployments.api.http, "GET", "/v1/openapi.json", token=None).body
    assert api_routes() - documented_routes(spec) == set()


def test_a_read_open_worker_serves_reads_without_a_token_but_not_mutations(deployments):
    d = deployments
    d.other.start_rollout(Rollout("open:r2", "open", "r2", "r1", CLEAN.start_ms, POLICY))
    eventually(lambda: call(d.open.http, "GET", "/v1/rollouts/open:r2", token=None).status == 200, what="the rollout")
    for path in ["/v1/rollouts"] + [f"/v1/rollouts/open:r2{p}" for p in READ_PATHS]:
        assert call(d.open.http, "GET", path, token=None).status == 200, path
    assert call(d.open.http, "GET", "/v1/rollouts/nope", token=None).status == 404
    # Flagger sends no Authorization header: on a read-open worker its webhooks work.
    hook = call(d.open.http, "POST", "/v1/flagger/rollout", {"metadata": {"rollout": "open:r2"}}, token=None)
    assert hook.status == 200 and hook.body["verdict"] == "continue"

    body = {"app": "open2", "canary": "r2", "baseline": "r1"}
    mutations = [("/v1/rollouts", body), ("/v1/rollouts/open:r2/end", None),
                 ("/v1/rollouts/open:r2/overrides", {"action": "hold", "actor": "ana", "reason": "x"})]
    for path, b in mutations:
        missing = call(d.open.http, "POST", path, b, token=None)
        assert missing.status == 401 and "Authorization" in missing.error, (path, missing)
        assert call(d.open.http, "POST", path, b, token="nope").status == 403, path
    assert call(d.open.http, "GET", "/v1/rollouts/open:r2", token=None).body["ended_at"] is None
    assert call(d.open.http, "GET", "/v1/rollouts/open:r2/overrides", token=None).body["overrides"] == []
    # With the token (still configured), mutations go through.
    assert call(d.open.http, "POST", "/v1/rollouts", body).status == 201


def test_a_worker_without_a_token_refuses_mutations(deployments):
    d = deployments
    body = {"app": "tokenless", "canary": "r2", "baseline": "r1"}
    for path, b in [("/v1/rollouts", body), ("/v1/rollouts/open:r2/end", None),
                    ("/v1/rollouts/open:r2/overrides", {"action": "hold", "actor": "ana", "reason": "x"})]:
        for token in (TOKEN, None):
            answer = call(d.tokenless.http, "POST", path, b, token=token)
            assert answer.status == 403 and "no API token is configured" in answer.error, (path, token, answer)
    read = call(d.tokenless.http, "GET", "/v1/rollouts", token=None)
    assert read.status == 403 and "RUMGATE_API_READ_OPEN" in read.error
    assert call(d.tokenless.http, "GET", "/healthz", token=None).status == 200
    assert not any(orjson.loads(r.value)["app"] == "tokenless" for r in d.other.read(d.other.topics.rollouts))


# -- 1b. input the API should refuse with a 4xx, not a 500 -------------------------------------


def test_a_rollout_id_that_is_not_a_string_is_a_400(deployments):
    answer = start(deployments.api.http, id=123, app="idnum", canary="r2", baseline="r1")
    assert answer.status == 400 and "id" in answer.error


def test_an_override_with_an_absurd_ttl_is_a_400(deployments):
    d = deployments
    assert start(d.api.http, app="ttl", canary="r2", baseline="r1").status == 201
    answer = call(d.api.http, "POST", "/v1/rollouts/ttl:r2/overrides",
                  {"action": "hold", "actor": "ana", "reason": "x", "ttl_s": 1e300})
    assert answer.status == 400 and "ttl_s" in answer.error


def test_a_flagger_webhook_with_malformed_metadata_is_a_400(deployments):
    d = deployments
    for body, field in (({"metadata": "shop-web"}, "metadata"), ({"metadata": {"rollout": ["a"]}}, "metadata.rollout")):
        answer = call(d.api.http, "POST", "/v1/flagger/rollout", body)
        assert answer.status == 400 and answer.error.startswith(f"{field}: "), (body, answer)


# -- 2. an override applied by the judge -------------------------------------------------------


def test_an_override_is_applied_by_the_judge_to_later_verdicts(deployments):
    d = deployments
    sc, rid = CLEAN, "held"
    started = start(d.api.http, id=rid, app=sc.app, canary=sc.canary, baseline=sc.baseline, policy=POLICY_TEXT,
                    started_at=sc.start_ms)
    assert started.status == 201, started
    beacons = list(generate_beacons(sc, seed=2))  # alone, this canary is promoted after 130 s
    cut = sc.start_ms + 40_000
    produced = d.main.produce(b for b in beacons if b["ts"] < cut)
    first = eventually(lambda: (v := call(d.api.http, "GET", f"/v1/rollouts/{rid}/verdict").body)["seq"] >= 2 and v,
                       timeout_s=60, what="verdicts before the override")
    assert first["verdict"] == "continue" and first["overrides"] == [], first

    hold_from = sc.start_ms + 60_000  # event time: windows ending from here on
    added = call(d.api.http, "POST", f"/v1/rollouts/{rid}/overrides",
                 {"action": "hold", "actor": "ana", "reason": "launch", "ticket": "OPS-1", "at": hold_from})
    assert added.status == 201, added
    d.api.wait_for(f"override on {rid} by ana")  # the judge has it
    produced += d.main.produce(b for b in beacons if b["ts"] >= cut)

    latest = eventually(lambda: (v := call(d.api.http, "GET", f"/v1/rollouts/{rid}/verdict").body)["at"]
                        >= sc.start_ms + 300_000 and v, timeout_s=60, what="verdicts after the override")
    assert latest["verdict"] == "hold" and latest["severity"] == "none", latest
    assert latest["reasons"][0].startswith("override by ana: hold, launch (OPS-1)"), latest["reasons"]
    assert latest["reasons"][1].startswith("the evidence alone says promote"), latest["reasons"]
    assert [(o["actor"], o["action"], o["active"]) for o in latest["overrides"]] == [("ana", "hold", True)]

    history = call(d.api.http, "GET", f"/v1/rollouts/{rid}/verdicts").body["verdicts"]
    assert [v["seq"] for v in history] == list(range(1, len(history) + 1))
    assert history[-1]["seq"] >= latest["seq"]
    after = [v for v in history if v["at"] >= hold_from]
    before = [v for v in history if v["at"] < hold_from]
    assert before and after
    assert all(v["verdict"] == "continue" for v in before), [v["verdict"] for v in before]
    assert all(v["verdict"] == "hold" and v["overrides"][0]["active"] for v in after), [v["verdict"] for v in after]
    assert all(not o["active"] for v in before for o in v["overrides"])  # listed once on record, not in effect
    assert not any(v["verdict"] == "promote" for v in history)
    # The summary and the list show the same latest verdict.
    assert call(d.api.http, "GET", f"/v1/rollouts/{rid}").body["verdict"]["seq"] >= latest["seq"]

    def counted():
        text = call(d.api.http, "GET", "/metrics", token=None).body
        return text if metric_value(text, "rumgate_beacons_total") == produced else None

    text = eventually(counted, what=f"{produced} beacons counted")
    assert metric_value(text, 'rumgate_verdicts_total{dry_run="false",verdict="hold"}') >= len(after)
    assert metric_value(text, 'rumgate_verdicts_total{dry_run="false",verdict="promote"}') is None


# -- 3. Argo Rollouts' web metric provider, 4. Flagger's webhooks ---------------------------------


@dataclass
class Measurement:
    phase: str  # Successful | Failed | Inconclusive | Error
    value: Any = None
    message: str = ""


@dataclass
class ArgoWebMetric:
    """The Argo Rollouts ``web`` provider and its condition evaluation, as an AnalysisRun runs them.

    ``GET url`` with the headers; a non-2xx is an Error; ``jsonPath: "{$}"`` makes the whole
    body the ``result``; then (argo-rollouts ``evaluate.EvaluateResult``) failureCondition →
    Failed, else successCondition → Successful, else Inconclusive.
    """

    url: str
    token: str
    success_condition: str = 'result.verdict == "promote"'
    failure_condition: str = 'result.verdict == "rollback"'
    interval_s: float = 1.0
    count: int = 90
    consecutive_error_limit: int = 4
    measurements: list[Measurement] = field(default_factory=list)

    def measure(self) -> Measurement:
        request = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                result = orjson.loads(response.read())  # jsonPath {$}
        except urllib.error.HTTPError as exc:
            return Measurement("Error", message=f"received non 2xx response code: {exc.code}")
        except (OSError, orjson.JSONDecodeError) as exc:
            return Measurement("Error", message=str(exc))
        env = {"result": _namespace(result)}
        failed = eval(self.failure_condition, {"__builtins__": {}}, env)  # noqa: S307 - fixed test expressions
        succeeded = eval(self.success_condition, {"__builtins__": {}}, env)  # noqa: S307
        if failed:
            return Measurement("Failed", result)
        return Measurement("Successful" if succeeded else "Inconclusive", result)

    def run(self, after_first=None) -> str:
        """Measure every ``interval_s`` until Successful, Failed, too many errors, or ``count``."""
        errors = 0
        for i in range(self.count):
            m = self.measure()
            self.measurements.append(m)
            if i == 0 and after_first is not None:
                after_first()
            if m.phase in ("Successful", "Failed"):
                return m.phase
            errors = errors + 1 if m.phase == "Error" else 0
            if errors > self.consecutive_error_limit:
                return "Error"
            time.sleep(self.interval_s)
        return "Inconclusive"

    @property
    def phases(self) -> list[str]:
        return [m.phase for m in self.measurements]


def _namespace(value):
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_namespace(v) for v in value]
    return value


def flagger_hooks(base: str, rollout_id: str) -> dict[str, Answer]:
    webhook = {"name": "shop-web", "namespace": "prod", "phase": "Progressing", "metadata": {"rollout": rollout_id}}
    return {hook: call(base, "POST", f"/v1/flagger/{hook}", webhook)
            for hook in ("confirm-promotion", "rollback", "rollout")}


@dataclass
class CanaryRun:
    pipeline: Pipeline
    worker: Worker
    rollout_id: str
    produced: int
    flagger_before: dict[str, Answer]  # the webhooks' answers before any traffic
    argo: ArgoWebMetric
    outcome: str


@pytest.fixture(scope="module")
def canaries(broker, tmp_path_factory):
    """A clean and a regressed canary, each on its own deployment, driven by the Argo poller."""
    pipelines = {name: Pipeline(broker, tmp_path_factory.mktemp(f"argo-{name}")) for name in ("clean", "regressed")}
    scenarios = {"clean": (CLEAN, 2), "regressed": (REGRESSED, 11)}
    try:
        workers = {name: p.start_worker() for name, p in pipelines.items()}

        def run(name: str) -> CanaryRun:
            pipeline, worker, (sc, seed) = pipelines[name], workers[name], scenarios[name]
            wait_for_api(worker)
            started = start(worker.http, app=sc.app, canary=sc.canary, baseline=sc.baseline, policy=POLICY_TEXT,
                            started_at=sc.start_ms)
            assert started.status == 201, started
            rid = started.body["id"]
            before = flagger_hooks(worker.http, rid)
            produced: list[int] = []
            traffic = threading.Thread(
                target=lambda: produced.append(pipeline.produce(generate_beacons(sc, seed=seed))))
            argo = ArgoWebMetric(f"{worker.http}/v1/rollouts/{rid}/verdict", TOKEN)
            outcome = argo.run(after_first=traffic.start)  # the first measurement sees no traffic yet
            traffic.join()
            return CanaryRun(pipeline, worker, rid, produced[0], before, argo, outcome)

        with ThreadPoolExecutor(2) as pool:
            futures = {name: pool.submit(run, name) for name in pipelines}
            yield {name: f.result() for name, f in futures.items()}
    finally:
        for p in pipelines.values():
            p.stop()


def test_argo_poller_takes_a_clean_canary_to_successful(canaries):
    run = canaries["clean"]
    phases = run.argo.phases
    assert run.outcome == "Successful", (phases, run.worker.output()[-3000:])
    assert phases[0] == "Inconclusive" and phases[-1] == "Successful" and set(phases[:-1]) == {"Inconclusive"}, phases
    assert run.argo.measurements[0].value["seq"] == 0  # before any traffic: "no verdict yet", continue
    seqs = [m.value["seq"] for m in run.argo.measurements]
    assert seqs == sorted(seqs)
    final = run.argo.measurements[-1].value
    assert final["verdict"] == "promote" and final["rollout"] == run.rollout_id
    # What Argo saw is the verdict on the topic.
    latest = [orjson.loads(r.value) for r in run.pipeline.read(run.pipeline.topics.verdicts_latest)]
    assert latest[-1]["seq"] == final["seq"] and latest[-1]["verdict"] == "promote"
    metrics = call(run.worker.http, "GET", "/metrics", token=None).body
    assert metric_value(metrics, 'rumgate_verdicts_total{dry_run="false",verdict="promote"}') == 1.0
    assert metric_value(metrics, 'rumgate_verdicts_total{dry_run="false",verdict="continue"}') == final["seq"] - 1
    assert 0 < metric_value(metrics, "rumgate_beacons_total") <= run.produced


def test_argo_poller_takes_a_regressed_canary_to_failed(canaries):
    run = canaries["regressed"]
    phases = run.argo.phases
    assert run.outcome == "Failed", (phases, run.worker.output()[-3000:])
    assert phases[0] == "Inconclusive" and phases[-1] == "Failed" and set(phases[:-1]) == {"Inconclusive"}, phases
    final = run.argo.measurements[-1].value
    assert final["verdict"] == "rollback" and any("LCP" in r for r in final["reasons"]), final["reasons"]


def test_argo_poller_errors_on_refusals(canaries):
    run = canaries["clean"]
    for url, token in ((f"{run.worker.http}/v1/rollouts/{run.rollout_id}/verdict", "not-the-token"),
                       (f"{run.worker.http}/v1/rollouts/nope/verdict", TOKEN)):
        argo = ArgoWebMetric(url, token, interval_s=0.05, consecutive_error_limit=2)
        assert argo.run() == "Error"
        assert argo.phases == ["Error"] * 3
        assert re.search(r"non 2xx response code: (403|404)", argo.measurements[0].message)


def test_flagger_webhooks_follow_the_verdict(canaries):
    clean, regressed = canaries["clean"], canaries["regressed"]
    # Before any traffic: no verdict (continue).
    for run in (clean, regressed):
        before = run.flagger_before
        assert before["confirm-promotion"].status == 409 and before["confirm-promotion"].body["verdict"] == "continue"
        assert before["rollback"].status == 409
        assert before["rollout"].status == 200
    # After: promote on the clean canary, rollback on the regressed one.
    after = flagger_hooks(clean.worker.http, clean.rollout_id)
    assert after["confirm-promotion"].status == 200 and after["confirm-promotion"].body["verdict"] == "promote"
    assert after["confirm-promotion"].body["rollout"] == clean.rollout_id
    assert after["rollback"].status == 409 and after["rollout"].status == 200
    after = flagger_hooks(regressed.worker.http, regressed.rollout_id)
    assert after["rollback"].status == 200 and after["rollback"].body["verdict"] == "rollback"
    assert after["rollback"].body["reasons"] == regressed.argo.measurements[-1].value["reasons"]
    assert after["confirm-promotion"].status == 409 and after["rollout"].status == 409

    base = regressed.worker.http
    # The rollout may come as a query parameter instead.
    assert call(base, "POST", f"/v1/flagger/rollback?rollout={regressed.rollout_id}", {}).status == 200
    for hook in ("confirm-promotion", "rollback", "rollout"):
        no_rollout = call(base, "POST", f"/v1/flagger/{hook}", {"name": "shop-web", "namespace": "prod",
                                                                "phase": "Progressing"})
        assert no_rollout.status == 400 and "metadata.rollout" in no_rollout.error, (hook, no_rollout)
        assert call(base, "POST", f"/v1/flagger/{hook}", {"metadata": {}}).status == 400
        unknown = call(base, "POST", f"/v1/flagger/{hook}", {"metadata": {"rollout": "nope"}})
        assert unknown.status == 404 and unknown.error == "no rollout 'nope'"
        webhook = {"metadata": {"rollout": regressed.rollout_id}}
        assert call(base, "POST", f"/v1/flagger/{hook}", webhook, token=None).status == 401
        assert call(base, "POST", f"/v1/flagger/{hook}", webhook, token="nope").status == 403
        assert call(base, "POST", f"/v1/flagger/{hook}", raw=b"{oops").status == 400
