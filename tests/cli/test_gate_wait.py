"""``rumgate gate wait``: it waits through transient holds, exits 2 on a final one, and says
what it waits for.

The command runs whole (option parsing, the rollout check, the wait, the exit code) with the
broker's two reads replaced: ``read_state`` answers with the rollout, and the verdict
subscriber yields the verdicts given, as :class:`streams.client.VerdictSubscriber` does.
Before hold kinds the first hold ended the wait: every test with a transient hold before the
decision fails on that code (it exits 2 at the hold).
"""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from detectors.verdict import Verdict
from streams.cli import cli
from streams.cli import gate as gate_module
from streams.cli.gate import Follower, ends_the_wait

RID = "shop-web:2026.11.23-abc"
NO_CANARY = "no canary beacons for 120 s: is the canary serving traffic?"
SRM = "sample-ratio mismatch: canary has 2.50% of page views, 5.00% expected (e = 1e+03 ≥ 1e+03); ..."
INCIDENT = "global incident: the baseline's LCP p75 moved too (anomaly score 0.9 ≥ 0.75, ...)"
DEADLINE = "inconclusive after 120 min: a person must decide"


def event(seq: int, verdict: str, code: str | None, reason: str, elapsed_s: int = 0, **extra) -> dict:
    """A verdict event as the judge publishes it (``code`` None: one written before reason codes)."""
    app, _, canary = RID.partition(":")
    d = {"rollout": RID, "app": app, "canary": canary, "baseline": "2026.11.20-f00", "seq": seq,
         "verdict": verdict, "severity": "critical" if verdict == "rollback" else "none", "at": 1_763_856_000_000,
         "policy": {"name": "default", "hash": "sha256:00", "dry_run": False}, "reasons": [reason],
         "metrics": [], "inputs": {"elapsed_ms": elapsed_s * 1000}, **extra}
    if code is not None and "reason_codes" not in extra:
        d["reason_codes"] = [code]
    return d


def transient_start() -> list[dict]:
    """The holds every rollout may meet before it decides: none of them ends the wait."""
    return [event(1, "continue", "warmup", "warming up (60 s excluded: cold caches affect only the canary)", 5),
            event(2, "hold", "no_canary", NO_CANARY, 125),
            event(3, "hold", "no_canary", NO_CANARY, 130),
            event(4, "hold", "srm", SRM, 200),
            event(5, "hold", "global_incident", INCIDENT, 260),
            event(6, "continue", "collecting", "collecting evidence: LCP p75", 320)]


class FakeBroker:
    """``read_state`` and ``VerdictSubscriber`` of :mod:`streams.cli.gate`, without a broker."""

    def __init__(self, events: list[dict], then_wait: bool = False) -> None:
        self.events, self.then_wait = events, then_wait
        self.subscribed: list[str] = []
        broker = self

        class Subscriber:
            def __init__(self, servers, rollout, topics=None) -> None:
                broker.subscribed.append(rollout)

            async def __aiter__(self):
                for e in broker.events:
                    yield Verdict.from_dict(e)
                if broker.then_wait:  # a live topic: nothing more, for now
                    await asyncio.sleep(3600)

        self.Subscriber = Subscriber

    async def read_state(self, settings):
        app, _, canary = RID.partition(":")
        return {RID: {"id": RID, "app": app, "canary": canary, "baseline": "2026.11.20-f00"}}, {}


def wait(monkeypatch, events: list[dict], *args: str, then_wait: bool = False):
    fake = FakeBroker(events, then_wait)
    monkeypatch.setattr(gate_module, "read_state", fake.read_state)
    monkeypatch.setattr(gate_module, "VerdictSubscriber", fake.Subscriber)
    result = CliRunner().invoke(cli, ["gate", "wait", "--broker", "kafka://127.0.0.1:9", RID, *args],
                                prog_name="rumgate")
    assert fake.subscribed == [RID]
    return result


def test_transient_holds_are_waited_through_up_to_the_promote(monkeypatch):
    result = wait(monkeypatch, [*transient_start(), event(7, "promote", "proven_not_worse",
                                                          "every metric proven not worse after 10 min", 700)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    # What it waits for, once per reason (the second no-canary hold adds no line).
    assert out.count(f"    waiting: a transient hold, which lifts by itself: {NO_CANARY}\n") == 1
    assert f"    waiting: a transient hold, which lifts by itself: {SRM}\n" in out
    assert f"    waiting: a transient hold, which lifts by itself: {INCIDENT}\n" in out
    assert "    waiting: collecting evidence: LCP p75\n" in out
    assert out.endswith(f"{RID}: PROMOTE\n  - every metric proven not worse after 10 min\n")


def test_a_rollback_after_transient_holds_exits_1(monkeypatch):
    result = wait(monkeypatch, [*transient_start(), event(7, "rollback", "worse", "LCP p75 worse by ≥ 10 %", 400)])
    assert result.exit_code == 1, result.output
    assert result.stdout.endswith(f"{RID}: ROLLBACK (critical)\n  - LCP p75 worse by ≥ 10 %\n")


@pytest.mark.parametrize(("final", "reason"), [
    (event(7, "hold", "deadline", DEADLINE, 7200), DEADLINE),
    (event(7, "hold", "override_hold", "override by ana: hold, launch freeze (OPS-1)", 400,
           reasons=["override by ana: hold, launch freeze (OPS-1)", "the evidence alone says continue: collecting"],
           reason_codes=["override_hold", "collecting"]),
     "override by ana: hold, launch freeze (OPS-1)"),
])
def test_a_final_hold_exits_2_and_says_a_person_must_decide(monkeypatch, final, reason):
    after = event(8, "promote", "proven_not_worse", "never reached", 7300)
    result = wait(monkeypatch, [*transient_start(), final, after])
    assert result.exit_code == 2, result.output
    assert f"{RID}: a final hold: a person must decide (waiting longer cannot change it)\n{RID}: HOLD\n  - {reason}\n" \
        in result.stdout
    assert "never reached" not in result.output


def test_events_written_before_hold_kinds_and_codes_are_waited_on_alike(monkeypatch):
    old = [event(1, "hold", None, NO_CANARY, 125), event(2, "hold", None, DEADLINE, 7200)]
    result = wait(monkeypatch, old)
    assert result.exit_code == 2, result.output
    assert f"waiting: a transient hold, which lifts by itself: {NO_CANARY}" in result.stdout
    assert result.stdout.endswith(f"{RID}: HOLD\n  - {DEADLINE}\n")


def test_the_timeout_during_a_transient_hold_says_what_it_waited_for(monkeypatch):
    result = wait(monkeypatch, transient_start()[:3], "--timeout", "1s", then_wait=True)
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"timeout: no promote, rollback or final hold for {RID} within 1 s; the last verdict "
                             f"(#3) was hold (transient): {NO_CANARY}\n")
    failed_open = wait(monkeypatch, transient_start()[:3], "--timeout", "1s", "--fail-open", then_wait=True)
    assert failed_open.exit_code == 0
    assert failed_open.stderr.startswith("FAIL-OPEN: timeout: no promote, rollback or final hold")


def test_quiet_prints_only_the_outcome(monkeypatch):
    result = wait(monkeypatch, [*transient_start(), event(7, "hold", "deadline", DEADLINE, 7200)], "--quiet")
    assert result.exit_code == 2
    assert result.stdout == (f"{RID}: a final hold: a person must decide (waiting longer cannot change it)\n"
                             f"{RID}: HOLD\n  - {DEADLINE}\n")


def test_the_follower_prints_evidence_once_a_minute_and_on_each_change():
    lines: list[str] = []
    follower = Follower(lines.append)
    same_minute = [event(i, "hold", "no_canary", NO_CANARY, 120 + i) for i in range(1, 11)]
    assert not any(follower.see(Verdict.from_dict(e)) for e in same_minute)
    assert len(lines) == 2 and lines[1] == f"    waiting: a transient hold, which lifts by itself: {NO_CANARY}"
    assert not follower.see(Verdict.from_dict(event(11, "continue", "collecting", "collecting evidence: INP", 131)))
    assert len(lines) == 4 and lines[2].split()[1] == "continue"  # the verdict changed: a new evidence line
    assert follower.last_seen() == "; the last verdict (#11) was continue: collecting evidence: INP"
    assert Follower(lines.append).last_seen() == "; no verdict was published"


@pytest.mark.parametrize(("kind", "code", "ends"), [
    ("continue", "collecting", False), ("hold", "no_canary", False), ("hold", "srm", False),
    ("hold", "few_sessions", False), ("hold", "global_incident", False), ("hold", "deadline", True),
    ("hold", "override_hold", True), ("promote", "proven_not_worse", True), ("rollback", "worse", True),
])
def test_what_ends_the_wait(kind, code, ends):
    assert ends_the_wait(Verdict.from_dict(event(1, kind, code, "r"))) is ends
