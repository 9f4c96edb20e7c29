"""deploy/: every file parses, and the contracts between the files, rumgate's settings,
its HTTP API and CLI, Argo Rollouts, Flagger, Kafka (KRaft) and the CI example hold.

The Argo and Flagger checks send the manifests' own requests to the real API
(``streams.http.api.make_api`` on a loopback port) and judge the answers the way the
controllers do: Argo's ``web`` provider with a port of ``utils/evaluate/evaluate.go``'s
``EvaluateResult`` over the one condition form the templates use, Flagger by the status code.
How whole AnalysisRuns end is in ``tests/http/test_argo_contract.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "kustomize" / "base"
TEMPLATE = DEPLOY / "argo" / "analysis-template.yaml"
HOLD_TEMPLATE = DEPLOY / "argo" / "hold-template.yaml"
REGISTER_TEMPLATE = DEPLOY / "argo" / "register-template.yaml"
ROLLOUT = DEPLOY / "argo" / "rollout.yaml"
CANARY = DEPLOY / "flagger" / "canary.yaml"
COMPOSE = DEPLOY / "compose" / "docker-compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
WORKFLOW = DEPLOY / "ci" / "github-actions.yaml"

EXPECTED_FILES = [
    BASE / "kustomization.yaml", BASE / "deployment.yaml", BASE / "service.yaml", BASE / "pdb.yaml",
    TEMPLATE, HOLD_TEMPLATE, REGISTER_TEMPLATE, ROLLOUT, CANARY, COMPOSE, DOCKERFILE, WORKFLOW, DEPLOY / "README.md",
]
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
# Files whose documents are Kubernetes objects (kustomization.yaml is kustomize's own).
K8S_FILES = [p for p in YAML_FILES
             if p.parent.name in ("base", "argo", "flagger") and p.name != "kustomization.yaml"]
TOKEN = "s3cret-token"
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def one(path: Path, kind: str) -> dict:
    found = [d for d in docs(path) if d.get("kind") == kind]
    assert len(found) == 1, f"{path.relative_to(ROOT)}: expected one {kind}, found {len(found)}"
    return found[0]


def base_object(kind: str) -> dict:
    found = [d for p in K8S_FILES if p.parent == BASE for d in docs(p) if d.get("kind") == kind]
    assert len(found) == 1, f"kustomize base: expected one {kind}, found {len(found)}"
    return found[0]


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the worker pod has one container"
    return containers[0]


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def setting_names() -> set[str]:
    from streams.live.settings import Settings

    return {"RUMGATE_" + f.name.upper() for f in dataclasses.fields(Settings) if f.name != "topics"}


# -- every file ------------------------------------------------------------------------------

def test_the_deploy_files_exist():
    missing = [str(p.relative_to(ROOT)) for p in EXPECTED_FILES if not p.is_file()]
    assert not missing, f"missing: {missing}"
    assert len(YAML_FILES) >= 8


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path):
    parsed = docs(path)
    assert parsed, f"{path} holds no document"
    assert all(isinstance(d, dict) for d in parsed), f"{path}: every document is a mapping"


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_kubernetes_object_has_api_version_kind_and_name(path):
    for d in docs(path):
        assert isinstance(d.get("apiVersion"), str) and d["apiVersion"], f"{path}: apiVersion"
        assert isinstance(d.get("kind"), str) and d["kind"], f"{path}: kind"
        name = (d.get("metadata") or {}).get("name")
        assert isinstance(name, str) and DNS1123.match(name), f"{path}: metadata.name {name!r}"


def test_no_secret_values_are_committed():
    for path in K8S_FILES:
        for d in docs(path):
            assert not (d.get("kind") == "Secret" and (d.get("data") or d.get("stringData"))), \
                f"{path}: a Secret with values; create it with kubectl instead"
    token_env = env_of(container(base_object("Deployment")))["RUMGATE_API_TOKEN"]
    assert "value" not in token_env


# -- kustomize base --------------------------------------------------------------------------

def test_kustomization_lists_exactly_the_manifests_of_its_folder():
    k = one(BASE / "kustomization.yaml", "Kustomization")
    assert k["apiVersion"].startswith("kustomize.config.k8s.io/")
    listed = k.get("resources") or []
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for name in listed:
        assert (BASE / name).is_file(), f"kustomization lists {name}, which does not exist"
    present = {p.name for p in BASE.iterdir() if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml"}
    assert set(listed) == present


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
def test_kustomize_builds_the_base():
    out = subprocess.run(["kubectl", "kustomize", str(BASE)], check=False, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = sorted(d["kind"] for d in built)
    assert kinds == ["Deployment", "Namespace", "PodDisruptionBudget", "Service"]
    namespace = one(BASE / "kustomization.yaml", "Kustomization")["namespace"]
    assert all(d["metadata"].get("namespace") == namespace for d in built if d["kind"] != "Namespace")


def test_deployment_runs_the_worker_with_its_port_probes_and_resources():
    d = base_object("Deployment")
    c = container(d)
    assert c["command"] == ["rumgate", "worker"]
    assert c["image"] == "ghcr.io/rumgate/rumgate:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080}
    for kind in ("readinessProbe", "livenessProbe"):
        probe = c[kind]["httpGet"]
        assert probe["path"] == "/healthz", kind
        assert probe["port"] in ("http", 8080), kind
    resources = c["resources"]
    for side in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[side]), side
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_deployment_env_is_rumgate_settings_with_the_token_from_a_secret():
    c = container(base_object("Deployment"))
    env = env_of(c)
    assert env["RUMGATE_BROKER"]["value"] == "kafka://kafka:9092"
    ref = env["RUMGATE_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("rumgate-api", "token")
    # The HTTP API listens where the container port, the probes and the Service point.
    host_port = env["RUMGATE_HTTP"]["value"]
    assert int(host_port.rpartition(":")[2]) == c["ports"][0]["containerPort"]
    # A misspelt variable would be ignored silently by Settings.from_env.
    unknown = {name for name in env if name.startswith("RUMGATE_")} - setting_names()
    assert not unknown, f"not rumgate settings: {sorted(unknown)}"


def test_a_read_only_root_filesystem_leaves_the_working_directory_writable():
    # Faust creates its data directory in the working directory.
    d = base_object("Deployment")
    c = container(d)
    if (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
        mounts = [m["mountPath"].rstrip("/") for m in c.get("volumeMounts", []) if not m.get("readOnly")]
        workdir = c.get("workingDir", "/").rstrip("/")
        assert any(workdir == m or workdir.startswith(m + "/") for m in mounts), \
            "readOnlyRootFilesystem, but the working directory is not a writable volume"
        volumes = {v["name"] for v in d["spec"]["template"]["spec"].get("volumes", [])}
        assert {m["name"] for m in c["volumeMounts"]} <= volumes


def test_service_and_pdb_select_the_worker_pods_and_reach_the_container_port():
    d = base_object("Deployment")
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    svc = base_object("Service")
    assert svc["metadata"]["name"] == "rumgate"
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert (port["name"], port["port"]) == ("http", 80)
    c = container(d)
    by_name = {p["name"]: p["containerPort"] for p in c["ports"]}
    target = port["targetPort"]
    assert target in by_name or target in by_name.values(), f"targetPort {target!r} is not a container port"
    pdb = base_object("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"])


def service_urls() -> list[str]:
    urls = [m["provider"]["web"]["url"] for path in (TEMPLATE, HOLD_TEMPLATE)
            for m in one(path, "AnalysisTemplate")["spec"]["metrics"]]
    urls += [w["url"] for w in one(CANARY, "Canary")["spec"]["analysis"]["webhooks"]]
    return urls


def test_argo_and_flagger_call_the_service_of_the_base():
    namespace = one(BASE / "kustomization.yaml", "Kustomization")["namespace"]
    svc = base_object("Service")
    for url in service_urls():
        parts = urlsplit(url)
        assert parts.scheme == "http"
        assert parts.hostname == f"{svc['metadata']['name']}.{namespace}.svc", url
        assert (parts.port or 80) == svc["spec"]["ports"][0]["port"], url


# -- the real API, as Argo and Flagger call it -----------------------------------------------

def verdict_event(kind: str, seq: int = 42, rollout: str = "shop-web:2026.11.23-abc") -> dict:
    """A verdict event shaped like docs/architecture.md's."""
    app, _, canary = rollout.partition(":")
    return {"rollout": rollout, "app": app, "canary": canary, "baseline": "2026.11.20-f00",
            "seq": seq, "verdict": kind, "severity": "critical" if kind == "rollback" else "none",
            "at": 1763856000000, "emitted_at": 1763856000350,
            "policy": {"name": "default", "hash": "sha256:00", "dry_run": False},
            "reasons": [f"sample {kind}"],
            "metrics": [{"metric": "LCP", "statistic": "p75", "segment": "all", "canary": 3362.0,
                         "baseline": 3042.0, "ratio": 1.105, "status": "undecided"}],
            "data_quality": {"partitions_complete": True}}


def backend_with(rollout_id: str, latest: dict | None):
    from detectors.policy import DEFAULT_POLICY
    from streams.http.api import Backend
    from detectors.rollout import Rollout

    app, _, canary = rollout_id.partition(":")
    backend = Backend()
    backend.rollouts[rollout_id] = Rollout(rollout_id, app, canary, "2026.11.20-f00", 1, DEFAULT_POLICY)
    if latest is not None:
        backend.latest[rollout_id] = latest
    return backend


def call_api(backend, requests: list[tuple[str, str, dict, dict | None]], read_open: bool = False):
    """Send ``(method, path, headers, json)`` requests to the real API on a loopback port."""
    from aiohttp.test_utils import TestClient, TestServer

    from streams.http.api import make_api

    async def run():
        async with TestClient(TestServer(make_api(backend, token=TOKEN, read_open=read_open))) as client:
            answers = []
            for method, path, headers, body in requests:
                resp = await client.request(method, path, headers=headers, json=body)
                answers.append((resp.status, await resp.json(content_type=None)))
            return answers

    return asyncio.run(run())


# A condition of the form result.<field> == "<value>" or != (the only forms the templates
# use); anything else is refused rather than evaluated.
CONDITION = re.compile(r'^\s*result\.([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=)\s*"([^"\\]*)"\s*$')


def condition_holds(condition: str, result) -> bool:
    """expr-lang's value of ``condition`` (``EvalCondition``, utils/evaluate/evaluate.go) for the
    form above: ``==``/``!=`` of a string with the field (JSON null is Go's nil, equal to no
    string). A missing field is refused: what the templates read, rumgate always sends."""
    m = CONDITION.match(condition)
    assert m, f"condition {condition!r} is not of the form result.<field> ==/!= \"<value>\""
    field, op, value = m.groups()
    if not isinstance(result, dict):
        assert op == "==", f"{condition!r} on a result that is not an object"
        return False
    assert field in result, f"{condition!r}: the result has no {field!r} (Argo's expr would not say False)"
    return (result[field] == value) == (op == "==")


def json_path(expr: str, body):
    m = re.fullmatch(r"\{\$((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}", expr)
    assert m, f"jsonPath {expr!r}: only {{$}} and {{$.a.b}} are understood here"
    for part in filter(None, m.group(1).split(".")):
        body = body[part]
    return body


def web_measurement(metric: dict, status: int, body) -> str:
    """The phase Argo Rollouts' web provider gives one measurement: a non-2xx answer is an
    Error (``Provider.Run``, metricproviders/webmetric/webmetric.go), the body's jsonPath
    result is judged by ``EvaluateResult`` (utils/evaluate/evaluate.go), ported here whole:
    a missing condition is the other one's negation, failure wins over success, neither
    true is Inconclusive."""
    if not 200 <= status < 300:
        return "Error"
    result = json_path(metric["provider"]["web"].get("jsonPath", "{$}"), body)
    success_if, failure_if = metric.get("successCondition", ""), metric.get("failureCondition", "")
    success = condition_holds(success_if, result) if success_if else False
    failure = condition_holds(failure_if, result) if failure_if else False
    if not success_if and not failure_if:
        return "Successful"
    if success_if and not failure_if:
        failure = not success
    elif failure_if and not success_if:
        success = not failure
    if failure:
        return "Failed"
    if not success:
        return "Inconclusive"
    return "Successful"


def render(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}", lambda m: args[m.group(1)], text)


def test_the_evaluator_refuses_conditions_it_cannot_read():
    with pytest.raises(AssertionError):
        condition_holds('result.verdict in ["promote"]', {"verdict": "promote"})
    with pytest.raises(AssertionError):
        condition_holds('result.hold != "final"', {"verdict": "promote"})  # no hold: refused, not guessed
    assert condition_holds('result.verdict == "promote"', {"verdict": "promote"})
    assert not condition_holds('result.verdict == "promote"', {"verdict": "hold"})
    assert not condition_holds('result.verdict == "promote"', "promote")
    assert condition_holds('result.hold != "final"', {"hold": None})
    assert not condition_holds('result.hold != "final"', {"hold": "final"})


def test_the_evaluator_combines_the_conditions_as_evaluate_result_does():
    """The four branches of EvaluateResult (utils/evaluate/evaluate.go)."""
    web = {"web": {"jsonPath": "{$}"}}
    both = {"provider": web, "successCondition": 'result.a == "x"', "failureCondition": 'result.b == "y"'}
    assert web_measurement(both, 200, {"a": "x", "b": "y"}) == "Failed"  # failure wins
    assert web_measurement(both, 200, {"a": "x", "b": "n"}) == "Successful"
    assert web_measurement(both, 200, {"a": "n", "b": "n"}) == "Inconclusive"
    only_success = {"provider": web, "successCondition": 'result.a == "x"'}
    assert web_measurement(only_success, 200, {"a": "n"}) == "Failed"  # never Inconclusive
    only_failure = {"provider": web, "failureCondition": 'result.b == "y"'}
    assert web_measurement(only_failure, 200, {"b": "n"}) == "Successful"
    assert web_measurement({"provider": web}, 200, {}) == "Successful"
    assert web_measurement(both, 404, None) == "Error"


URL = re.compile(r"http://rumgate\.rumgate\.svc/v1/rollouts/\{\{args\.rollout-id\}\}/verdict\?image=\{\{args\.image\}\}")
RID = "shop-web:2026.11.23-abc"
IMAGE = "ghcr.io/acme/shop-web:2026.11.23-abc"


def request_of(metric: dict, args: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The path (with its query) and headers of a metric's request once Argo put in ``args``."""
    web = metric["provider"]["web"]
    parts = urlsplit(render(web["url"], args))
    return parts.path + (f"?{parts.query}" if parts.query else ""), \
        {h["key"]: render(h["value"], args) for h in web["headers"]}


def _common_web_shape(metric: dict) -> None:
    web = metric["provider"]["web"]
    assert list(metric["provider"]) == ["web"]
    assert URL.fullmatch(web["url"]), web["url"]
    assert web.get("method", "GET") == "GET"
    assert {h["key"]: h["value"] for h in web["headers"]} == {"Authorization": "Bearer {{args.api-token}}"}
    assert web["jsonPath"] == "{$}"
    assert web["timeoutSeconds"] == 10
    assert metric["interval"] == "30s"
    assert metric["failureLimit"] == 0
    assert metric["consecutiveErrorLimit"] == 10
    assert "count" not in metric


def test_analysis_template_shape():
    t = one(TEMPLATE, "AnalysisTemplate")
    assert t["apiVersion"] == "argoproj.io/v1alpha1"
    assert t["metadata"]["name"] == "rumgate-verdict"
    (metric,) = t["spec"]["metrics"]
    _common_web_shape(metric)
    assert metric["successCondition"].strip() == 'result.verdict == "promote"'
    assert metric["failureCondition"].strip() == 'result.verdict == "rollback"'
    # hold and continue must wait: many inconclusive measurements before the run gives up.
    assert metric["inconclusiveLimit"] >= 120
    # With an interval, a metric ends on success only by consecutiveSuccessLimit; a count
    # would end it Successful after all-Inconclusive measurements (a promote nobody gave).
    assert metric.get("consecutiveSuccessLimit") == 1
    args = {a["name"]: a for a in t["spec"]["args"]}
    ref = args["api-token"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("rumgate-api", "token")


def test_hold_template_shape():
    """The background analysis: a final hold is Inconclusive and ends the run at once; it never
    completes on success (no count, no consecutiveSuccessLimit), so it watches to the end."""
    t = one(HOLD_TEMPLATE, "AnalysisTemplate")
    assert t["apiVersion"] == "argoproj.io/v1alpha1" and t["metadata"]["name"] == "rumgate-hold"
    (metric,) = t["spec"]["metrics"]
    _common_web_shape(metric)
    assert metric["successCondition"].strip() == 'result.hold != "final"'
    assert metric["failureCondition"].strip() == 'result.verdict == "rollback"'
    assert metric["inconclusiveLimit"] == 0
    assert not metric.get("consecutiveSuccessLimit")
    assert t["spec"]["args"] == one(TEMPLATE, "AnalysisTemplate")["spec"]["args"]


def test_register_template_shape():
    """One PUT per step (count 1, no condition: every 2xx registered it), its JSON body made
    of the args, retried on errors up to Argo's default limit."""
    t = one(REGISTER_TEMPLATE, "AnalysisTemplate")
    assert t["apiVersion"] == "argoproj.io/v1alpha1" and t["metadata"]["name"] == "rumgate-register"
    (metric,) = t["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert web["method"] == "PUT" and web["url"] == "http://rumgate.rumgate.svc/v1/rollouts/{{args.rollout-id}}"
    assert {h["key"]: h["value"] for h in web["headers"]} == {"Authorization": "Bearer {{args.api-token}}",
                                                             "Content-Type": "application/json"}
    assert metric["count"] == 1 and "interval" not in metric
    assert "successCondition" not in metric and "failureCondition" not in metric
    assert metric["consecutiveErrorLimit"] == 4
    body = json.loads(render(web["body"], {"app": "shop-web", "image": IMAGE, "expected-share": "0.05"}))
    assert body == {"app": "shop-web", "image": IMAGE, "expected_share": 0.05}
    args = {a["name"]: a for a in t["spec"]["args"]}
    ref = args["api-token"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("rumgate-api", "token")


def test_the_registration_argo_sends_is_registered_once_then_found():
    (metric,) = one(REGISTER_TEMPLATE, "AnalysisTemplate")["spec"]["metrics"]
    args = {"rollout-id": RID, "app": "shop-web", "image": IMAGE, "expected-share": "0.05", "api-token": TOKEN}
    path, headers = request_of(metric, args)
    body = json.loads(render(metric["provider"]["web"]["body"], args))
    backend = backend_with("shop-web:2026.11.20-f00", None)  # the previous release, still running
    published = []

    async def publish(rollout):
        published.append(rollout.id)

    backend.publish_rollout = publish
    answers = call_api(backend, [("PUT", path, headers, body), ("PUT", path, headers, body)])
    assert [s for s, _ in answers] == [201, 200]
    assert [web_measurement(metric, *a) for a in answers] == ["Successful", "Successful"]
    assert answers[0][1]["canary"] == "2026.11.23-abc" and answers[0][1]["superseded"] == ["shop-web:2026.11.20-f00"]
    assert backend.rollouts[RID].expected_share == 0.05 and published == [RID, "shop-web:2026.11.20-f00"]


def event_of(kind: str, code: str, rollout: str = RID) -> dict:
    """``verdict_event`` with the reason code (and so the hold kind) the judge would give."""
    return {**verdict_event(kind, rollout=rollout), "reason_codes": [code]}


# (verdict, code) → (step measurement, background measurement)
MEASURED = [
    (("promote", "proven_not_worse"), ("Successful", "Successful")),
    (("rollback", "worse"), ("Failed", "Failed")),
    (("continue", "collecting"), ("Inconclusive", "Successful")),
    (("hold", "no_canary"), ("Inconclusive", "Successful")),
    (("hold", "srm"), ("Inconclusive", "Successful")),
    (("hold", "deadline"), ("Inconclusive", "Inconclusive")),
    (("hold", "override_hold"), ("Inconclusive", "Inconclusive")),
]


@pytest.mark.parametrize(("verdict", "expected"), MEASURED, ids=lambda x: "-".join(x))
def test_argo_measures_each_verdict_as_the_contract_says(verdict, expected):
    (step,) = one(TEMPLATE, "AnalysisTemplate")["spec"]["metrics"]
    (background,) = one(HOLD_TEMPLATE, "AnalysisTemplate")["spec"]["metrics"]
    args = {"rollout-id": RID, "image": IMAGE, "api-token": TOKEN}
    requests = [("GET", *request_of(m, args), None) for m in (step, background)]
    answers = call_api(backend_with(RID, event_of(*verdict)), requests)
    assert [s for s, _ in answers] == [200, 200], answers
    assert (web_measurement(step, *answers[0]), web_measurement(background, *answers[1])) == expected
    assert answers[0][1]["release"] == {"image": IMAGE, "tag": "2026.11.23-abc", "canary": "2026.11.23-abc",
                                        "match": True}


def test_argo_before_the_first_verdict_and_on_errors():
    (metric,) = one(TEMPLATE, "AnalysisTemplate")["spec"]["metrics"]
    (background,) = one(HOLD_TEMPLATE, "AnalysisTemplate")["spec"]["metrics"]
    args = {"rollout-id": RID, "image": IMAGE, "api-token": TOKEN}
    path, good = request_of(metric, args)
    unknown, _ = request_of(metric, {**args, "rollout-id": "shop-web:unknown"})
    answers = call_api(backend_with(RID, None), [
        ("GET", path, good, None),     # no verdict yet: continue
        ("GET", unknown, good, None),  # never started: 404
        ("GET", path, {}, None),       # no token: 401
    ])
    (s0, b0), (s1, _), (s2, _) = answers
    assert (s0, b0["verdict"], b0["seq"], b0["hold"]) == (200, "continue", 0, None)
    assert web_measurement(metric, s0, b0) == "Inconclusive"
    assert web_measurement(background, s0, b0) == "Successful"
    assert web_measurement(metric, s1, None) == "Error" and s1 == 404
    assert web_measurement(metric, s2, None) == "Error" and s2 == 401


def rollout_analyses(rollout: dict) -> list[dict]:
    """The Rollout's step analyses and its background analysis."""
    canary = rollout["spec"]["strategy"]["canary"]
    return [s["analysis"] for s in canary["steps"] if "analysis" in s] + [canary["analysis"]]


REQUIRED_ARGS = {"rumgate-verdict": {"rollout-id", "image"}, "rumgate-hold": {"rollout-id", "image"},
                 "rumgate-register": {"rollout-id", "app", "image", "expected-share"}}


def test_every_template_arg_is_declared_and_the_rollout_passes_the_required_ones():
    rollout = one(ROLLOUT, "Rollout")
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1"
    templates = {one(p, "AnalysisTemplate")["metadata"]["name"]: one(p, "AnalysisTemplate")
                 for p in (TEMPLATE, HOLD_TEMPLATE, REGISTER_TEMPLATE)}
    analyses = rollout_analyses(rollout)
    assert [[x["templateName"] for x in a["templates"]] for a in analyses] == [
        ["rumgate-register"], ["rumgate-verdict"], ["rumgate-register"], ["rumgate-hold"]]
    for analysis in analyses:
        (ref,) = analysis["templates"]
        t = templates[ref["templateName"]]
        declared = {a["name"]: a for a in t["spec"]["args"]}
        used = set(re.findall(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}", json.dumps(t["spec"]["metrics"])))
        assert used == set(declared), f"declared and used differ: {sorted(used ^ set(declared))}"
        required = {n for n, a in declared.items() if "value" not in a and "valueFrom" not in a}
        assert required == REQUIRED_ARGS[ref["templateName"]]
        passed = {a["name"]: a for a in analysis.get("args", [])}
        assert required <= set(passed), f"not passed: {sorted(required - set(passed))}"
        assert set(passed) <= set(declared)
        for a in passed.values():
            # A Rollout's analysis args take value, fieldRef or podTemplateHashValue; a
            # secretKeyRef here would be dropped (it belongs in the template's args).
            assert ("value" in a) != ("valueFrom" in a), a
            assert set(a.get("valueFrom", {})) <= {"fieldRef", "podTemplateHashValue"}, a
        assert passed["image"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.template.spec.containers[0].image"


def test_the_rollout_id_the_rollout_passes_names_its_release():
    rollout = one(ROLLOUT, "Rollout")
    for analysis in rollout_analyses(rollout):
        arg = next(a for a in analysis["args"] if a["name"] == "rollout-id")
        if "value" in arg:
            rollout_id = arg["value"]
        else:
            path = arg["valueFrom"]["fieldRef"]["fieldPath"]
            m = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path)
            assert m, f"fieldRef {path!r}: expected metadata.annotations['...']"
            rollout_id = rollout["metadata"]["annotations"][m.group(1)]
        app, _, release = rollout_id.partition(":")
        assert app == rollout["metadata"]["name"] and release, rollout_id
        template = rollout["spec"]["template"]
        assert template["metadata"]["labels"]["app.kubernetes.io/version"] == release
        assert template["spec"]["containers"][0]["image"].endswith(":" + release)


def _template_of(step: dict) -> str | None:
    return step["analysis"]["templates"][0]["templateName"] if "analysis" in step else None


def test_rollout_steps_register_start_small_and_analyse_before_widening():
    canary = one(ROLLOUT, "Rollout")["spec"]["strategy"]["canary"]
    steps = canary["steps"]
    names = [_template_of(s) or next(iter(s)) for s in steps]
    assert names[:3] == ["rumgate-register", "setWeight", "rumgate-verdict"] and steps[1]["setWeight"] == 5
    weights = [s["setWeight"] for s in steps if "setWeight" in s]
    assert weights == sorted(weights) and weights[-1] == 100 and 25 in weights
    assert "pause" in names[names.index("rumgate-verdict"):]
    # Every weight short of 100 % is told to rumgate, as a share, by the registration before it.
    told = None
    for step in steps:
        if _template_of(step) == "rumgate-register":
            told = float(next(a["value"] for a in step["analysis"]["args"] if a["name"] == "expected-share"))
        if step.get("setWeight", 100) < 100:
            assert told == step["setWeight"] / 100, (step, told)
    # The background analysis watches from the verdict step on (startingStep is a step index).
    assert canary["analysis"]["startingStep"] == names.index("rumgate-verdict")


# -- compose and the image -------------------------------------------------------------------

def kafka_env() -> dict[str, str]:
    env = yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]["environment"]
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def listeners(text: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in text.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def test_compose_kafka_runs_kraft_as_one_controller_and_broker():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["kafka"]["image"] == "apache/kafka:3.9.0"
    env = kafka_env()
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound and controller not in advertised
    assert set(bound) <= set(protocols) and set(advertised) <= set(protocols)
    voters = [v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")]
    assert [v[0] for v in voters] == [node]
    assert int(voters[0][1].rpartition(":")[2]) == bound[controller][1]
    assert advertised["PLAINTEXT"] == ("kafka", 9092)
    assert env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT") in advertised
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert services["kafka"]["healthcheck"]["test"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def image_entrypoint() -> list[str]:
    entry = [json.loads(rest) for kw, rest in dockerfile_instructions() if kw == "ENTRYPOINT"]
    assert entry, "the Dockerfile has no ENTRYPOINT"
    return entry[-1]


def test_compose_rumgate_waits_for_healthy_kafka_and_runs_the_worker():
    compose = yaml.safe_load(COMPOSE.read_text())
    rumgate = compose["services"]["rumgate"]
    assert rumgate["depends_on"]["kafka"]["condition"] == "service_healthy"
    env = rumgate["environment"]
    assert env["RUMGATE_BROKER"] == "kafka://kafka:9092"
    broker_host = env["RUMGATE_BROKER"].removeprefix("kafka://")
    assert broker_host in {f"{h}:{p}" for h, p in listeners(kafka_env()["KAFKA_ADVERTISED_LISTENERS"]).values()}
    assert not {k for k in env if k.startswith("RUMGATE_")} - setting_names()
    # What runs: the compose entrypoint (or the image's) followed by the command.
    entrypoint = rumgate.get("entrypoint") or image_entrypoint()
    command = rumgate["command"]
    command = shlex.split(command) if isinstance(command, str) else command
    assert entrypoint + command == ["rumgate", "worker"]
    assert any(str(p).split(":")[-1] == "8080" for p in rumgate["ports"])
    assert int(env["RUMGATE_HTTP"].rpartition(":")[2]) == 8080
    build = rumgate["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_dockerfile_installs_this_package_from_what_it_copies():
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert any(kw == "RUN" and re.search(r"\bpip install \.(\s|$)", rest) for kw, rest in steps)
    assert image_entrypoint() == ["rumgate"]
    copied = [src for kw, rest in steps if kw == "COPY" for src in rest.split()[:-1] if not src.startswith("--")]
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    # What `pip install .` needs: pyproject.toml, its readme, and the packages.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= {s.rstrip("/") for s in copied}, f"not copied: {needed - set(copied)}"
    # The Dockerfile's own ignore file must let them into the build context.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].strip().rstrip("/") for line in ignore if line.startswith("!")}
    assert needed <= allowed, f"excluded from the build context: {needed - allowed}"


# -- CI example -------------------------------------------------------------------------------

def workflow() -> dict:
    w = yaml.safe_load(WORKFLOW.read_text())
    # PyYAML (YAML 1.1) reads the key `on` as True; GitHub reads it as "on".
    assert "on" in w or True in w
    return w


def all_steps(w: dict) -> list[dict]:
    return [s for job in w["jobs"].values() for s in job["steps"]]


def test_ci_waits_on_the_gate_and_handles_each_exit_code_distinctly():
    w = workflow()
    steps = all_steps(w)
    gate = [s for s in steps if re.search(r"^\s*rumgate gate wait ", s.get("run", ""), re.M)]
    assert len(gate) == 1, "one step runs rumgate gate wait"
    gate = gate[0]
    run = gate["run"]
    assert "--timeout" in run
    assert not gate.get("continue-on-error")
    # bash -e would stop at a non-zero exit before the code is recorded.
    assert run.index("set +e") < run.index("rumgate gate wait")
    assert re.search(r"code=\$\?", run) and "GITHUB_OUTPUT" in run
    assert not any("--fail-open" in s.get("run", "") for s in steps), "a gate that passes when it cannot decide"
    ref = f"steps.{gate['id']}.outputs.code"

    def handler(code: str) -> dict:
        found = [s for s in steps if re.fullmatch(rf"\s*{re.escape(ref)}\s*==\s*'{code}'\s*", s.get("if", ""))]
        assert len(found) == 1, f"exactly one step for exit code {code}"
        return found[0]

    handlers = {code: handler(code) for code in "0123"}
    assert len({id(s) for s in handlers.values()}) == 4
    assert "promote" in handlers["0"]["run"] and "exit 1" not in handlers["0"]["run"]
    assert "abort" in handlers["1"]["run"]
    for code in "123":  # rollback, hold/timeout, unreachable: the job fails
        assert re.search(r"^\s*exit [1-9]", handlers[code]["run"], re.M), code
    # Any other code (a crash, docker's 125-127) fails too: never a silent pass.
    others = [s for s in steps if all(f"{ref} != '{c}'" in re.sub(r"\s+", " ", s.get("if", "")) for c in "0123")]
    assert len(others) == 1 and re.search(r"^\s*exit [1-9]", others[0]["run"], re.M)
    # Every handler comes after the gate, and nothing after the gate runs unconditionally.
    after = steps[steps.index(gate) + 1:]
    assert all(s.get("if") for s in after)
    assert all(h in after for h in handlers.values())


def test_ci_documents_the_exit_codes():
    comments = "\n".join(line for line in WORKFLOW.read_text().splitlines() if line.lstrip().startswith("#"))
    for code, word in (("0", "promote"), ("1", "rollback"), ("2", "hold"), ("3", "unreachable")):
        assert re.search(rf"^#\s+{code}\s+.*{word}", comments, re.M), f"exit code {code} ({word}) undocumented"


def rumgate_invocations() -> list[list[str]]:
    w = workflow()
    env = {k: str(v) for k, v in w.get("env", {}).items()}
    calls = []
    for step in all_steps(w):
        text = re.sub(r"\\\n\s*", " ", step.get("run", ""))
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("rumgate "):
                continue
            for name, value in env.items():
                line = line.replace("${" + name + "}", value).replace("$" + name, value)
            line = re.sub(r"\$\{\{\s*github\.sha\s*\}\}", "0123abcd", line)
            line = re.sub(r"\$\{\{\s*steps\.\S+\s*\}\}", "2026.11.20-f00", line)
            calls.append(shlex.split(line)[1:])
    return calls


def test_ci_commands_exist_in_the_cli_and_name_the_same_rollout():
    import click

    from streams.cli import cli

    calls = rumgate_invocations()
    assert {tuple(c[:2]) for c in calls} >= {("rollout", "start"), ("gate", "wait")}
    parsed = {}
    for argv in calls:
        group = cli.get_command(None, argv[0])
        assert isinstance(group, click.Group), argv
        command = group.commands[argv[1]]
        ctx = command.make_context(argv[1], list(argv[2:]))  # raises on an unknown option
        parsed[(argv[0], argv[1])] = ctx.params
    start, wait = parsed[("rollout", "start")], parsed[("gate", "wait")]
    started_id = start.get("rollout_id") or f"{start['app']}:{start['canary']}"
    assert started_id == wait["rollout_id"] == "shop-web:0123abcd"
    assert start["canary"] != start["baseline"]


def test_worker_command_exists_in_the_cli():
    from streams.cli import cli

    command = container(base_object("Deployment"))["command"]
    assert command[0] == "rumgate" and command[1] in cli.list_commands(None)
