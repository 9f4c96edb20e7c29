"""Flagger v1.44 against the real API: the bytes Flagger's webhook client sends, and a port of
the scheduler's rules that decide what Flagger does with each answer.

Ported from github.com/fluxcd/flagger at v1.44.0 (commit 15bd6ad5):

* ``pkg/controller/webhook.go``: ``CallWebhook`` builds a ``CanaryWebhookPayload`` (name,
  namespace, phase, ``canaryChecksum``, the webhook's metadata) and ``callWebhook`` POSTs its
  ``json.Marshal`` with ``Content-Type: application/json`` through go-retryablehttp (Go's
  net/http underneath); ``r.StatusCode > 202`` is an error whose text is the response body.
* ``pkg/apis/flagger/v1beta1/canary.go``: ``CanaryWebhookPayload``, metadata a
  ``map[string]string`` (``omitempty``).
* ``pkg/controller/scheduler.go``, ``advanceCanary`` (the part after the canary is
  Progressing): the rollback hooks first, in Progressing, Waiting and WaitingPromotion;
  then ``FailedChecks >= threshold`` rolls back; then the pre-rollout hooks at weight 0 and
  iteration 0, else ``runAnalysis`` (the rollout hooks), a failure of either adding a failed
  check; then, unless Promoting, WaitingPromotion or Finalising, the
  confirm-traffic-increase hooks (a failure returns, counting nothing); then ``runCanary``:
  below maxWeight the weight rises by stepWeight, at maxWeight the confirm-promotion hooks
  decide promotion.
* ``pkg/controller/scheduler_hooks.go``: each ``run*Hooks`` (a failed confirm-promotion moves
  the phase to WaitingPromotion; a rollback hook's 2xx is a rollback).

The checksum is constant through one analysis (``syncCanaryStatus`` in
``pkg/canary/status.go`` stores the new spec's hash once, when the analysis starts), so one
simulated analysis keeps one checksum, and a new revision brings another.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from aiohttp.test_utils import TestServer

from streams.http.api import make_api
from streams.http.auth import AUTH
from tests.http.serve import NOW, TOKEN, backend, rollout

CANARY = Path(__file__).resolve().parents[2] / "deploy" / "flagger" / "canary.yaml"
HOOK_TOKEN = "hook-only-token"
APP, RELEASE, BASELINE = "shop-web", "2026.11.23-abc", "2026.11.20-f00"
RID = f"{APP}:{RELEASE}"


def go_json(payload: dict) -> bytes:
    """``json.Marshal`` as Go writes it: struct fields in order, map keys sorted, no spaces,
    ``<``, ``>``, ``&``, U+2028 and U+2029 escaped (encoding/json's HTML-safe default)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode()


def payload(canary: dict, phase: str, checksum: str, metadata: dict | None) -> dict:
    """A ``CanaryWebhookPayload``: its fields in the struct's order, metadata left out when empty."""
    out = {"name": canary["metadata"]["name"], "namespace": canary["metadata"]["namespace"], "phase": phase,
           "checksum": checksum}
    if metadata:
        out["metadata"] = dict(sorted(metadata.items()))
    return out


def go_request(url: str, body: bytes) -> bytes:
    """The request Go's net/http client writes for ``callWebhook``'s POST (HTTP/1.1: Host,
    User-Agent, Content-Length, the request's headers, then the transport's Accept-Encoding)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: Go-http-client/1.1\r\n"
            f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n")
    return head.encode() + body


async def send(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    status_line = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    writer.close()
    return int(status_line.split()[1]), body


@dataclass
class Flagger:
    """One Canary under analysis, advanced tick by tick as ``advanceCanary`` does (see the
    module docstring), its webhooks sent to the API on a loopback port."""

    canary: dict
    checksum: str
    phase: str = "Progressing"
    weight: int = 0
    failed_checks: int = 0
    iterations: int = 0
    events: list[str] = field(default_factory=list)
    answers: list[tuple[str, int, dict]] = field(default_factory=list)  # (hook type, status, body)
    port: int = 0

    @property
    def analysis(self) -> dict:
        return self.canary["spec"]["analysis"]

    def hooks(self, kind: str) -> list[dict]:
        return [w for w in self.analysis["webhooks"] if (w.get("type") or "rollout") == kind]

    async def call(self, hook: dict, phase: str) -> str | None:
        """``CallWebhook``: None on success, else the error Flagger records (the body)."""
        body = go_json(payload(self.canary, phase, self.checksum, hook.get("metadata")))
        url = hook["url"].replace(urlsplit(hook["url"]).netloc, f"127.0.0.1:{self.port}")
        status, answer = await send(self.port, go_request(url, body))
        self.answers.append((hook["type"], status, json.loads(answer or b"null")))
        return None if status <= 202 else answer.decode()

    async def run_hooks(self, kind: str, phase: str) -> bool:
        for hook in self.hooks(kind):
            err = await self.call(hook, phase)
            if err is not None:
                self.events.append(f"{kind} {hook['name']} failed {err}")
                return False
        return True

    async def tick(self) -> None:
        """One tick of ``advanceCanary`` from its rollback check on."""
        name = self.canary["metadata"]["name"]
        if self.phase in ("Progressing", "Waiting", "WaitingPromotion"):
            for hook in self.hooks("rollback"):  # runRollbackHooks
                if await self.call(hook, self.phase) is None:
                    self.events.append(f"Rolling back {name} manual webhook invoked")
                    self.phase, self.weight = "Failed", 0
                    return
        if self.phase in ("Progressing", "WaitingPromotion") and self.failed_checks >= self.analysis["threshold"]:
            self.events.append(f"Rolling back {name} failed checks threshold reached {self.failed_checks}")
            self.phase, self.weight = "Failed", 0
            return
        if self.weight == 0 and self.iterations == 0:
            ok = await self.run_hooks("pre-rollout", "Progressing")
        else:
            ok = await self.run_hooks("rollout", "Progressing")  # runAnalysis; the sample has no metrics
        if not ok:
            self.failed_checks += 1
            return
        if self.analysis["stepWeight"] > 0:
            if self.phase not in ("Promoting", "WaitingPromotion", "Finalising"):
                if not await self.run_hooks("confirm-traffic-increase", "Progressing"):
                    return
            await self.run_canary()

    async def run_canary(self) -> None:
        if self.weight < self.analysis["maxWeight"]:
            self.weight = min(100, self.weight + self.analysis["stepWeight"])
            return
        for hook in self.hooks("confirm-promotion"):  # runConfirmPromotionHooks
            if await self.call(hook, "Progressing") is not None:
                if self.phase != "WaitingPromotion":
                    self.phase = "WaitingPromotion"
                    self.events.append(f"Halt {self.canary['metadata']['name']} waiting for promotion approval")
                else:
                    self.iterations = self.analysis.get("iterations", 0) - 1
                return
        self.phase = "Promoting"

    def answered(self, kind: str) -> list[tuple[int, dict]]:
        return [(s, b) for k, s, b in self.answers if k == kind]


def sample(token: str | None = HOOK_TOKEN, drop: tuple[str, ...] = ()) -> dict:
    """The sample Canary, each webhook's metadata given ``token`` as the deploy-time patch
    does, and the metadata keys in ``drop`` left out."""
    canary = yaml.safe_load(CANARY.read_text())
    for hook in canary["spec"]["analysis"]["webhooks"]:
        meta = {k: v for k, v in hook.get("metadata", {}).items() if k not in drop}
        if token is not None:
            meta["token"] = token
        hook["metadata"] = meta
    return canary


def hold(kind: str = "final", codes: tuple[str, ...] = ("deadline",), with_field: bool = True) -> dict:
    event = {"rollout": RID, "seq": 9, "verdict": "hold", "severity": "none", "reasons": [f"sample {kind} hold"],
             "reason_codes": list(codes)}
    if with_field:
        event["hold"] = kind
    return event


def verdict(kind: str, rid: str = RID, seq: int = 9) -> dict:
    return {"rollout": rid, "seq": seq, "verdict": kind, "severity": "none", "reasons": [f"sample {kind}"],
            "reason_codes": ["proven_not_worse" if kind == "promote" else "worse" if kind == "rollback" else "collecting"]}


class _Serving:
    """The API over ``b`` on a loopback port, the hook token configured beside the API token."""

    def __init__(self, b):
        app = make_api(b, token=TOKEN, now_ms=lambda: NOW)
        app[AUTH] = replace(app[AUTH], hook_token=HOOK_TOKEN)
        self.server = TestServer(app)

    async def __aenter__(self) -> int:
        await self.server.start_server()
        return self.server.port

    async def __aexit__(self, *exc) -> None:
        await self.server.close()


def run(b, flagger: Flagger, ticks: int, between=None) -> Flagger:
    """``ticks`` ticks of ``flagger`` against the API over ``b``; ``between(i, flagger)``
    runs before tick ``i`` (the judge publishing a verdict, an operator acting)."""

    async def go():
        async with _Serving(b) as port:
            flagger.port = port
            for i in range(ticks):
                if between is not None:
                    between(i, flagger)
                if flagger.phase in ("Failed", "Promoting"):
                    break
                await flagger.tick()
        return flagger

    return asyncio.run(go())


def ask(b, canary: dict, kind: str, checksum: str, phase: str = "Progressing") -> tuple[int, dict]:
    """One call of the sample's ``kind`` webhook, as Flagger sends it in ``phase``."""
    f = Flagger(canary, checksum=checksum, phase=phase)

    async def go():
        async with _Serving(b) as port:
            f.port = port
            await f.call(f.hooks(kind)[0], phase)

    asyncio.run(go())
    return f.answers[-1][1], f.answers[-1][2]


# -- the happy paths ----------------------------------------------------------------------------


def test_flagger_registers_the_rollout_and_promotes_on_promote():
    b, rec = backend()

    def judge(i, f):
        if i == 12:
            b.latest[RID] = verdict("promote")

    f = run(b, Flagger(sample(), checksum="6c4c5d7f8b"), 20, judge)
    assert [r.id for r in rec.rollouts] == [RID], "the pre-rollout hook registered it once"
    registered = rec.rollouts[0]
    assert (registered.app, registered.canary, registered.baseline) == (APP, RELEASE, BASELINE)
    assert registered.started_at == NOW and registered.expected_share is None
    assert f.weight == 50 and f.phase == "Promoting" and f.failed_checks == 0
    assert f.answered("confirm-promotion")[-1][0] == 200
    assert all(s == 409 for s, _ in f.answered("confirm-promotion")[:-1])  # waited for promote
    assert all(s != 200 for s, _ in f.answered("rollback"))


def test_flagger_rolls_back_on_rollback_through_the_rollback_hook():
    b, _ = backend()

    def judge(i, f):
        if i == 4:
            b.latest[RID] = verdict("rollback")

    f = run(b, Flagger(sample(), checksum="6c4c5d7f8b"), 10, judge)
    assert f.phase == "Failed" and f.events[-1] == "Rolling back shop-web manual webhook invoked"
    assert f.failed_checks == 0 and f.weight == 0
    status, body = f.answered("rollback")[-1]
    assert status == 200 and body["rollout"] == RID and body["verdict"] == "rollback"


# -- holds --------------------------------------------------------------------------------------


def _final_hold_stops_the_canary(event: dict) -> None:
    b, _ = backend()

    def judge(i, f):
        if i == 3:
            b.latest[RID] = event

    f = run(b, Flagger(sample(), checksum="6c4c5d7f8b"), 15, judge)
    assert f.weight == 15, "three steps before the hold, none after"
    assert f.phase == "Progressing" and f.failed_checks == 0, "a hold is not counted as a failed check"
    assert f.events[-1].startswith("confirm-traffic-increase rumgate-final-hold failed")
    status, body = f.answered("confirm-traffic-increase")[-1]
    assert status == 409 and body["hold"] == "final" and body["reasons"] == event["reasons"]
    assert all(s == 200 for s, _ in f.answered("rollout")), "the rollout hook does not count holds"
    # A person decides: their promote override makes the verdict promote, and the ramp resumes.
    b.latest[RID] = verdict("promote", seq=10)
    f = run(b, f, 20)
    assert f.phase == "Promoting" and f.weight == 50 and f.failed_checks == 0


def test_a_final_hold_stops_the_canary_where_it_is_until_a_person_decides():
    _final_hold_stops_the_canary(hold("final", ("deadline",)))


def test_a_final_hold_without_the_field_is_known_by_its_first_reason_code():
    """Events written before ``hold`` existed: the deadline's and an operator's hold are final."""
    _final_hold_stops_the_canary(hold("final", ("override_hold", "collecting"), with_field=False))
    _final_hold_stops_the_canary(hold("final", ("deadline",), with_field=False))


def test_a_transient_hold_lets_the_ramp_go_on_and_promotion_wait():
    b, _ = backend(latest={RID: hold("transient", ("no_canary",))})
    f = run(b, Flagger(sample(), checksum="6c4c5d7f8b"), 25)
    assert f.weight == 50 and f.phase == "WaitingPromotion" and f.failed_checks == 0
    assert all(s == 409 and body["hold"] == "transient" for s, body in f.answered("confirm-promotion"))
    assert all(s == 200 for s, _ in f.answered("confirm-traffic-increase"))
    # The same event without the field, its code not a final one: transient as well.
    b2, _ = backend(latest={RID: hold("transient", ("srm",), with_field=False)})
    f2 = run(b2, Flagger(sample(), checksum="6c4c5d7f8b"), 25)
    assert f2.weight == 50 and f2.phase == "WaitingPromotion" and f2.failed_checks == 0


# -- stale releases and revisions -----------------------------------------------------------------


def test_stale_a_the_previous_releases_rollback_never_rolls_back_a_release_ci_has_not_registered():
    """CI registers rollouts (the Canary names the release but no baseline), and has not yet
    registered 2026.11.23-abc; the previous release's rollout is still running, its verdict
    rollback. Before, the rollback hook answered 200 from it."""
    previous = rollout(f"{APP}:{BASELINE}", started_at=NOW - 86_400_000)
    b, rec = backend(previous, latest={previous.id: verdict("rollback", rid=previous.id)})
    f = run(b, Flagger(sample(drop=("baseline",)), checksum="6c4c5d7f8b"), 8)
    assert all(s != 200 for s, _ in f.answered("rollback")), f.answered("rollback")
    assert "manual webhook invoked" not in " ".join(f.events)
    assert f.weight == 0, "no traffic for a release rumgate does not judge"
    assert rec.rollouts == []
    status, body = f.answered("pre-rollout")[0]
    assert status == 404 and body["error"].startswith(
        f"no running rollout of app '{APP}' for release '{RELEASE}'")
    # Flagger counts those as failed checks: at the threshold it rolls the unjudged release back itself.
    assert f.events[-1] == "Rolling back shop-web failed checks threshold reached 5"


def test_stale_a_by_app_alone_the_checksum_keeps_the_previous_verdict_from_answering():
    """A Canary naming only the app: the previous release's rollout was asked about during its
    own analysis (checksum aaaa), so the new revision's checksum (bbbb) does not get its 200."""
    previous = rollout(f"{APP}:{BASELINE}", started_at=NOW - 86_400_000)
    b, _ = backend(previous)
    old = run(b, Flagger(sample(drop=("release", "baseline")), checksum="aaaa"), 2)
    assert [s for s, _ in old.answered("pre-rollout")] == [200]
    b.latest[previous.id] = verdict("rollback", rid=previous.id)
    f = run(b, Flagger(sample(drop=("release", "baseline")), checksum="bbbb"), 8)
    assert all(s == 409 for s, _ in f.answered("rollback")), f.answered("rollback")
    assert "manual webhook invoked" not in " ".join(f.events)
    assert f.answered("rollback")[0][1]["error"].startswith(
        f"checksum 'bbbb' is not the revision rollout '{previous.id}' judges ('aaaa'")


def test_stale_b_a_config_only_change_never_gets_the_releases_promote():
    """A ConfigMap change: Flagger analyses a new revision (new checksum) of the same release,
    whose rollout promoted in the last analysis and was never ended. Before, confirm-promotion
    answered 200 from that promote."""
    b, rec = backend()
    first = run(b, Flagger(sample(), checksum="c0nf1g1"), 3)
    assert first.failed_checks == 0 and [r.id for r in rec.rollouts] == [RID]
    b.latest[RID] = verdict("promote")
    f = run(b, Flagger(sample(), checksum="c0nf1g2"), 8)
    assert f.weight == 0 and f.phase == "Failed" and rec.rollouts[1:] == [], "no second rollout"
    status, body = f.answered("pre-rollout")[0]
    assert status == 409 and "checksum 'c0nf1g2' is not the revision" in body["error"]
    # Asked directly: the promote is there for the revision it judged, never for the new one.
    assert ask(b, sample(), "confirm-promotion", "c0nf1g2")[0] == 409
    assert ask(b, sample(), "confirm-promotion", "c0nf1g1")[0] == 200


def test_a_rollback_call_before_the_analysis_starts_gives_no_answer():
    """In phase Waiting (confirm-rollout refused) the checksum is still the previous
    revision's (``checkCanaryStatus`` runs the confirm-rollout hooks before ``SyncStatus``),
    so the rollback hook is not answered from the rollout's verdict."""
    b, _ = backend(rollout(RID), latest={RID: verdict("rollback")})
    status, body = ask(b, sample(), "rollback", "previous", phase="Waiting")
    assert status == 409 and body["error"].startswith("phase 'Waiting': Flagger is not analysing a revision")
    assert ask(b, sample(), "rollback", "current", phase="Progressing")[0] == 200


# -- what is sent ---------------------------------------------------------------------------------


def test_the_request_is_flaggers_own():
    canary = sample()
    hook = canary["spec"]["analysis"]["webhooks"][0]
    body = go_json(payload(canary, "Progressing", "6c4c5d7f8b", hook["metadata"]))
    assert body == (b'{"name":"shop-web","namespace":"shop-web","phase":"Progressing","checksum":"6c4c5d7f8b",'
                    b'"metadata":{"app":"shop-web","baseline":"2026.11.20-f00","release":"2026.11.23-abc",'
                    b'"token":"hook-only-token"}}')
    assert go_json({"a": "<&>"}) == b'{"a":"\\u003c\\u0026\\u003e"}'
    raw = go_request("http://rumgate.rumgate.svc/v1/flagger/rollout", body)
    assert raw.startswith(b"POST /v1/flagger/rollout HTTP/1.1\r\nHost: rumgate.rumgate.svc\r\n")
    assert f"Content-Length: {len(body)}\r\n".encode() in raw and raw.endswith(b"\r\n\r\n" + body)
