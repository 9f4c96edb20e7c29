"""deploy/flagger/: the sample Canary is valid for Flagger v1.44 (its CRD's schema, kept as a
fixture, and the rules Flagger checks at run time), names a real provider with every field it
needs, keeps each user on one release, has rumgate as its only gate, and the hooks it calls
answer as the contract says (moved out of tests/test_deploy.py, whose shared helpers it
imports). tests/http/test_flagger_contract.py runs the same sample through a port of
Flagger's scheduler."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.crd_schema import crd_errors
from tests.test_deploy import CANARY, backend_with, call_api, one, verdict_event

CRD = Path(__file__).resolve().parent / "fixtures" / "flagger-v1.44.0-canary-crd.yaml"
HOOK_TYPES = {"pre-rollout": "/v1/flagger/rollout", "rollout": "/v1/flagger/rollout",
              "confirm-traffic-increase": "/v1/flagger/confirm-traffic-increase",
              "confirm-promotion": "/v1/flagger/confirm-promotion", "rollback": "/v1/flagger/rollback"}
# Providers whose router in Flagger v1.44 honours analysis.sessionAffinity (pkg/router: only
# gateway_api.go, gateway_api_v1beta1.go and istio.go read it).
AFFINITY_PROVIDERS = {"gatewayapi:v1", "gatewayapi:v1beta1", "istio"}


# -- Flagger ---------------------------------------------------------------------------------

def flagger_hooks() -> dict[str, dict]:
    canary = one(CANARY, "Canary")
    assert canary["apiVersion"] == "flagger.app/v1beta1"
    hooks = canary["spec"]["analysis"]["webhooks"]
    by_type = {h["type"]: h for h in hooks}
    assert len(by_type) == len(hooks), "one webhook per type"
    return by_type


def test_flagger_canary_shape():
    canary = one(CANARY, "Canary")
    assert canary["spec"]["targetRef"]["name"] == canary["metadata"]["name"] == "shop-web"
    analysis = canary["spec"]["analysis"]
    for key in ("interval", "threshold", "maxWeight", "stepWeight"):
        assert key in analysis, key
    assert 0 < analysis["stepWeight"] <= analysis["maxWeight"] <= 100
    hooks = flagger_hooks()
    assert {t: urlsplit(h["url"]).path for t, h in hooks.items()} == HOOK_TYPES
    app = canary["metadata"]["name"]
    releases = {h["metadata"]["release"] for h in hooks.values()}
    assert len(releases) == 1, "every hook names the same release"
    for kind, hook in hooks.items():
        assert hook["metadata"]["app"] == app, hook["metadata"]
        assert "token" not in hook["metadata"] and "token=" not in hook["url"], "the token is patched in at deploy time"
        assert re.fullmatch(r"\d+(ms|s|m)", hook["timeout"]), hook["timeout"]
    # The hooks that may register the rollout name its baseline too, and it is another release.
    for kind in ("pre-rollout", "rollout"):
        meta = hooks[kind]["metadata"]
        assert meta["baseline"] and meta["baseline"] != meta["release"], meta


def test_the_sample_has_a_real_provider_with_the_fields_it_needs():
    """The provider is a progressive one (``kubernetes`` is blue/green: ``advanceCanary`` in
    scheduler.go runs ``runBlueGreen`` for it, so the canary gets no users before
    confirm-promotion, and rumgate would hold forever), and it has what its router requires:
    Gateway API needs ``service.gatewayRefs`` (``GatewayAPIRouter.Reconcile`` in
    pkg/router/gateway_api.go: "GatewayRefs must be specified"), nginx an ``ingressRef``."""
    spec = one(CANARY, "Canary")["spec"]
    provider = spec.get("provider")
    assert provider and provider != "kubernetes", "name the provider; the default is the install's"
    if provider.startswith("gatewayapi"):
        assert spec["service"]["gatewayRefs"] and all(g["name"] for g in spec["service"]["gatewayRefs"])
    if provider == "nginx":
        assert spec["ingressRef"]["name"]
    assert spec["service"]["port"] and spec["service"].get("targetPort")


def test_each_user_stays_on_one_release():
    """Cookie session affinity, on a provider whose router honours it, with two different
    cookie names (``verifySessionAffinity`` in pkg/controller/controller.go refuses one name
    for both)."""
    spec = one(CANARY, "Canary")["spec"]
    affinity = spec["analysis"]["sessionAffinity"]
    assert spec["provider"] in AFFINITY_PROVIDERS
    assert affinity["cookieName"] and affinity["primaryCookieName"]
    assert affinity["cookieName"] != affinity["primaryCookieName"]
    assert affinity.get("maxAge", 86400) >= 3600


def test_rumgate_is_the_only_gate():
    """No ``metrics``: a metric without a meaningful query is a gate that does nothing, and
    Flagger's built-in ones need a mesh's Prometheus. ``threshold`` counts what the rollout
    hooks fail (``runAnalysis``), so it means something. No ``skipAnalysis``."""
    spec = one(CANARY, "Canary")["spec"]
    assert "metrics" not in spec["analysis"] and not spec.get("skipAnalysis")
    assert spec["analysis"]["threshold"] >= 1
    assert {"rollout", "rollback", "confirm-promotion"} <= set(flagger_hooks())


# -- the CRD schema ---------------------------------------------------------------------------

def schema_errors(doc: dict) -> list[str]:
    return crd_errors(CRD, "canaries.flagger.app", "v1beta1", doc)


def test_the_sample_is_valid_by_flaggers_crd():
    assert schema_errors(one(CANARY, "Canary")) == []


@pytest.mark.parametrize("damage, where", [
    (lambda s: s["analysis"].pop("threshold"), "spec/analysis"),  # oneOf: interval, threshold and a step
    (lambda s: s["analysis"]["webhooks"][0].update(timeout="10"), "spec/analysis/webhooks/0/timeout"),
    (lambda s: s["analysis"]["webhooks"][0].update(type="pre-promotion"), "spec/analysis/webhooks/0/type"),
    (lambda s: s["analysis"]["webhooks"][0]["metadata"].update(retries=3), "spec/analysis/webhooks/0/metadata/retries"),
    (lambda s: s["analysis"]["sessionAffinity"].pop("cookieName"), "spec/analysis/sessionAffinity"),
    (lambda s: s.update(provider="gatewayapi"), "spec/provider"),
    (lambda s: s["service"].update(gatewayRef=[{"name": "public"}]), "spec/service"),
])
def test_the_schema_check_refuses_what_flagger_refuses(damage, where):
    """The check is not vacuous: each damage is one the API server would refuse."""
    canary = copy.deepcopy(one(CANARY, "Canary"))
    damage(canary["spec"])
    errors = schema_errors(canary)
    assert errors, "accepted a damaged Canary"
    assert any(e.startswith(where) for e in errors), errors


# -- the hooks, as the contract says ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["promote", "rollback", "hold", "continue", None])
def test_flagger_hooks_answer_as_the_contract_says(kind):
    # Flagger sends no headers: the hooks are served with reads open here; the rollout exists
    # (registered before), so the rollout hooks need no token to answer for it.
    hooks = flagger_hooks()
    app, release = hooks["rollout"]["metadata"]["app"], hooks["rollout"]["metadata"]["release"]
    rid = f"{app}:{release}"
    latest = verdict_event(kind, rollout=rid) if kind else None
    requests = []
    for hook_type, hook in hooks.items():
        payload = {"name": "shop-web", "namespace": "shop-web", "phase": "Progressing",
                   "checksum": "abc123", "metadata": hook["metadata"]}
        requests.append(("POST", urlsplit(hook["url"]).path, {}, payload))
    answers = dict(zip(hooks, call_api(backend_with(rid, latest), requests, read_open=True)))
    kind = kind or "continue"
    expected = {"confirm-promotion": kind == "promote", "rollback": kind == "rollback",
                "pre-rollout": kind != "rollback", "rollout": kind != "rollback",
                # verdict_event's hold carries no final reason code: a transient hold
                "confirm-traffic-increase": kind != "rollback"}
    for hook_type, (status, body) in answers.items():
        assert status == (200 if expected[hook_type] else 409), (hook_type, body)
        assert body["verdict"] == kind and body["rollout"] == rid and body["release"] == release, body
