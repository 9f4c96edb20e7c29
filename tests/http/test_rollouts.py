"""The rollout routes, each alone over an in-memory Backend: success and every 4xx with its message."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from detectors.override import Override
from detectors.policy import DEFAULT_POLICY, parse_policy
from streams.http.api import no_verdict
from streams.http.replies import MAX_BODY, BadRequest
from detectors.verdict import Verdict
from streams.http.rollouts import rollout_from_body
from tests.http.serve import AUTHZ, NOW, api, backend, rollout, verdict

POLICY_TEXT = "name: it\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 2m\n"
SHADOW = "name: shadow\nmetrics:\n  - metric: LCP\n"


# -- list and get -----------------------------------------------------------------------------


def test_list_rollouts_sorted_by_id_with_their_latest_verdict():
    b, _ = backend(rollout("b:r2"), rollout("a:r2"), latest={"b:r2": verdict("b:r2", "hold")})
    assert api(b).call("GET", "/v1/rollouts").body["rollouts"] == [
        {"id": "a:r2", "app": "a", "canary": "r2", "baseline": "r1", "started_at": NOW - 60_000, "ended_at": None,
         "end_reason": None, "expected_share": None, "share_changes": [], "revision": None, "policy": {"name": DEFAULT_POLICY.name, "hash": DEFAULT_POLICY.hash, "dry_run": False},
         "dry_run_policies": [], "verdict": None},
        {"id": "b:r2", "app": "b", "canary": "r2", "baseline": "r1", "started_at": NOW - 60_000, "ended_at": None,
         "end_reason": None, "expected_share": None, "share_changes": [], "revision": None, "policy": {"name": DEFAULT_POLICY.name, "hash": DEFAULT_POLICY.hash, "dry_run": False},
         "dry_run_policies": [], "verdict": verdict("b:r2", "hold")},
    ]
    assert api(backend()[0]).call("GET", "/v1/rollouts").body == {"rollouts": []}


def test_get_a_rollout_with_its_dry_run_verdicts_and_overrides():
    shadow = replace(parse_policy(SHADOW), dry_run=True)
    r = rollout("shop:r2", expected_share=0.1, dry_run_policies=(shadow,))
    b, _ = backend(r, latest={"shop:r2~dry-run:shadow": verdict("shop:r2", "rollback")})
    hold = Override("shop:r2", "hold", "ana", "launch", NOW - 1000)
    b.overrides["shop:r2"] = [hold]
    one = api(b).call("GET", "/v1/rollouts/shop:r2")
    assert one.status == 200 and one.content_type.startswith("application/json")
    assert one.body["id"] == "shop:r2" and one.body["expected_share"] == 0.1 and one.body["verdict"] is None
    assert one.body["dry_run_policies"] == ["shadow"]
    assert one.body["dry_run_verdicts"] == {"shadow": verdict("shop:r2", "rollback")}
    assert one.body["overrides"] == [hold.to_dict()]
    unknown = api(b).call("GET", "/v1/rollouts/nope")
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'"


# -- the verdict (Argo Rollouts' web provider) and the history ---------------------------------


@pytest.mark.parametrize("kind", ["continue", "promote", "hold", "rollback"])
def test_the_verdict_endpoint_serves_the_latest_verdict(kind):
    b, _ = backend(rollout(), latest={"shop:r2": verdict("shop:r2", kind, seq=7)})
    answer = api(b).call("GET", "/v1/rollouts/shop:r2/verdict")
    # An event without a hold kind (written before them) is served with the kind of its codes,
    # so that Argo's `result.hold` never meets a missing key.
    hold = "transient" if kind == "hold" else None
    assert answer.status == 200 and answer.body == {**verdict("shop:r2", kind, seq=7), "hold": hold}


@pytest.mark.parametrize(("codes", "stored", "served"), [
    (["deadline"], None, "final"), (["override_hold", "srm"], None, "final"), (["srm"], None, "transient"),
    (["from_the_future"], "final", "final"), (["srm"], "transient", "transient"),
])
def test_the_verdict_endpoint_serves_the_hold_kind(codes, stored, served):
    event = {**verdict("shop:r2", "hold", seq=7), "reasons": ["r"] * len(codes), "reason_codes": codes}
    if stored is not None:
        event["hold"] = stored
    b, _ = backend(rollout(), latest={"shop:r2": event})
    assert api(b).call("GET", "/v1/rollouts/shop:r2/verdict").body == {**event, "hold": served}


def test_the_verdict_endpoint_before_the_first_verdict_and_for_an_unknown_rollout():
    b, _ = backend(rollout())
    first, unknown = api(b).calls([("GET", "/v1/rollouts/shop:r2/verdict", None, AUTHZ, None),
                                   ("GET", "/v1/rollouts/nope/verdict", None, AUTHZ, None)])
    assert first.status == 200 and first.body == {**no_verdict("shop:r2"), "hold": None}
    assert first.body["verdict"] == "continue" and first.body["seq"] == 0
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'"


# -- the verdict bound to the release being deployed (issue 17's stale cases) -------------------

IMAGE = "ghcr.io/acme/shop:r2"


def _full(rid: str, kind: str, seq: int = 7) -> dict:
    """A verdict event as the judge writes it (with codes and kind), for a rollout of app shop."""
    code = {"continue": "collecting", "promote": "proven_not_worse", "hold": "deadline", "rollback": "worse"}[kind]
    app, _, canary = rid.partition(":")
    return {"rollout": rid, "app": app, "canary": canary, "baseline": "r1", "seq": seq, "verdict": kind,
            "hold": "final" if kind == "hold" else None, "severity": "none", "at": NOW - 5000,
            "emitted_at": NOW - 4000, "policy": {"name": "default", "hash": "sha256:00", "dry_run": False},
            "reasons": [f"sample {kind}"], "reason_codes": [code], "overrides": [], "metrics": []}


@pytest.mark.parametrize(("query", "release"), [
    ("image=ghcr.io/acme/shop:r2", {"image": IMAGE, "tag": "r2"}),
    ("image=registry.local:5000/acme/shop:r2@sha256:0123", {"image": "registry.local:5000/acme/shop:r2@sha256:0123",
                                                             "tag": "r2"}),
    ("release=r2", {"release": "r2"}),
])
@pytest.mark.parametrize("kind", ["promote", "rollback", "continue"])
def test_the_release_deployed_is_the_canary_the_verdict_is_served(query, release, kind):
    b, _ = backend(rollout("shop:r2"), latest={"shop:r2": _full("shop:r2", kind)})
    answer = api(b).call("GET", f"/v1/rollouts/shop:r2/verdict?{query}")
    assert answer.status == 200
    assert answer.body == {**_full("shop:r2", kind), "release": {**release, "canary": "r2", "match": True}}


@pytest.mark.parametrize("kind", ["promote", "rollback", "continue", "hold"])
def test_an_annotation_naming_the_previous_release_gets_no_promote_and_no_rollback(kind):
    """The Rollout deploys r2, but its rumgate.io/rollout-id still names shop:r1 (``kubectl argo
    rollouts set image``, or a patch that leaves the annotation out): shop:r1's verdict, promote
    since its own rollout, must not pass r2 at t = 0. A final hold naming both instead."""
    b, _ = backend(rollout("shop:r1"), latest={"shop:r1": _full("shop:r1", kind, seq=240)})
    answer = api(b).call("GET", f"/v1/rollouts/shop:r1/verdict?image={IMAGE}")
    assert answer.status == 200
    body = answer.body
    assert (body["verdict"], body["hold"], body["reason_codes"][0]) == ("hold", "final", "release_mismatch")
    assert body["reasons"][0].startswith(
        "release mismatch: image 'ghcr.io/acme/shop:r2' (tag 'r2') is not the canary 'r1' of rollout 'shop:r1'; "
        "no promote or rollback is given for a release that was not judged")
    assert body["reasons"][1] == f"the verdict of 'shop:r1' for 'r1' is {kind}: sample {kind}"
    assert body["release"] == {"image": IMAGE, "tag": "r2", "canary": "r1", "match": False}
    assert body["judged"] == {"seq": 240, "verdict": kind, "hold": "final" if kind == "hold" else None,
                              "reasons": [f"sample {kind}"]}
    assert body["metrics"] == []  # the evidence is about another release
    # A verdict event like any other: it reads back, a final hold, and ends no automatic phase.
    v = Verdict.from_dict(body)
    assert v.hold == "final" and not v.decided and v.reason_codes[1] == _full("shop:r1", kind)["reason_codes"][0]


@pytest.mark.parametrize(("query", "reason"), [
    ("release=r3", "release 'r3' is not the canary 'r2' of rollout 'shop:r2'"),
    ("image=ghcr.io/acme/shop", "image 'ghcr.io/acme/shop', which has no tag, is not the canary 'r2'"),
    ("image=ghcr.io/acme/shop@sha256:0123", "image 'ghcr.io/acme/shop@sha256:0123', which has no tag,"),
    ("image=ghcr.io/acme/shop:r2-hotfix", "image 'ghcr.io/acme/shop:r2-hotfix' (tag 'r2-hotfix') is not"),
    ("image=ghcr.io/r2/shop:latest", "(tag 'latest') is not the canary 'r2'"),
])
def test_every_other_release_is_a_final_hold_that_says_what_did_not_match(query, reason):
    b, _ = backend(rollout("shop:r2"), latest={"shop:r2": _full("shop:r2", "promote")})
    body = api(b).call("GET", f"/v1/rollouts/shop:r2/verdict?{query}").body
    assert (body["verdict"], body["hold"]) == ("hold", "final")
    assert reason in body["reasons"][0], body["reasons"]


def test_a_mismatch_before_the_first_verdict():
    b, _ = backend(rollout("shop:r1"))
    body = api(b).call("GET", f"/v1/rollouts/shop:r1/verdict?image={IMAGE}").body
    assert (body["verdict"], body["hold"], body["seq"]) == ("hold", "final", 0)
    assert body["reason_codes"] == ["release_mismatch", "no_verdict_yet"]
    assert body["judged"] == {"seq": 0, "verdict": "continue", "hold": None,
                              "reasons": ["no verdict yet: no window of this rollout has been judged"]}


@pytest.mark.parametrize(("query", "message"), [
    (f"image={IMAGE}&release=r2", "give image or release, not both"),
    (f"image={IMAGE}&image={IMAGE}", "image: given 2 times, give it once"),
    ("image=", "image: empty (did the analysis arg resolve?)"),
    ("release=%20", "release: empty"),
    ("image=" + "a" * 513, "image: at most 512 characters without control characters, got 'aaaa"),
    ("release=r2%0A", "release: at most 512 characters without control characters, got 'r2\\n'"),
])
def test_a_release_that_cannot_be_one_is_a_400(query, message):
    b, _ = backend(rollout("shop:r2"), latest={"shop:r2": _full("shop:r2", "promote")})
    answer = api(b).call("GET", f"/v1/rollouts/shop:r2/verdict?{query}")
    assert answer.status == 400 and answer.error.startswith(message), answer.error


def test_the_history_is_read_for_the_rollout():
    b, rec = backend(rollout())
    rec.history["shop:r2"] = [verdict("shop:r2", "continue", 1), verdict("shop:r2", "promote", 2)]
    answer = api(b).call("GET", "/v1/rollouts/shop:r2/verdicts")
    assert answer.status == 200 and answer.body == {"rollout": "shop:r2", "verdicts": rec.history["shop:r2"]}
    assert rec.history_asked == ["shop:r2"]
    unknown = api(b).call("GET", "/v1/rollouts/nope/verdicts")
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'" and rec.history_asked == ["shop:r2"]
    b.history = None  # a backend that keeps no history
    assert api(b).call("GET", "/v1/rollouts/shop:r2/verdicts").body == {"rollout": "shop:r2", "verdicts": []}


# -- start --------------------------------------------------------------------------------------


def test_start_a_rollout():
    b, rec = backend()
    served = api(b)
    started = served.call("POST", "/v1/rollouts", {"app": "cart", "canary": "r2", "baseline": "r1",
                                                   "policy": POLICY_TEXT, "expected_share": 0.1,
                                                   "dry_run_policies": [SHADOW]})
    assert started.status == 201, started
    s = started.body
    assert (s["id"], s["app"], s["canary"], s["baseline"], s["expected_share"]) == ("cart:r2", "cart", "r2", "r1", 0.1)
    assert s["started_at"] == NOW and s["ended_at"] is None and s["verdict"] is None  # the app's clock
    assert s["policy"] == {"name": "it", "hash": parse_policy(POLICY_TEXT).hash, "dry_run": False}
    assert s["dry_run_policies"] == ["shadow"]
    assert [r.id for r in rec.rollouts] == ["cart:r2"] and rec.rollouts[0] == b.rollouts["cart:r2"]
    assert rec.rollouts[0].dry_run_policies[0].dry_run is True
    # A chosen id and started_at.
    chosen = served.call("POST", "/v1/rollouts", {"id": "cart-blue", "app": "cart", "canary": "r3", "baseline": "r2",
                                                  "started_at": 1_000})
    assert chosen.status == 201 and chosen.body["id"] == "cart-blue" and chosen.body["started_at"] == 1_000
    assert chosen.body["policy"]["name"] == DEFAULT_POLICY.name


def test_a_rollout_id_is_never_reused():
    b, rec = backend(rollout("cart:r2"), rollout("cart:r1", ended_at=NOW - 1))
    served = api(b)
    running = served.call("POST", "/v1/rollouts", {"app": "cart", "canary": "r2", "baseline": "r1"})
    assert running.status == 409 and running.error == (
        "rollout 'cart:r2' is already running: choose another id, e.g. APP:RELEASE")
    ended = served.call("POST", "/v1/rollouts", {"app": "cart", "canary": "r1", "baseline": "r0"})
    assert ended.status == 409 and ended.error.startswith("rollout 'cart:r1' was used before")
    assert rec.rollouts == []


REFUSED = {
    "app": ({"canary": "r2", "baseline": "r1"}, "app: required, a non-empty string"),
    "blank canary": ({"app": "c", "canary": " ", "baseline": "r1"}, "canary: required, a non-empty string"),
    "baseline type": ({"app": "c", "canary": "r2", "baseline": 3}, "baseline: required, a non-empty string"),
    "same release": ({"app": "c", "canary": "r1", "baseline": "r1"}, "canary and baseline must be different releases"),
    "policy": ({"app": "c", "canary": "r2", "baseline": "r1", "policy": "name: x\nalpha: 2\n"},
               "policy refused: policy:2:8: alpha: must be in (0, 1), got 2"),
    "dry-run policy": ({"app": "c", "canary": "r2", "baseline": "r1", "dry_run_policies": ["name: x\nalpha: 2\n"]},
                       "policy refused: dry_run_policies[0]"),
    "policy type": ({"app": "c", "canary": "r2", "baseline": "r1", "policy": {"name": "x"}},
                    "policy: must be the policy's YAML text"),
    "share": ({"app": "c", "canary": "r2", "baseline": "r1", "expected_share": 1.5},
              "expected_share: must be a number between 0 and 1, got 1.5"),
    "share type": ({"app": "c", "canary": "r2", "baseline": "r1", "expected_share": "5%"},
                   "expected_share: must be a number between 0 and 1, got '5%'"),
    "share bool": ({"app": "c", "canary": "r2", "baseline": "r1", "expected_share": True}, "expected_share"),
    "started_at": ({"app": "c", "canary": "r2", "baseline": "r1", "started_at": "yesterday"},
                   "started_at: must be epoch milliseconds, got 'yesterday'"),
    "started_at zero": ({"app": "c", "canary": "r2", "baseline": "r1", "started_at": 0}, "started_at"),
    "id": ({"id": " ", "app": "c", "canary": "r2", "baseline": "r1"}, "id: must be a non-empty string"),
    "unknown field": ({"app": "c", "canary": "r2", "baseline": "r1", "colour": "blue"}, "unknown field(s): colour"),
    "not an object": (["app", "c"], "body: must be a JSON object"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_start_refusals(case):
    body, message = REFUSED[case]
    with pytest.raises(BadRequest, match="^" + re.escape(message)):
        rollout_from_body(body, NOW)
    b, rec = backend()
    answer = api(b).call("POST", "/v1/rollouts", body)
    assert answer.status == 400 and message in answer.error, answer
    assert rec.rollouts == [] and b.rollouts == {}


def test_start_refuses_bodies_that_are_not_json_or_too_big():
    b, rec = backend()
    not_json, too_big = api(b).calls([
        ("POST", "/v1/rollouts", None, AUTHZ, b"{app: cart"),
        ("POST", "/v1/rollouts", None, AUTHZ, b" " * (MAX_BODY + 1)),
    ])
    assert not_json.status == 400 and not_json.error.startswith("body: not valid JSON (")
    assert too_big.status == 413 and too_big.error == f"body larger than {MAX_BODY} bytes"
    assert rec.rollouts == []


def test_an_empty_body_is_an_empty_object():
    answer = api(backend()[0]).call("POST", "/v1/rollouts", raw=b"")
    assert answer.status == 400 and answer.error == "app: required, a non-empty string"


# -- end ------------------------------------------------------------------------------------------


def test_end_a_rollout():
    b, rec = backend(rollout())
    served = api(b)
    ended = served.call("POST", "/v1/rollouts/shop:r2/end")
    assert ended.status == 200 and ended.body["ended_at"] == NOW and ended.body["id"] == "shop:r2"
    assert b.rollouts["shop:r2"].ended_at == NOW and [r.ended_at for r in rec.rollouts] == [NOW]
    again = served.call("POST", "/v1/rollouts/shop:r2/end")
    assert again.status == 409 and again.error == "rollout 'shop:r2' has already ended"
    unknown = served.call("POST", "/v1/rollouts/nope/end")
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'"
    assert len(rec.rollouts) == 1


# -- overrides --------------------------------------------------------------------------------------


HOLD = {"action": "hold", "actor": "ana", "reason": "launch", "ticket": "OPS-1", "ttl_s": 600}


def test_add_and_list_overrides():
    b, rec = backend(rollout())
    served = api(b)
    assert served.call("GET", "/v1/rollouts/shop:r2/overrides").body == {"rollout": "shop:r2", "overrides": []}
    added = served.call("POST", "/v1/rollouts/shop:r2/overrides", HOLD)
    assert added.status == 201, added
    o = added.body
    assert (o["rollout"], o["action"], o["actor"], o["reason"], o["ticket"]) == ("shop:r2", "hold", "ana", "launch",
                                                                                 "OPS-1")
    assert o["at"] == NOW and o["expires_at"] == NOW + 600_000
    assert [x.to_dict() for x in rec.overrides] == [o] and [x.to_dict() for x in b.overrides["shop:r2"]] == [o]
    assert served.call("GET", "/v1/rollouts/shop:r2/overrides").body == {"rollout": "shop:r2", "overrides": [o]}
    assert served.call("GET", "/v1/rollouts/shop:r2").body["overrides"] == [o]
    unknown = served.call("GET", "/v1/rollouts/nope/overrides")
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'"


OVERRIDE_REFUSED = {
    "action": ({**HOLD, "action": "ship"}, "override refused: action: must be one of promote, hold, rollback"),
    "actor": ({"action": "hold", "reason": "launch"}, "override refused: actor: required"),
    "reason": ({"action": "hold", "actor": "ana", "reason": ""}, "override refused: reason"),
    "unknown field": ({**HOLD, "colour": "red"}, "override refused: unknown field(s): colour"),
    "expired": ({"action": "hold", "actor": "ana", "reason": "x", "expires_at": 1000}, "expired"),
    "expired, at in the past": ({"action": "hold", "actor": "ana", "reason": "x", "at": 1000, "expires_at": 2000},
                                "override refused: expires_at: already expired"),
    "expires at the clock": ({"action": "hold", "actor": "ana", "reason": "x", "at": NOW - 5, "expires_at": NOW},
                             "override refused: expires_at: already expired"),
    "ttl": ({**HOLD, "ttl_s": -5}, "override refused: ttl_s"),
    "both": ({**HOLD, "expires_at": NOW + 60_000}, "expires_at or ttl_s, not both"),
    "not an object": ([HOLD], "override refused: override: must be a JSON object"),
}


@pytest.mark.parametrize("case", OVERRIDE_REFUSED)
def test_override_refusals(case):
    body, message = OVERRIDE_REFUSED[case]
    b, rec = backend(rollout())
    answer = api(b).call("POST", "/v1/rollouts/shop:r2/overrides", body)
    assert answer.status == 400 and message in answer.error, answer
    assert rec.overrides == [] and b.overrides == {}


def test_override_on_an_unknown_rollout_or_not_json():
    b, rec = backend(rollout())
    unknown = api(b).call("POST", "/v1/rollouts/nope/overrides", HOLD)
    assert unknown.status == 404 and unknown.error == "no rollout 'nope'"
    not_json = api(b).call("POST", "/v1/rollouts/shop:r2/overrides", raw=b"hold please")
    assert not_json.status == 400 and "not valid JSON" in not_json.error
    assert rec.overrides == []


# -- what is not a route ----------------------------------------------------------------------------


def test_unknown_routes_and_methods_are_json_errors():
    served = api(backend()[0])
    missing = served.call("GET", "/v1/nothing-here")
    assert missing.status == 404 and missing.error == "Not Found"
    wrong = served.call("DELETE", "/v1/rollouts")
    assert wrong.status == 405 and wrong.error == "Method Not Allowed"
    assert wrong.allow == {"GET", "POST"}  # RFC 9110: a 405 says which methods the route has


def test_a_handler_that_fails_answers_a_json_500_and_logs_it(caplog):
    """A bug in one handler is a 500 with a JSON error and no traceback sent; the worker logs it."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from streams.http.api import make_api

    async def broken(request):
        raise KeyError("s3cret internals")

    async def go():
        app = make_api(backend()[0])
        app.router.add_get("/v1/broken", broken)
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/v1/broken")
            return resp.status, resp.headers["Content-Type"], await resp.text()

    status, content_type, text = asyncio.run(go())
    assert status == 500 and content_type.startswith("application/json")
    assert text == '{"error":"internal error (logged by the worker)"}'
    assert any("/v1/broken" in r.getMessage() and r.exc_info for r in caplog.records)
