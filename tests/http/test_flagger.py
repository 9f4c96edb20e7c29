"""Flagger's webhooks alone: 200 only on promote (confirm-promotion) or rollback (rollback),
200 unless rollback (rollout), else 409; which rollout; the token as ?token=."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from streams.http.flagger import hook_rollout
from tests.http.serve import NOW, TOKEN, api, backend, rollout, verdict

HOOKS = ("confirm-promotion", "rollback", "rollout")
GO = {"confirm-promotion": {"promote"}, "rollback": {"rollback"}, "rollout": {"continue", "promote", "hold"}}


@pytest.mark.parametrize("kind", ["continue", "promote", "hold", "rollback"])
@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_answers_from_the_verdict(hook, kind):
    latest = verdict("shop:r2", kind, seq=4)
    b, _ = backend(rollout(), latest={"shop:r2": latest})
    answer = api(b).call("POST", f"/v1/flagger/{hook}", {"name": "shop-web", "namespace": "prod",
                                                         "metadata": {"rollout": "shop:r2"}})
    assert answer.status == (200 if kind in GO[hook] else 409), answer
    assert answer.body == {"rollout": "shop:r2", "verdict": kind, "seq": 4, "reasons": latest["reasons"]}


@pytest.mark.parametrize("hook", HOOKS)
def test_before_the_first_verdict_a_hook_sees_continue(hook):
    answer = api(backend(rollout())[0]).call("POST", f"/v1/flagger/{hook}", {"metadata": {"rollout": "shop:r2"}})
    assert answer.status == (200 if hook == "rollout" else 409)
    assert answer.body["verdict"] == "continue" and answer.body["seq"] == 0
    assert answer.body["reasons"][0].startswith("no verdict yet")


def test_the_rollout_by_query_or_by_app():
    older, newer = rollout("shop:r2", started_at=NOW - 90_000), rollout("shop:r3", started_at=NOW - 30_000)
    gone = rollout("shop:r4", started_at=NOW - 10_000, ended_at=NOW - 5_000)
    b, _ = backend(older, newer, gone, latest={"shop:r2": verdict("shop:r2", "rollback"),
                                               "shop:r3": verdict("shop:r3", "promote")})
    served = api(b)
    assert served.call("POST", "/v1/flagger/rollback?rollout=shop:r2", {}).status == 200
    assert served.call("POST", "/v1/flagger/rollback?rollout=shop:r2").status == 200  # no body at all
    # Two running rollouts of the app: no answer is safe, the hook names them (the ended one does not count).
    for path, body in (("/v1/flagger/confirm-promotion", {"metadata": {"app": "shop"}}),
                       ("/v1/flagger/confirm-promotion?app=shop", {})):
        ambiguous = served.call("POST", path, body)
        assert ambiguous.status == 409 and ambiguous.error == (
            "app 'shop' has 2 running rollouts (shop:r2, shop:r3): end the stale ones or name the rollout "
            "with metadata.rollout (or ?rollout=ID)")
    # Once the stale one has ended, the app's one running rollout answers.
    assert served.call("POST", "/v1/rollouts/shop:r2/end").status == 200
    by_app = served.call("POST", "/v1/flagger/confirm-promotion", {"metadata": {"app": "shop"}})
    assert by_app.status == 200 and by_app.body["rollout"] == "shop:r3"
    assert served.call("POST", "/v1/flagger/confirm-promotion?app=shop", {}).body["rollout"] == "shop:r3"
    # The query wins over the body.
    assert served.call("POST", "/v1/flagger/rollback?rollout=shop:r2",
                       {"metadata": {"rollout": "shop:r3"}}).body["rollout"] == "shop:r2"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_refusals(hook):
    b, _ = backend(rollout(), rollout("idle:r2", ended_at=NOW - 1))
    served = api(b)
    path = f"/v1/flagger/{hook}"
    which = served.call("POST", path, {"name": "shop-web", "namespace": "prod", "phase": "Progressing"})
    assert which.status == 400 and which.error == ("which rollout? give metadata.rollout (or metadata.app) in the "
                                                   "webhook, or ?rollout=ID (or ?app=APP)")
    assert served.call("POST", path, {"metadata": {}}).status == 400
    meta = served.call("POST", path, {"metadata": "shop:r2"})
    assert meta.status == 400 and meta.error.startswith("metadata: must be an object")
    for value in (" ", 7):
        bad = served.call("POST", path, {"metadata": {"rollout": value}})
        assert bad.status == 400 and bad.error == "metadata.rollout: must be a non-empty string", value
    bad_app = served.call("POST", path, {"metadata": {"app": ["shop"]}})
    assert bad_app.status == 400 and bad_app.error == "metadata.app: must be a non-empty string"
    unknown = served.call("POST", path, {"metadata": {"rollout": "nope"}})
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'"
    idle = served.call("POST", path, {"metadata": {"app": "idle"}})
    assert idle.status == 404 and idle.error == "no running rollout of app 'idle'"
    not_json = served.call("POST", path, raw=b"{oops")
    assert not_json.status == 400 and not_json.error.startswith("body: not valid JSON")


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_tokens(hook):
    b, _ = backend(rollout(), latest={"shop:r2": verdict("shop:r2", "promote")})
    path, webhook = f"/v1/flagger/{hook}", {"metadata": {"rollout": "shop:r2"}}
    served = api(b)
    assert served.call("POST", path, webhook, headers={}).status == 401
    assert served.call("POST", path, webhook, headers={"Authorization": "Bearer nope"}).status == 403
    wrong = served.call("POST", path + "?token=nope", webhook, headers={})
    assert wrong.status == 403 and wrong.error == "wrong token (?token=)"
    by_query = served.call("POST", path + f"?token={TOKEN}", webhook, headers={})
    assert by_query.status in (200, 409) and by_query.body["rollout"] == "shop:r2"
    # The token is checked before the body is read: without it, not JSON is 401, not 400.
    assert served.call("POST", path, raw=b"{oops", headers={}).status == 401
    # A read-open worker serves the hooks without a token; one without a token refuses them.
    assert api(b, read_open=True).call("POST", path, webhook, headers={}).body["verdict"] == "promote"
    tokenless = api(b, token="").call("POST", path, webhook)
    assert tokenless.status == 403 and "no API token is configured" in tokenless.error


def test_hook_rollout_alone():
    b, _ = backend(rollout("shop:r2"))
    req = make_mocked_request("POST", "/v1/flagger/rollout")
    assert hook_rollout(b, req, {"metadata": {"rollout": "shop:r2"}}) is b.rollouts["shop:r2"]
    assert hook_rollout(b, req, {"metadata": {"app": "shop"}}) is b.rollouts["shop:r2"]
    assert hook_rollout(b, make_mocked_request("POST", "/x?app=shop"), []) is b.rollouts["shop:r2"]
    refused = hook_rollout(b, req, None)
    assert isinstance(refused, web.Response) and refused.status == 400
