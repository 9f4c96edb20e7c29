"""The token: reads and mutations, no token configured, read-open workers, Flagger's ?token=
and metadata.token, the hook token (the hooks and nothing else)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from streams.http import auth, flagger, health, openapi, rollouts
from streams.http.api import make_api
from streams.http.auth import AUTH, Access, Auth, HookAccess
from tests.http.serve import TOKEN, api, backend, rollout

READS = ["/v1/rollouts", "/v1/rollouts/shop:r2", "/v1/rollouts/shop:r2/verdict", "/v1/rollouts/shop:r2/verdicts",
         "/v1/rollouts/shop:r2/overrides"]
MUTATIONS = [("/v1/rollouts", {"app": "cart", "canary": "r2", "baseline": "r1"}), ("/v1/rollouts/shop:r2/end", None),
             ("/v1/rollouts/shop:r2/overrides", {"action": "hold", "actor": "ana", "reason": "x"})]
OPEN = ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"]


def request(authorization: str | None = None, query: str = "", auth_: Auth = Auth(TOKEN)):
    headers = {"Authorization": authorization} if authorization is not None else {}
    app = web.Application()
    app[AUTH] = auth_
    return make_mocked_request("GET", "/v1/rollouts" + query, headers=headers, app=app)


# -- refusal, alone ---------------------------------------------------------------------------


@pytest.mark.parametrize("mutation", [False, True])
def test_refusal_of_each_header(mutation):
    a = Auth(TOKEN)
    assert auth.refusal(a, request(f"Bearer {TOKEN}"), mutation) is None
    assert auth.refusal(a, request(f"bearer {TOKEN}"), mutation) is None  # the scheme in any case
    assert auth.refusal(a, request(f"Bearer  {TOKEN} "), mutation) is None  # spaces around the token
    missing = auth.refusal(a, request(), mutation)
    assert missing.status == 401 and b"missing Authorization: Bearer <token>" in missing.body
    for wrong in ("Bearer nope", f"Basic {TOKEN}", "Bearer ", TOKEN):
        refused = auth.refusal(a, request(wrong), mutation)
        assert refused.status == 403 and refused.body == b'{"error":"wrong token"}', wrong


def test_refusal_without_a_token_configured():
    read = auth.refusal(Auth(""), request(f"Bearer {TOKEN}"), mutation=False)
    assert read.status == 403 and b"no API token is configured" in read.body and b"RUMGATE_API_READ_OPEN" in read.body
    write = auth.refusal(Auth(""), request(f"Bearer {TOKEN}"), mutation=True)
    assert write.status == 403 and b"no API token is configured" in write.body
    assert b"RUMGATE_API_READ_OPEN" not in write.body
    # Read-open with no token: reads pass, mutations are still refused.
    assert auth.refusal(Auth("", read_open=True), request(), mutation=False) is None
    assert auth.refusal(Auth("", read_open=True), request(), mutation=True).status == 403


def test_read_open_serves_reads_without_a_token_but_not_mutations():
    a = Auth(TOKEN, read_open=True)
    assert auth.refusal(a, request(), mutation=False) is None
    assert auth.refusal(a, request("Bearer nope"), mutation=False) is None
    assert auth.refusal(a, request(), mutation=True).status == 401
    assert auth.refusal(a, request("Bearer nope"), mutation=True).status == 403


def test_a_hook_takes_the_token_from_the_query():
    a = Auth(TOKEN)
    assert auth.hook_refusal(request(query=f"?token={TOKEN}", auth_=a)) is None
    wrong = auth.hook_refusal(request(query="?token=nope", auth_=a))  # a token, not the worker's: wrong, not missing
    assert wrong.status == 403 and wrong.body == b'{"error":"wrong token (?token=)"}'
    assert auth.hook_refusal(request(query="?token=", auth_=a)).status == 403
    assert auth.hook_refusal(request(f"Bearer {TOKEN}", query="?token=nope", auth_=a)) is None
    assert auth.hook_refusal(request("Bearer nope", query="?token=nope", auth_=a)).status == 403
    assert auth.hook_refusal(request(auth_=Auth(TOKEN, read_open=True))) is None
    # With no token configured, an empty ?token= is not the token.
    assert auth.hook_refusal(request(query="?token=", auth_=Auth(""))).status == 403


def test_hook_access_takes_the_hook_token_and_metadata_token():
    a = Auth(TOKEN, hook_token="hook-only")
    for given in (TOKEN, "hook-only"):
        assert auth.hook_access(request(query=f"?token={given}", auth_=a)) is HookAccess.TOKEN
        assert auth.hook_access(request(f"Bearer {given}", auth_=a)) is HookAccess.TOKEN
        assert auth.hook_access(request(auth_=a), body={"metadata": {"token": given}}) is HookAccess.TOKEN
    # Before the body is read, no header or query token is not yet a refusal.
    assert auth.hook_access(request(auth_=a)) is HookAccess.UNCHECKED
    missing = auth.hook_access(request(auth_=a), body={"metadata": {}})
    assert missing.status == 401 and b"metadata.token" in missing.body
    wrong = auth.hook_access(request(auth_=a), body={"metadata": {"token": "guess"}})
    assert wrong.status == 403 and wrong.body == b'{"error":"wrong token (metadata.token)"}'
    assert auth.hook_access(request(auth_=a), body={"metadata": {"token": 7}}).status == 403
    # The hook token is not the API token: the middleware's refusal does not take it.
    assert auth.refusal(a, request("Bearer hook-only"), mutation=False).body == b'{"error":"wrong token"}'
    assert auth.refusal(a, request("Bearer hook-only"), mutation=True).status == 403


def test_hook_access_with_a_hook_token_alone_and_on_read_open_workers():
    hooks_only = Auth("", hook_token="hook-only")
    assert auth.hook_access(request(query="?token=hook-only", auth_=hooks_only)) is HookAccess.TOKEN
    assert auth.hook_access(request(query="?token=", auth_=hooks_only)).status == 403  # "" is never a token
    assert auth.refusal(hooks_only, request("Bearer hook-only"), mutation=False).status == 403  # no API token
    read_open = Auth(TOKEN, read_open=True)
    assert auth.hook_access(request(auth_=read_open), body={}) is HookAccess.OPEN
    assert auth.hook_access(request(query=f"?token={TOKEN}", auth_=read_open)) is HookAccess.TOKEN
    # A token given and wrong is refused as wrong even where none is needed: its sender must know.
    wrong = auth.hook_access(request(query="?token=nope", auth_=read_open))
    assert wrong.status == 403 and wrong.body == b'{"error":"wrong token (?token=)"}'
    nothing = Auth("", read_open=True)
    assert auth.hook_access(request(auth_=nothing), body={}) is HookAccess.OPEN
    none_configured = auth.hook_access(request(query="?token=x", auth_=nothing))
    assert none_configured.status == 403 and b"no API token is configured" in none_configured.body
    assert auth.hook_access(request(auth_=Auth("")), body={}).status == 403


# -- the marks and the middleware ---------------------------------------------------------------


def test_every_route_is_marked_as_its_method_says():
    """GETs of rollouts are reads, POSTs mutations; the open routes and Flagger's hooks (which
    check for themselves) carry no mark."""
    marks = {(r.resource.canonical, r.method): auth.access(r.handler)
             for r in make_api(backend()[0]).router.routes() if r.method != "HEAD"}
    for (path, method), mark in marks.items():
        if path in OPEN or path.startswith("/v1/flagger/"):
            assert mark is None, (path, method)
        else:
            assert mark is (Access.READ if method == "GET" else Access.MUTATION), (path, method)
    assert auth.access(rollouts.start_rollout) is Access.MUTATION and auth.access(rollouts.get_verdict) is Access.READ
    assert auth.access(health.healthz) is None and auth.access(openapi.openapi) is None
    assert auth.access(flagger.rollback_hook) is None


def test_the_middleware_refuses_before_the_handler_runs():
    b, rec = backend(rollout())
    app = api(b)
    for path in READS:
        missing, wrong, right = app.calls([("GET", path, None, {}, None),
                                            ("GET", path, None, {"Authorization": "Bearer nope"}, None),
                                            ("GET", path, None, {"Authorization": f"Bearer {TOKEN}"}, None)])
        assert missing.status == 401 and "Authorization" in missing.error and missing.content_type.startswith(
            "application/json"), path
        assert wrong.status == 403 and wrong.error == "wrong token", path
        assert right.status == 200, path
    for path, body in MUTATIONS:
        assert app.call("POST", path, body, headers={}).status == 401, path
        assert app.call("POST", path, body, headers={"Authorization": "Bearer nope"}).status == 403, path
    # Auth comes first: an unknown rollout without the token is 401, not 404; a bad body is 401, not 400.
    assert app.call("GET", "/v1/rollouts/nope", headers={}).status == 401
    assert app.call("POST", "/v1/rollouts", raw=b"{oops", headers={}).status == 401
    assert rec.rollouts == [] and rec.overrides == [] and rec.history_asked == ["shop:r2"]  # the right call only


def test_a_worker_without_a_token_refuses_mutations_and_reads():
    b, rec = backend(rollout())
    b.partitions = []  # ready, so /readyz answers 200 like the other open routes
    app = api(b, token="")
    for path, body in MUTATIONS:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
            answer = app.call("POST", path, body, headers=headers)
            assert answer.status == 403 and "no API token is configured" in answer.error, (path, headers)
    read = app.call("GET", "/v1/rollouts", headers={})
    assert read.status == 403 and "RUMGATE_API_READ_OPEN" in read.error
    for path in OPEN:
        assert app.call("GET", path, headers={}).status == 200, path
    assert rec.rollouts == [] and rec.overrides == []


def test_a_read_open_worker():
    b, rec = backend(rollout())
    app = api(b, read_open=True)
    for path in READS:
        assert app.call("GET", path, headers={}).status == 200, path
    assert app.call("GET", "/v1/rollouts/nope", headers={}).status == 404
    for path, body in MUTATIONS:
        missing = app.call("POST", path, body, headers={})
        assert missing.status == 401 and "Authorization" in missing.error, path
        assert app.call("POST", path, body, headers={"Authorization": "Bearer nope"}).status == 403, path
    assert rec.rollouts == [] and rec.overrides == []
    assert app.call("POST", "/v1/rollouts", MUTATIONS[0][1]).status == 201  # with the token


def test_the_hook_token_given_to_make_api_opens_the_hooks_and_nothing_else():
    b, rec = backend(rollout())
    app = api(b, hook_token="hook-only")
    hook = {"name": "shop", "namespace": "shop", "phase": "Progressing", "checksum": "abc123",
            "metadata": {"rollout": "shop:r2", "token": "hook-only"}}
    answer = app.call("POST", "/v1/flagger/confirm-promotion", hook, headers={})
    assert answer.status not in (401, 403), answer  # authorised: the verdict decides (409: not promote yet)
    wrong = app.call("POST", "/v1/flagger/confirm-promotion",
                     {**hook, "metadata": {**hook["metadata"], "token": "nope"}}, headers={})
    assert wrong.status == 403
    for path in READS:
        assert app.call("GET", path, headers={"Authorization": "Bearer hook-only"}).status == 403, path
    for path, body in MUTATIONS:
        assert app.call("POST", path, body, headers={"Authorization": "Bearer hook-only"}).status == 403, path
    # What the hook token wrote is the hooks' own record: the revision Flagger asked about.
    assert [r.revision for r in rec.rollouts] == ["shop/shop@abc123"] and rec.overrides == []
