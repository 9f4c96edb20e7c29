"""Strict input on the control plane: each reported case, against the API (over aiohttp's
test server, tests/http/serve.py), the control-topic follower and the CLI.

A 5,000-deep or tagged policy is a 400 with its place, never a 500; an id with a newline,
NUL, a right-to-left override, ``~dry-run:`` or 200 KB is refused, and every id accepted can
be ended through a URL; dry-run policies are at most 8, of distinct names; Flagger's hooks
check the token before the body and call a wrong ``?token=`` wrong; ``?app=`` never guesses
between running rollouts; the OpenAPI schema and the API agree; 405s carry ``Allow``; a
forged control record is skipped and logged on one line. Names that are part of these
checks are imported inside the tests that use them, so each test stands or falls alone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from types import SimpleNamespace
from urllib.parse import quote

import orjson
import pytest

from detectors.override import Override
from detectors.policy import DEFAULT_POLICY
from detectors.rollout import Rollout
from streams.http.openapi import OPENAPI
from streams.live.control import apply_control_record
from tests.http.serve import NOW, TOKEN, api, backend, rollout, verdict
from tests.live.test_agents import runtime

START = {"app": "shop-web", "canary": "r2", "baseline": "r1"}


def start(body: dict, served=None):
    """POST /v1/rollouts with the token; (answer, what was published, the backend's rollouts)."""
    b, rec = backend()
    answer = (served or api(b)).call("POST", "/v1/rollouts", body)
    return answer, rec.rollouts, b.rollouts


# -- policies ---------------------------------------------------------------------------------

DEEP = 5000
BAD_POLICIES = {
    "5,000-deep sequence": ("name: deep\nmetrics: " + "[" * DEEP + "]" * DEEP + "\n",
                            "policy:2:17: policy: nested 9 deep, at most 8"),
    "5,000-deep document": ("[" * DEEP + "]" * DEEP, "policy:1:9: policy: nested 9 deep, at most 8"),
    "python name tag": ("name: !!python/name:os.system x\n",
                        "policy:1:7: tag !!python/name:os.system: not allowed in a policy"),
    "python object tag": ("name: x\nalpha: !!python/object/apply:os.system ['id']\n",
                          "policy:2:8: tag !!python/object/apply:os.system: not allowed in a policy"),
    "local tag": ("name: x\nalpha: !secret 0.1\n", "policy:2:8: tag !secret: not allowed"),
    "int tag on text": ("name: x\nmin_baseline_for_threshold: !!int many\n",
                        "policy:2:29: min_baseline_for_threshold: not a valid value"),
    "a date that is none": ("name: x\nalpha: 2026-13-45\n", "policy:2:8: alpha: not a valid value"),
    "5,000 digits": ("name: x\nmin_baseline_for_threshold: " + "9" * 5000 + "\n",
                     "policy:2:29: min_baseline_for_threshold: not a valid value"),
    "100 KB": ("name: big\n" + "# padding\n" * 10_000, "policy:1:1: policy: 100010 characters, at most 32768"),
}


@pytest.mark.parametrize("case", BAD_POLICIES)
def test_a_hostile_policy_is_a_400_with_its_place_never_a_500(case):
    text, message = BAD_POLICIES[case]
    for body in ({**START, "policy": text}, {**START, "dry_run_policies": [text]}):
        answer, published, held = start(body)
        where = "policy" if "policy" in body else "dry_run_policies[0]"
        assert answer.status == 400, (case, answer.status, answer.body)
        assert answer.error.startswith("policy refused: " + message.replace("policy:", f"{where}:", 1)), answer.error
        assert published == [] and held == {}


# -- ids and names ----------------------------------------------------------------------------

BAD_IDS = {
    "newline (a forged log line)": "shop:r2\n2026-11-23 INFO rollout shop:r2 promoted",
    "NUL": "shop:r2\x00",
    "right-to-left override": "shop:\u202e2r",
    "space": "shop r2",
    "dry-run key": "shop-web:r2~dry-run:shadow",
    "10 KB": "x" * 10_000,
    "200 KB": "x" * 200_000,
    "129 characters": "x" * 129,
    "leading dot": ".hidden",
}


@pytest.mark.parametrize("case", BAD_IDS)
def test_an_unsafe_rollout_id_is_refused_and_not_repeated(case):
    rid = BAD_IDS[case]
    answer, published, held = start({**START, "id": rid})
    assert answer.status == 400 and answer.error.startswith("id: "), (case, answer.status)
    # The message names the refused character by code point and never repeats a long id.
    assert len(answer.error) < 200 and not any(ch in answer.error for ch in "\n\x00\u202e")
    assert published == [] and held == {}


@pytest.mark.parametrize("field", ["app", "canary", "baseline"])
@pytest.mark.parametrize("value", ["r2\nforged", "r\u202e2", "r2~dry-run:x", "r" * 64])
def test_an_unsafe_app_or_release_name_is_refused(field, value):
    answer, published, _ = start({**START, field: value})
    assert answer.status == 400 and answer.error.startswith(f"{field}: "), (field, value, answer.body)
    assert published == []


LEGIT_IDS = ["shop-web:2026.11.23-abc", "shop-web:1.2.3+build.5", "team/shop@eu:r2", "9f2c", "a" * 128]


def test_every_id_the_api_accepts_can_be_addressed_and_ended():
    """A URL carries any id the API accepts (``/`` and ``+`` percent-encoded), so every
    rollout started can be read and ended; a 10 KB id does not fit in a request line, so it
    must not be accepted, and the ids CI and the docs use still are."""
    for rid in [*LEGIT_IDS, "b" * 10_000, "c" * 129]:
        b, rec = backend()
        served = api(b)
        started = served.call("POST", "/v1/rollouts", {**START, "id": rid})
        if rid not in LEGIT_IDS:
            assert started.status == 400 and rec.rollouts == [], (rid[:20], started.status)
            continue
        assert started.status == 201, (rid, started.body)
        path = "/v1/rollouts/" + quote(rid, safe="")
        assert served.call("GET", path + "/verdict").body["rollout"] == rid
        ended = served.call("POST", path + "/end")
        assert ended.status == 200 and ended.body["id"] == rid
        assert [r.id for r in rec.rollouts] == [rid, rid]


def test_dry_run_policies_are_capped_and_distinct():
    many = [f"name: p{i}\n" for i in range(5000)]
    answer, published, _ = start({**START, "dry_run_policies": many})
    assert answer.status == 400 and answer.error == "dry_run_policies: 5000 given, at most 8"
    assert start({**START, "dry_run_policies": many[:9]})[0].error == "dry_run_policies: 9 given, at most 8"
    # Two of one name would publish under one key, ID~dry-run:NAME.
    twins, published, _ = start({**START, "dry_run_policies": ["name: shadow\n", "name: shadow\nalpha: 0.01\n"]})
    assert twins.status == 400 and twins.error.startswith("dry_run_policies[1].name: 'shadow' is the name of another")
    assert published == []
    # A policy named with the id alphabet's reserved ~ cannot make a key either.
    tilde = start({**START, "dry_run_policies": ["name: a~b\n"]})[0]
    assert tilde.status == 400 and "name: '~' (at 1) is not allowed" in tilde.error
    eight, published, _ = start({**START, "dry_run_policies": many[:8]})
    assert eight.status == 201 and len(published[0].dry_run_policies) == 8


# -- Flagger's hooks ------------------------------------------------------------------------------

HOOKS = ("confirm-promotion", "rollback", "rollout")


@pytest.mark.parametrize("hook", HOOKS)
def test_a_hook_checks_the_token_before_the_body_and_calls_a_wrong_one_wrong(hook):
    b, _ = backend(rollout("shop:r2"), latest={"shop:r2": verdict("shop:r2", "promote")})
    served = api(b)
    path = f"/v1/flagger/{hook}"
    unread = served.call("POST", path, raw=b"{not json", headers={})
    assert unread.status == 401 and "missing Authorization" in unread.error
    wrong = served.call("POST", path + "?token=guess-1234", {"metadata": {"rollout": "shop:r2"}}, headers={})
    assert wrong.status == 403 and wrong.error == "wrong token (?token=)"
    assert "guess-1234" not in str(wrong.body) and TOKEN not in str(wrong.body)
    right = served.call("POST", path + f"?token={TOKEN}", {"metadata": {"rollout": "shop:r2"}}, headers={})
    assert right.body["rollout"] == "shop:r2" and TOKEN not in str(right.body)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_hook_naming_an_app_with_several_running_rollouts_refuses_to_guess(hook):
    """The real release regressed (rollback); a second rollout of the app, started "later"
    by whoever holds the token, says promote. The hook must not answer for either."""
    real = rollout("shop:r2", started_at=NOW - 600_000)
    other = rollout("shop:r9", started_at=NOW + 86_400_000)
    b, _ = backend(real, other, rollout("shop:r1", ended_at=NOW - 1),
                   latest={"shop:r2": verdict("shop:r2", "rollback"), "shop:r9": verdict("shop:r9", "promote")})
    served = api(b)
    for path, body in ((f"/v1/flagger/{hook}", {"metadata": {"app": "shop"}}), (f"/v1/flagger/{hook}?app=shop", {})):
        answer = served.call("POST", path, body)
        assert answer.status == 409, (path, answer.body)
        assert answer.error.startswith("app 'shop' has 2 running rollouts (shop:r2, shop:r9)")
    by_id = served.call("POST", f"/v1/flagger/{hook}?rollout=shop:r2", {"metadata": {"app": "shop"}})
    assert by_id.body["rollout"] == "shop:r2" and by_id.body["verdict"] == "rollback"


@pytest.mark.parametrize("value", ["shop\nforged", "x" * 200])
def test_a_hook_refuses_an_unsafe_rollout_or_app(value):
    served = api(backend(rollout("shop:r2"))[0])
    for meta in ({"rollout": value}, {"app": value}):
        answer = served.call("POST", "/v1/flagger/rollback", {"metadata": meta})
        [name] = meta
        assert answer.status == 400 and answer.error.startswith(f"metadata.{name}: "), answer.body
        assert "\n" not in answer.error and len(answer.error) < 200


# -- HTTP and the description -----------------------------------------------------------------------


def test_a_405_says_which_methods_the_route_has():
    served = api(backend(rollout())[0])
    for method, path, allowed in (("DELETE", "/v1/rollouts", {"GET", "POST"}),
                                  ("GET", "/v1/flagger/rollback", {"POST"}),
                                  ("PUT", "/v1/rollouts/shop:r2/end", {"POST"})):
        answer = served.call(method, path)
        assert answer.status == 405 and answer.error == "Method Not Allowed"
        assert answer.allow == allowed, (method, path, answer.headers)


# Bodies on both sides of every bound the schema states, each checked by schema and by API.
START_EXAMPLES = [
    START, {**START, "id": "shop-web:2026.11.23-abc"}, {**START, "id": "a" * 128},
    {**START, "app": ""}, {**START, "canary": ""}, {**START, "id": ""}, {**START, "id": "a" * 129},
    {**START, "id": "a\nb"}, {**START, "id": "a~b"}, {**START, "app": "a" * 64}, {**START, "app": "a" * 63},
    {**START, "baseline": " r1"}, {**START, "started_at": 0}, {**START, "started_at": 10**13},
    {**START, "started_at": 9_999_999_999_999},
    {**START, "dry_run_policies": [f"name: p{i}\n" for i in range(8)]},
    {**START, "dry_run_policies": [f"name: p{i}\n" for i in range(9)]},
    {**START, "dry_run_policies": [""]}, {**START, "policy": "name: x\n" + "#" * 40_000},
    {**START, "policy": "name: strict\n"}, {**START, "expected_share": 1},
]
OVERRIDE_EXAMPLES = [
    {"action": "hold", "actor": "ana", "reason": "launch"}, {"action": "hold", "actor": "", "reason": "launch"},
    {"action": "hold", "actor": "ana", "reason": "  "}, {"action": "hold", "actor": "ana", "reason": "x", "ticket": ""},
    {"action": "hold", "actor": "a" * 1001, "reason": "x"}, {"action": "hold", "actor": "ana", "reason": "x", "at": 0},
    {"action": "hold", "actor": "ana", "reason": "x", "ttl_s": 366 * 86_400 + 1},
]
HOOK_EXAMPLES = [{"metadata": {"rollout": "shop:r2"}}, {"metadata": {"rollout": ""}}, {"metadata": {"app": ""}},
                 {"metadata": {"rollout": "shop:r2\n"}}, {"metadata": {"app": "shop~x"}}]


def _schema_valid(name: str, body) -> bool:
    jsonschema_rs = pytest.importorskip("jsonschema_rs", reason="comes with schemathesis (dev extras)")
    return jsonschema_rs.validator_for(OPENAPI["components"]["schemas"][name]).is_valid(body)


def test_the_openapi_schemas_and_the_api_agree():
    """Each example is valid by the schema exactly when the API takes it."""
    disagreements = []
    for name, path, examples, taken in (("RolloutStart", "/v1/rollouts", START_EXAMPLES, {201}),
                                        ("Override", "/v1/rollouts/shop:r2/overrides", OVERRIDE_EXAMPLES, {201}),
                                        ("FlaggerWebhook", "/v1/flagger/rollout", HOOK_EXAMPLES, {200, 409})):
        for body in examples:
            answer = api(backend(rollout("shop:r2"))[0]).call("POST", path, body)
            if _schema_valid(name, body) != (answer.status in taken):
                disagreements.append((name, orjson.dumps(body)[:80], answer.status, answer.body))
    assert disagreements == []


# -- the control topics ------------------------------------------------------------------------------


def _record(value, key: bytes | None = None, offset: int = 0):
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return SimpleNamespace(key=key, value=raw, offset=offset)


GOOD = Rollout("shop-web:r2", "shop-web", "r2", "r1", NOW, DEFAULT_POLICY)
FORGED_RECORDS = {
    "newline id": {**GOOD.to_dict(), "id": "shop-web:r2\nWARNING rollout shop-web:r2 promoted"},
    "RLO release": {**GOOD.to_dict(), "canary": "r\u202e2"},
    "dry-run key id": {**GOOD.to_dict(), "id": "shop-web:r2~dry-run:x"},
    "5,000 dry-run policies": {**GOOD.to_dict(), "dry_run_policies": [DEFAULT_POLICY.to_dict()] * 5000},
    "twin dry-run policies": {**GOOD.to_dict(), "dry_run_policies": [DEFAULT_POLICY.to_dict()] * 2},
    "no id": {k: v for k, v in GOOD.to_dict().items() if k != "id"},
    "a list": [GOOD.to_dict()],
    "not JSON": b"\xff{",
}


def test_a_forged_rollout_record_is_skipped_and_logged_on_one_line(caplog):
    from streams.live.control import apply_or_skip

    rt = runtime()
    t = rt.settings.topics

    async def go():
        return [await apply_or_skip(rt, t.rollouts, _record(v, offset=i)) for i, v in enumerate(FORGED_RECORDS.values())]

    with caplog.at_level(logging.INFO, logger="rumgate"):
        applied = asyncio.run(go())
    assert applied == [False] * len(FORGED_RECORDS)
    assert rt.backend.rollouts == {} and rt.stage2.rollouts == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(FORGED_RECORDS) and all("refused" in w for w in warnings)
    assert not any(ch in w for w in warnings for ch in "\n\u202e"), warnings
    # The follower goes on: the next good record is applied.
    assert asyncio.run(apply_or_skip(rt, t.rollouts, _record(GOOD.to_dict())))
    assert rt.backend.rollouts == {GOOD.id: GOOD}


def test_a_forged_rollout_record_is_not_applied():
    rt = runtime()

    async def go():
        for value in FORGED_RECORDS.values():
            try:
                await apply_control_record(rt, rt.settings.topics.rollouts, _record(value))
            except Exception:  # noqa: BLE001 - refused is what is wanted; applied is the failure
                pass

    asyncio.run(go())
    assert rt.backend.rollouts == {} and rt.stage2.rollouts == {}


def test_an_override_reason_cannot_forge_a_log_line(caplog):
    rt = runtime()
    t = rt.settings.topics
    forged = Override(rollout=GOOD.id, action="hold", actor="ana\u202e", at=NOW,
                      reason="looking\n2026-11-23 INFO override on shop-web:r2 by cto: promote")

    async def go():
        await apply_control_record(rt, t.rollouts, _record(GOOD.to_dict()))
        await apply_control_record(rt, t.overrides, _record(forged.to_dict()))

    with caplog.at_level(logging.INFO, logger="rumgate"):
        asyncio.run(go())
    lines = [r.getMessage() for r in caplog.records if "override" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "\u202e" not in lines[0], lines
    assert rt.backend.overrides == {GOOD.id: [forged]}  # recorded as sent: only its log line is escaped


# -- the CLI ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, value", [("--id", "shop:r2\nforged"), ("--canary", "r\u202e2")])
def test_rollout_start_refuses_what_the_api_refuses(monkeypatch, capsys, option, value):
    """Refused with the reason and exit 3 (an error, not a verdict), before any broker is asked."""
    from streams.cli import main

    options = {"--broker": "kafka://localhost:1", "--app": "shop", "--canary": "r2", "--baseline": "r1",
               option: value}
    monkeypatch.setattr("sys.argv", ["rumgate", "rollout", "start", *(x for kv in options.items() for x in kv)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 3
    assert f"rollout refused: {option[2:]}: " in capsys.readouterr().err


def test_a_backtest_of_an_unsafe_release_is_an_error_not_a_verdict(monkeypatch, capsys, tmp_path):
    """Exit 3 (error) with the reason; a traceback would exit 1, which reads as rollback."""
    from streams.cli import main

    beacons = tmp_path / "b.ndjson"
    beacons.write_text('{"ts": 1763856000123, "app": "shop", "release": "r2", "metrics": {"LCP": 2000}}\n')
    monkeypatch.setattr("sys.argv", ["rumgate", "backtest", str(beacons), "--app", "shop", "--canary", "r2\u202e",
                                     "--baseline", "r1"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 3
    assert "rollout refused: canary: U+202E (at 2) is not allowed" in capsys.readouterr().err


def test_a_refusal_names_a_huge_field_without_sending_it_back():
    huge = "9" * 100_000
    for body, field in (({**START, "expected_share": huge}, "expected_share"), ({**START, "started_at": huge}, "started_at"),
                        ({**START, **{f"x{i}" + "y" * 5000: 1 for i in range(50)}}, "unknown field(s)")):
        answer, published, _ = start(body)
        assert answer.status == 400 and answer.error.startswith(f"{field}: "), answer.error[:80]
        assert len(answer.error) < 400 and published == []


# -- the follower on the real broker ---------------------------------------------------------------

from tests.integration.conftest import TOKEN as WORKER_TOKEN  # noqa: E402
from tests.integration.conftest import broker, pipeline  # noqa: E402, F401 - the real broker's fixtures


def _get(base: str, path: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {WORKER_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_a_worker_skips_forged_rollout_records_on_the_topic_and_goes_on(pipeline):  # noqa: F811
    """Whoever can write to rum.rollouts: the worker applies none of the forged records, logs
    each on one line, and still applies the good record that follows."""
    worker = pipeline.start_worker()
    records = {**FORGED_RECORDS, "5,000 dry-run policies": {**GOOD.to_dict(), "dry_run_policies": (
        [DEFAULT_POLICY.to_dict()] * 9)}}  # 5,000 are larger than a record may be; 9 are over the cap
    forged = [orjson.dumps(v) if not isinstance(v, bytes) else v for v in records.values()]
    for value in forged:
        asyncio.run(pipeline._send(pipeline.topics.rollouts, value, b"forged"))
    pipeline.start_rollout(GOOD)
    worker.wait_for(f"rollout {GOOD.id}: canary r2 vs baseline r1")
    status, listed = _get(worker.http, "/v1/rollouts")
    assert status == 200 and [r["id"] for r in listed["rollouts"]] == [GOOD.id]
    log = worker.output()
    assert log.count(f"{pipeline.topics.rollouts} offset ") == len(forged), log[-3000:]
    assert "\nWARNING rollout shop-web:r2 promoted" not in log and "\u202e" not in log
    assert worker.process.poll() is None


def test_records_written_from_stale_copies_never_lose_an_end_a_revision_or_a_share_change():
    """Workers write rum.rollouts from their own copies: one ends the rollout at its decision
    while another records a ramp step from the copy it had before. Applied in the topic's
    order, the end, the revision and both share changes all stay."""
    rt = runtime()
    ended = GOOD.ended(NOW + 60_000, "decided: rollback (worse), verdict #12")
    bound = replace(GOOD, revision="prod/shop-web@aaaa")
    ramped = GOOD.with_share(0.25, NOW + 30_000)

    async def go():
        for i, r in enumerate((GOOD, ended, bound, ramped)):
            await apply_control_record(rt, rt.settings.topics.rollouts, _record(r.to_dict(), offset=i))

    asyncio.run(go())
    kept = rt.backend.rollouts[GOOD.id]
    assert (kept.ended_at, kept.end_reason) == (ended.ended_at, ended.end_reason)
    assert kept.revision == "prod/shop-web@aaaa" and kept.share_changes == ((NOW + 30_000, 0.25),)
    assert rt.stage2.rollouts[GOOD.id] == kept
