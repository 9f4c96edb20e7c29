"""deploy/flagger/: the sample Canary, and the Flagger hooks it calls answering as the
contract says (moved out of tests/test_deploy.py, whose shared helpers it imports)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.test_deploy import CANARY, backend_with, call_api, one, verdict_event


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
    assert urlsplit(hooks["confirm-promotion"]["url"]).path == "/v1/flagger/confirm-promotion"
    assert urlsplit(hooks["rollback"]["url"]).path == "/v1/flagger/rollback"
    for kind in ("confirm-promotion", "rollback"):
        hook = hooks[kind]
        assert hook["metadata"] == {"app": canary["metadata"]["name"]}, hook["metadata"]
        assert re.fullmatch(r"\d+(ms|s|m)", hook["timeout"]), hook["timeout"]


@pytest.mark.parametrize("kind", ["promote", "rollback", "hold", "continue", None])
def test_flagger_hooks_answer_as_the_contract_says(kind):
    # Flagger sends no headers: the hooks are served with reads open (see canary.yaml).
    hooks = flagger_hooks()
    app = hooks["confirm-promotion"]["metadata"]["app"]
    assert hooks["rollback"]["metadata"]["app"] == app
    rid = f"{app}:2026.11.23-abc"  # the app's running rollout, started by CI for this release
    latest = verdict_event(kind, rollout=rid) if kind else None
    requests = []
    for hook_type in ("confirm-promotion", "rollback"):
        hook = hooks[hook_type]
        payload = {"name": "shop-web", "namespace": "shop-web", "phase": "Progressing",
                   "checksum": "abc123", "metadata": hook["metadata"]}
        requests.append(("POST", urlsplit(hook["url"]).path, {}, payload))
    (s_confirm, b_confirm), (s_rollback, _) = call_api(backend_with(rid, latest), requests, read_open=True)
    assert s_confirm == (200 if kind == "promote" else 409), b_confirm
    assert s_rollback == (200 if kind == "rollback" else 409)
    assert b_confirm["verdict"] == (kind or "continue")
