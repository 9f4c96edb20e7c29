"""deploy/argo/: the sample Rollout and AnalysisTemplates are valid for Argo Rollouts v1.9.1,
by the schemas of its CRDs (manifests/crds/rollout-crd.yaml and analysis-template-crd.yaml at
tag v1.9.1, kept as fixtures), the way tests/test_deploy_flagger.py checks the Canary; the
check refuses what the API server would refuse; and the web provider's rules that no schema
holds (its method is a plain string) are checked as the controller applies them. The
contracts the samples hold with rumgate are in tests/test_deploy.py."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.crd_schema import crd_errors
from tests.test_deploy import DEPLOY, HOLD_TEMPLATE, REGISTER_TEMPLATE, ROLLOUT, TEMPLATE, docs, one

FIXTURES = Path(__file__).resolve().parent / "fixtures"
COMMIT = "b6bd3bcf8f60d717a98763d26acc983db7f97cb0"  # tag v1.9.1 of github.com/argoproj/argo-rollouts
CRDS = {  # kind: (fixture, CRD name, the served and stored version)
    "Rollout": (FIXTURES / "argo-rollouts-v1.9.1-rollout-crd.yaml", "rollouts.argoproj.io", "v1alpha1"),
    "AnalysisTemplate": (FIXTURES / "argo-rollouts-v1.9.1-analysistemplate-crd.yaml",
                         "analysistemplates.argoproj.io", "v1alpha1"),
}
ARGO_FILES = sorted((DEPLOY / "argo").glob("*.yaml"))
TEMPLATES = [TEMPLATE, HOLD_TEMPLATE, REGISTER_TEMPLATE]
# metricproviders/webmetric/webmetric.go at v1.9.1: an empty method is GET; a body (or
# jsonBody) with GET is a measurement Error ("Body/JSONBody can only be used with POST or PUT
# WebMetric Method types"); v1alpha1 names GET, POST and PUT (WebMetricMethod*), and any other
# string is sent as it is.
WEB_METHODS = {"GET", "POST", "PUT"}


def schema_errors(doc: dict) -> list[str]:
    path, name, version = CRDS[doc["kind"]]
    return crd_errors(path, name, version, doc)


def rel(path: Path) -> str:
    return str(path.relative_to(DEPLOY.parent))


# -- the fixtures --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(CRDS))
def test_the_fixtures_are_argo_rollouts_v1_9_1_crds(kind):
    path, name, _ = CRDS[kind]
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and COMMIT in first and "v1.9.1" in first, first
    [crd] = docs(path)
    assert crd["metadata"]["name"] == name and crd["spec"]["names"]["kind"] == kind


# -- the samples are valid ----------------------------------------------------------------------

def test_every_document_in_deploy_argo_is_one_the_crds_check():
    found = sorted((rel(p), d["kind"]) for p in ARGO_FILES for d in docs(p))
    assert found == sorted([(rel(TEMPLATE), "AnalysisTemplate"), (rel(HOLD_TEMPLATE), "AnalysisTemplate"),
                            (rel(REGISTER_TEMPLATE), "AnalysisTemplate"), (rel(ROLLOUT), "Rollout")])


@pytest.mark.parametrize("path", ARGO_FILES, ids=lambda p: p.name)
def test_the_samples_are_valid_by_argo_rollouts_v1_9_1_crds(path):
    for doc in docs(path):
        assert doc["apiVersion"] == "argoproj.io/v1alpha1", doc["apiVersion"]
        assert schema_errors(doc) == [], f"{rel(path)}: {doc['kind']} {doc['metadata']['name']}"


# -- the check bites ---------------------------------------------------------------------------

def _metric(spec):
    return spec["metrics"][0]


def _web(spec):
    return spec["metrics"][0]["provider"]["web"]


@pytest.mark.parametrize("path, damage, where", [
    # int-or-string: an integer or a string, not a boolean or a fraction
    (TEMPLATE, lambda s: _metric(s).update(inconclusiveLimit=2.5), "spec/metrics/0/inconclusiveLimit"),
    (REGISTER_TEMPLATE, lambda s: _metric(s).update(count=True), "spec/metrics/0/count"),
    (TEMPLATE, lambda s: _metric(s).update(consecutiveSuccessLimit=[1]), "spec/metrics/0/consecutiveSuccessLimit"),
    (HOLD_TEMPLATE, lambda s: _metric(s).update(failureLimit=None), "spec/metrics/0/failureLimit"),
    (TEMPLATE, lambda s: _metric(s).update(interval=30), "spec/metrics/0/interval"),
    (TEMPLATE, lambda s: _web(s).update(timeoutSeconds="10"), "spec/metrics/0/provider/web/timeoutSeconds"),
    (REGISTER_TEMPLATE, lambda s: _web(s).update(body={"app": "shop-web"}), "spec/metrics/0/provider/web/body"),
    # required fields
    (TEMPLATE, lambda s: _metric(s).pop("provider"), "spec/metrics/0"),
    (TEMPLATE, lambda s: _web(s).pop("url"), "spec/metrics/0/provider/web"),
    (TEMPLATE, lambda s: _web(s)["headers"][0].pop("value"), "spec/metrics/0/provider/web/headers/0"),
    (TEMPLATE, lambda s: s["args"][-1]["valueFrom"]["secretKeyRef"].pop("key"), "spec/args/2/valueFrom/secretKeyRef"),
    # unknown fields (kubectl's default strict field validation refuses them)
    (TEMPLATE, lambda s: _metric(s).update(consecutiveSuccesLimit=1), "spec/metrics/0"),
    (TEMPLATE, lambda s: _web(s).update(bodyJson={}), "spec/metrics/0/provider/web"),
    (TEMPLATE, lambda s: s["args"][-1]["valueFrom"].update(configMapKeyRef={"name": "x", "key": "y"}),
     "spec/args/2/valueFrom"),
])
def test_the_schema_check_refuses_a_damaged_template(path, damage, where):
    template = copy.deepcopy(one(path, "AnalysisTemplate"))
    damage(template["spec"])
    errors = schema_errors(template)
    assert errors, "accepted a damaged AnalysisTemplate"
    assert any(e.startswith(where + ":") for e in errors), errors


def _canary(spec):
    return spec["strategy"]["canary"]


def _step(spec, kind):
    return next(s for s in _canary(spec)["steps"] if kind in s)


@pytest.mark.parametrize("damage, where", [
    (lambda s: _step(s, "setWeight").update(setWeight="5"), "spec/strategy/canary/steps/1/setWeight"),
    (lambda s: _step(s, "pause").update(pause={"duration": True}), "spec/strategy/canary/steps/5/pause/duration"),
    (lambda s: _canary(s)["analysis"].update(startingStep="2"), "spec/strategy/canary/analysis/startingStep"),
    (lambda s: s.update(replicas="20"), "spec/replicas"),
    # unknown fields: a step that is no step, a misspelt key, a template named the wrong way
    (lambda s: _canary(s)["steps"].insert(0, {"wait": {"duration": "1m"}}), "spec/strategy/canary/steps/0"),
    (lambda s: _step(s, "setWeight").update(weight=5), "spec/strategy/canary/steps/1"),
    (lambda s: _step(s, "analysis")["analysis"]["templates"][0].update(name="rumgate-register"),
     "spec/strategy/canary/steps/0/analysis/templates/0"),
    # a Rollout's analysis args take value, fieldRef or podTemplateHashValue: no secretKeyRef
    # (why analysis-template.yaml reads the token itself)
    (lambda s: _step(s, "analysis")["analysis"]["args"].append(
        {"name": "api-token", "valueFrom": {"secretKeyRef": {"name": "rumgate-api", "key": "token"}}}),
     "spec/strategy/canary/steps/0/analysis/args/4/valueFrom"),
    (lambda s: _step(s, "analysis")["analysis"]["args"][0]["valueFrom"]["fieldRef"].pop("fieldPath"),
     "spec/strategy/canary/steps/0/analysis/args/0/valueFrom/fieldRef"),
    (lambda s: s["template"]["spec"]["containers"][0].pop("name"), "spec/template/spec/containers/0"),
    (lambda s: s["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(port=None),
     "spec/template/spec/containers/0/readinessProbe/httpGet/port"),
])
def test_the_schema_check_refuses_a_damaged_rollout(damage, where):
    rollout = copy.deepcopy(one(ROLLOUT, "Rollout"))
    damage(rollout["spec"])
    errors = schema_errors(rollout)
    assert errors, "accepted a damaged Rollout"
    assert any(e.startswith(where + ":") for e in errors), errors


# -- what the schema does not check ------------------------------------------------------------

@pytest.mark.parametrize("damage", [
    lambda w: w.update(method="PATCH"),
    lambda w: w.update(method="get"),
])
def test_the_schema_leaves_the_web_method_to_the_controller(damage):
    """v1.9.1's CRD types ``provider.web.method`` as a plain string (no enum), so the API
    server takes any method: the samples' methods are checked below, not by the schema."""
    template = copy.deepcopy(one(TEMPLATE, "AnalysisTemplate"))
    damage(_web(template["spec"]))
    assert schema_errors(template) == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_each_web_metric_uses_a_method_argo_names_and_a_body_only_with_post_or_put(path):
    for metric in one(path, "AnalysisTemplate")["spec"]["metrics"]:
        web = metric["provider"]["web"]
        method = web.get("method") or "GET"
        assert method in WEB_METHODS, (metric["name"], method)
        if "body" in web or "jsonBody" in web:
            assert method in ("POST", "PUT"), (metric["name"], method)
            assert not ("body" in web and "jsonBody" in web), metric["name"]
