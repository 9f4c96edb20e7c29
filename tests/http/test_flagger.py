"""Flagger's webhooks alone: 200 only on promote (confirm-promotion) or rollback (rollback),
200 unless rollback (rollout), 200 unless rollback or a final hold (confirm-traffic-increase),
else 409; which rollout, of which release and revision; registration; the token as ?token=
or metadata.token, the API's or the hook token. tests/http/test_flagger_contract.py sends
the same hooks as Flagger does and judges the answers by Flagger's rules."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from detectors.policy import DEFAULT_POLICY
from detectors.rollout import Rollout
from streams.http.auth import AUTH
from streams.http.flagger import hold_of, hook_rollout
from tests.http.serve import NOW, TOKEN, Served, api, backend, rollout, verdict

HOOKS = ("confirm-promotion", "rollback", "rollout", "confirm-traffic-increase")
GO = {"confirm-promotion": {"promote"}, "rollback": {"rollback"}, "rollout": {"continue", "promote", "hold"},
      "confirm-traffic-increase": {"continue", "promote", "hold"}}
HOOK_TOKEN = "hook-only-token"


@dataclass
class HookServed(Served):
    """The API with the hook token configured beside the API token (``hook_token``)."""

    hook_token: str = HOOK_TOKEN

    def app(self):
        app = super().app()
        app[AUTH] = replace(app[AUTH], hook_token=self.hook_token)
        return app


@pytest.mark.parametrize("kind", ["continue", "promote", "hold", "rollback"])
@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_answers_from_the_verdict(hook, kind):
    latest = verdict("shop:r2", kind, seq=4)
    b, _ = backend(rollout(), latest={"shop:r2": latest})
    answer = api(b).call("POST", f"/v1/flagger/{hook}", {"name": "shop-web", "namespace": "prod",
                                                         "metadata": {"rollout": "shop:r2"}})
    assert answer.status == (200 if kind in GO[hook] else 409), answer
    assert answer.body == {"rollout": "shop:r2", "release": "r2", "verdict": kind,
                           "hold": "transient" if kind == "hold" else None, "seq": 4, "reasons": latest["reasons"]}


@pytest.mark.parametrize("hook", HOOKS)
def test_before_the_first_verdict_a_hook_sees_continue(hook):
    answer = api(backend(rollout())[0]).call("POST", f"/v1/flagger/{hook}", {"metadata": {"rollout": "shop:r2"}})
    assert answer.status == (200 if hook in ("rollout", "confirm-traffic-increase") else 409)
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


def test_a_rollout_that_ended_itself_still_answers_for_its_release():
    """A decided rollout ends itself while Flagger still calls the rollback hook: the release
    it judged still gets its verdict; another release, or an unproven revision, does not."""
    ended = rollout("shop:r2", ended_at=NOW - 1_000, end_reason="decided: rollback (rollback_metric), verdict #9")
    b, _ = backend(ended, latest={"shop:r2": verdict("shop:r2", "rollback", 9)})
    served = api(b)
    hook = {"name": "shop-web", "namespace": "prod", "phase": "Progressing", "checksum": "aaaa"}
    by_release = served.call("POST", "/v1/flagger/rollback", {**hook, "metadata": {"app": "shop", "release": "r2"}})
    assert by_release.status == 200 and by_release.body["rollout"] == "shop:r2"
    other = served.call("POST", "/v1/flagger/rollback", {**hook, "metadata": {"app": "shop", "release": "r3"}})
    assert other.status == 404 and other.error.startswith("no running rollout of app 'shop' for release 'r3'")
    # By app alone: only for the checksum this worker bound while asked with the release.
    bound = served.call("POST", "/v1/flagger/rollback", {**hook, "metadata": {"app": "shop"}})
    assert bound.status == 200 and bound.body["rollout"] == "shop:r2"
    unproven = served.call("POST", "/v1/flagger/rollback", {**hook, "checksum": "bbbb", "metadata": {"app": "shop"}})
    assert unproven.status == 404 and unproven.error == (
        "no running rollout of app 'shop': 'shop:r2' ended (decided: rollback (rollback_metric), verdict #9); "
        "give metadata.release to be answered for the release it judged")


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_refusals(hook):
    b, _ = backend(rollout(), rollout("idle:r2", ended_at=NOW - 1))
    served = api(b)
    path = f"/v1/flagger/{hook}"
    which = served.call("POST", path, {"name": "shop-web", "namespace": "prod", "phase": "Progressing"})
    assert which.status == 400 and which.error == ("which rollout? give metadata.app and metadata.release (or "
                                                   "metadata.rollout) in the webhook, or ?rollout=ID (or ?app=APP)")
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
    assert idle.status == 404 and idle.error == ("no running rollout of app 'idle': 'idle:r2' ended (by a person); "
                                                 "give metadata.release to be answered for the release it judged")
    nothing = served.call("POST", path, {"metadata": {"app": "never"}})
    assert nothing.status == 404 and nothing.error == "no running rollout of app 'never'"
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


# -- which release ------------------------------------------------------------------------------


def test_metadata_release_picks_the_rollout_of_the_release_flagger_deploys():
    """Two running rollouts of one app (a stale one never ended): naming the release answers
    for that release's alone, and a release without a rollout gets no answer at all."""
    b, _ = backend(rollout("shop:r2"), rollout("shop:r3"),
                   latest={"shop:r2": verdict("shop:r2", "rollback"), "shop:r3": verdict("shop:r3", "promote")})
    served = api(b)
    r3 = served.call("POST", "/v1/flagger/confirm-promotion", {"metadata": {"app": "shop", "release": "r3"}})
    assert r3.status == 200 and r3.body["rollout"] == "shop:r3" and r3.body["release"] == "r3"
    assert served.call("POST", "/v1/flagger/rollback", {"metadata": {"app": "shop", "release": "r3"}}).status == 409
    r4 = served.call("POST", "/v1/flagger/rollback", {"metadata": {"app": "shop", "release": "r4"}})
    assert r4.status == 404 and r4.error == ("no running rollout of app 'shop' for release 'r4': start it "
                                             "(rumgate rollout start, or metadata.baseline on the rollout hook)")
    # An id that names another release than metadata.release: no answer from it.
    other = served.call("POST", "/v1/flagger/rollback", {"metadata": {"rollout": "shop:r2", "release": "r3"}})
    assert other.status == 409 and other.error == "rollout 'shop:r2' judges release 'r2', not 'r3' (metadata.release)"
    app = served.call("POST", "/v1/flagger/rollback", {"metadata": {"rollout": "shop:r2", "app": "cart"}})
    assert app.status == 409 and app.error == "rollout 'shop:r2' judges app 'shop', not 'cart' (metadata.app)"


@pytest.mark.parametrize("hook", HOOKS)
def test_a_rollout_answers_one_revision_only(hook):
    """The first checksum a rollout is asked about while Flagger analyses binds it."""
    b, _ = backend(rollout("shop:r2"), latest={"shop:r2": verdict("shop:r2", "rollback" if hook == "rollback"
                                                                   else "promote")})
    served = api(b)
    webhook = {"name": "shop-web", "namespace": "prod", "phase": "Progressing", "checksum": "aaaa",
               "metadata": {"app": "shop", "release": "r2"}}
    assert served.call("POST", f"/v1/flagger/{hook}", webhook).status == 200
    assert served.call("POST", f"/v1/flagger/{hook}", {**webhook, "phase": "WaitingPromotion"}).status == 200
    new = served.call("POST", f"/v1/flagger/{hook}", {**webhook, "checksum": "bbbb"})
    assert new.status == 409 and new.error.startswith("checksum 'bbbb' is not the revision rollout 'shop:r2' judges "
                                                      "('aaaa', the first it was asked about)")
    another = served.call("POST", f"/v1/flagger/{hook}", {**webhook, "namespace": "staging"})
    assert another.status == 409 and another.error == (
        "rollout 'shop:r2' judges the revision of canary 'prod/shop-web', not 'staging/shop-web'")
    for phase in ("Waiting", "Initialized", "Succeeded"):
        early = served.call("POST", f"/v1/flagger/{hook}", {**webhook, "phase": phase})
        assert early.status == 409 and early.error.startswith(f"phase '{phase}': Flagger is not analysing"), phase
    assert served.call("POST", f"/v1/flagger/{hook}", {**webhook, "checksum": "aaaa"}).status == 200


def test_the_revision_binding_is_on_record_for_every_worker_and_a_restarted_one():
    """The binding is published with the rollout: a second worker (or the same one restarted),
    built from the records, refuses a new checksum it was never asked about."""
    b, rec = backend(rollout("shop:r2"), latest={"shop:r2": verdict("shop:r2", "promote")})
    webhook = {"name": "shop-web", "namespace": "prod", "phase": "Progressing", "checksum": "aaaa",
               "metadata": {"app": "shop", "release": "r2"}}
    assert api(b).call("POST", "/v1/flagger/confirm-promotion", webhook).status == 200
    (bound,) = rec.rollouts
    assert bound.revision == "prod/shop-web@aaaa" and Rollout.from_dict(bound.to_dict()) == bound
    other, _ = backend(bound, latest={"shop:r2": verdict("shop:r2", "promote")})
    config_change = api(other).call("POST", "/v1/flagger/confirm-promotion", {**webhook, "checksum": "bbbb"})
    assert config_change.status == 409 and "('aaaa', the first it was asked about)" in config_change.error
    assert api(other).call("POST", "/v1/flagger/confirm-promotion", webhook).status == 200


def test_an_anonymous_caller_on_a_read_open_worker_binds_no_revision():
    b, rec = backend(rollout("shop:r2"), latest={"shop:r2": verdict("shop:r2", "promote")})
    webhook = {"name": "x", "namespace": "y", "phase": "Progressing", "checksum": "evil",
               "metadata": {"app": "shop", "release": "r2"}}
    assert api(b, read_open=True).call("POST", "/v1/flagger/confirm-promotion", webhook, headers={}).status == 200
    assert rec.rollouts == [] and b.rollouts["shop:r2"].revision is None
    real = {**webhook, "name": "shop-web", "namespace": "prod", "checksum": "aaaa"}
    assert api(b).call("POST", "/v1/flagger/confirm-promotion", real).status == 200  # Flagger's binds
    assert b.rollouts["shop:r2"].revision == "prod/shop-web@aaaa"


def test_a_payload_that_is_not_flaggers_is_a_400():
    served = api(backend(rollout("shop:r2"))[0])
    sends = "Flagger sends the Canary's name and namespace, its phase and an alphanumeric checksum"
    for body, message in (({"checksum": 7, "metadata": {"rollout": "shop:r2"}},
                           f"checksum: must be a string, got int ({sends})"),
                          ({"name": "x" * 300, "metadata": {"rollout": "shop:r2"}},
                           f"name: 300 characters, at most 253 ({sends})"),
                          ({"phase": "Progressing\nforged", "metadata": {"rollout": "shop:r2"}},
                           "phase: U+000A (at 11) is not allowed: use letters, digits and . _ : / @ + - "
                           f"(starting with a letter or digit) ({sends})"),
                          ({"metadata": {"app": "shop", "release": "r 2"}}, "metadata.release: ' ' (at 1) is not "
                           "allowed: use letters, digits and . _ : / @ + - (starting with a letter or digit) "
                           "(in a query string + means a space: write it %2B)"),
                          ({"metadata": {"app": "shop", "release": "r2", "baseline": 1}},
                           "metadata.baseline: must be a non-empty string")):
        answer = served.call("POST", "/v1/flagger/rollout", body)
        assert answer.status == 400 and answer.error == message, body


# -- holds --------------------------------------------------------------------------------------


def test_hold_of_reads_the_field_and_falls_back_on_the_first_reason_code():
    assert hold_of({"verdict": "hold", "hold": "final", "reason_codes": ["srm"]}) == "final"
    assert hold_of({"verdict": "hold", "hold": "transient", "reason_codes": ["deadline"]}) == "transient"
    assert hold_of({"verdict": "hold", "reason_codes": ["deadline"]}) == "final"
    assert hold_of({"verdict": "hold", "reason_codes": ["override_hold", "worse"]}) == "final"
    assert hold_of({"verdict": "hold", "hold": None, "reason_codes": ["srm", "deadline"]}) == "transient"
    assert hold_of({"verdict": "hold"}) == "transient"
    assert hold_of({"verdict": "hold", "hold": "someday", "reason_codes": ["deadline"]}) == "final"
    assert hold_of({"verdict": "hold", "reasons": ["inconclusive after 120 min: a person must decide"]}) == "final"
    assert hold_of({"verdict": "promote", "hold": "final"}) is None
    assert hold_of({"verdict": "continue"}) is None


@pytest.mark.parametrize("hold, expected", [
    ("final", {"confirm-promotion": 409, "rollback": 409, "rollout": 200, "confirm-traffic-increase": 409}),
    ("transient", {"confirm-promotion": 409, "rollback": 409, "rollout": 200, "confirm-traffic-increase": 200}),
])
def test_a_final_hold_refuses_more_traffic_and_no_hold_counts_as_a_failed_check(hold, expected):
    event = {**verdict("shop:r2", "hold"), "hold": hold, "reason_codes": ["deadline" if hold == "final" else "srm"]}
    served = api(backend(rollout("shop:r2"), latest={"shop:r2": event})[0])
    for hook, status in expected.items():
        answer = served.call("POST", f"/v1/flagger/{hook}", {"metadata": {"rollout": "shop:r2"}})
        assert answer.status == status and answer.body["hold"] == hold, (hook, answer)


# -- registration -------------------------------------------------------------------------------

REGISTER = {"name": "shop-web", "namespace": "prod", "phase": "Progressing", "checksum": "aaaa",
            "metadata": {"app": "shop", "release": "r3", "baseline": "r2"}}


def test_the_rollout_hook_registers_the_release_once():
    b, rec = backend()
    served = api(b)
    first = served.call("POST", "/v1/flagger/rollout", REGISTER)
    assert first.status == 200 and first.body["rollout"] == "shop:r3" and first.body["verdict"] == "continue"
    again = served.call("POST", "/v1/flagger/rollout", REGISTER)
    assert again.status == 200 and again.body["rollout"] == "shop:r3"
    [started] = rec.rollouts
    assert (started.id, started.app, started.canary, started.baseline, started.started_at) == (
        "shop:r3", "shop", "r3", "r2", NOW)
    assert started.expected_share is None and started.ended_at is None
    assert b.rollouts["shop:r3"] == started
    # The other hooks never register: they answer for what exists.
    b2, rec2 = backend()
    for hook in ("confirm-promotion", "rollback", "confirm-traffic-increase"):
        assert api(b2).call("POST", f"/v1/flagger/{hook}", REGISTER).status == 404, hook
    assert rec2.rollouts == []


def test_a_day_of_flagger_deploys_leaves_one_running_rollout():
    """Each release's rollout hook starts its rollout and ends the one before, decided or
    not: after 24 deploys of an app, only the last runs (another app's is left alone)."""
    b, rec = backend(rollout("cart:c1"))
    served = api(b)
    for i in range(1, 25):
        hook = {**REGISTER, "checksum": f"c{i}", "metadata": {"app": "shop", "release": f"r{i + 1}", "baseline": f"r{i}"}}
        assert served.call("POST", "/v1/flagger/rollout", hook).status == 200
    running = sorted(r.id for r in b.rollouts.values() if r.ended_at is None)
    assert running == ["cart:c1", "shop:r25"]
    assert {r.end_reason for r in b.rollouts.values() if r.app == "shop" and r.ended_at} == {
        f"superseded by shop:r{i}" for i in range(3, 26)}


def test_two_registrations_at_once_publish_one_rollout():
    b, rec = backend()
    release = asyncio.Event()
    publish = b.publish_rollout

    async def slow_publish(r):
        await release.wait()
        await publish(r)

    b.publish_rollout = slow_publish

    async def go():
        async with TestClient(TestServer(api(b).app())) as client:
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            calls = [asyncio.create_task(client.post("/v1/flagger/rollout", data=orjson.dumps(REGISTER),
                                                     headers=headers)) for _ in range(2)]
            await asyncio.sleep(0.2)
            release.set()
            return [(r.status, await r.json()) for r in await asyncio.gather(*calls)]

    answers = asyncio.run(go())
    assert [s for s, _ in answers] == [200, 200] and {a["rollout"] for _, a in answers} == {"shop:r3"}
    assert [r.id for r in rec.rollouts] == ["shop:r3"]


def test_registration_refusals():
    ended = rollout("shop:r3", ended_at=NOW - 1)
    b, rec = backend(ended)
    gone = api(b).call("POST", "/v1/flagger/rollout", REGISTER)
    assert gone.status == 409 and gone.error == ("rollout 'shop:r3' has ended and ids are never reused: release 'r3' "
                                                 "was judged before (a config-only change needs a release of its own)")
    b, rec = backend(rollout("shop:r3"))  # started by CI against r1
    other = api(b).call("POST", "/v1/flagger/rollout", REGISTER)
    assert other.status == 409 and other.error == ("rollout 'shop:r3' is running against baseline 'r1', "
                                                   "not 'r2' (metadata.baseline)")
    b, rec = backend()
    same = api(b).call("POST", "/v1/flagger/rollout", {**REGISTER, "metadata": {"app": "shop", "release": "r2",
                                                                                   "baseline": "r2"}})
    assert same.status == 409 and same.error.startswith("metadata.release and metadata.baseline are both 'r2'")
    early = api(b).call("POST", "/v1/flagger/rollout", {**REGISTER, "phase": "Initialized"})
    assert early.status == 409 and early.error.startswith("phase 'Initialized'")
    # A read-open worker serves the hooks' reads without a token, but registers nothing without one.
    anonymous = api(b, read_open=True).call("POST", "/v1/flagger/rollout", REGISTER, headers={})
    assert anonymous.status == 403 and anonymous.error.startswith("registering a rollout needs a token")
    assert rec.rollouts == []
    by_token = api(b, read_open=True).call("POST", "/v1/flagger/rollout",
                                           {**REGISTER, "metadata": {**REGISTER["metadata"], "token": TOKEN}},
                                           headers={})
    assert by_token.status == 200 and [r.id for r in rec.rollouts] == ["shop:r3"]


def test_a_release_ci_started_under_another_id_is_not_registered_again():
    b, rec = backend(Rollout("ci-42", "shop", "r3", "r2", NOW - 1, DEFAULT_POLICY))
    answer = api(b).call("POST", "/v1/flagger/rollout", REGISTER)
    assert answer.status == 200 and answer.body["rollout"] == "ci-42"
    assert [(r.id, r.revision) for r in rec.rollouts] == [("ci-42", "prod/shop-web@aaaa")]  # bound, not started


# -- the token in the body, the hook token --------------------------------------------------------


@pytest.mark.parametrize("hook", HOOKS)
def test_the_token_in_metadata_and_the_hook_token(hook):
    b, _ = backend(rollout("shop:r2"), latest={"shop:r2": verdict("shop:r2", "promote")})
    served = HookServed(b)
    path = f"/v1/flagger/{hook}"
    for token in (TOKEN, HOOK_TOKEN):
        by_body = served.call("POST", path, {"metadata": {"rollout": "shop:r2", "token": token}}, headers={})
        assert by_body.body["rollout"] == "shop:r2", token
        assert served.call("POST", f"{path}?token={token}", {"metadata": {"rollout": "shop:r2"}},
                           headers={}).body["rollout"] == "shop:r2"
        assert served.call("POST", path, {"metadata": {"rollout": "shop:r2"}},
                           headers={"Authorization": f"Bearer {token}"}).body["rollout"] == "shop:r2"
    wrong = served.call("POST", path, {"metadata": {"rollout": "shop:r2", "token": "guess-1234"}}, headers={})
    assert wrong.status == 403 and wrong.error == "wrong token (metadata.token)"
    for answer in (wrong, served.call("POST", path + "?token=guess-1234", {}, headers={})):
        assert "guess-1234" not in str(answer.body) and TOKEN not in str(answer.body)
        assert HOOK_TOKEN not in str(answer.body)
    not_json = served.call("POST", path, raw=b'{"metadata": {"token": "', headers={})
    assert not_json.status == 401 and "missing Authorization" in not_json.error
    # The hook token opens the hooks and nothing else.
    for method, path_ in (("GET", "/v1/rollouts"), ("GET", "/v1/rollouts/shop:r2/verdict"),
                          ("POST", "/v1/rollouts/shop:r2/end")):
        refused = served.call(method, path_, headers={"Authorization": f"Bearer {HOOK_TOKEN}"})
        assert refused.status == 403 and refused.error == "wrong token", path_
    # A worker with the hook token alone serves the hooks with it.
    hooks_only = HookServed(b, token="")
    assert hooks_only.call("POST", f"{path}?token={HOOK_TOKEN}", {"metadata": {"rollout": "shop:r2"}},
                           headers={}).body["verdict"] == "promote"
    assert hooks_only.call("POST", f"{path}?token={TOKEN}", {}, headers={}).status == 403
