"""`rumgate gate wait` exit codes, `rumgate override`, and the Python subscriber, on a real broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import orjson

from streams.client import VerdictSubscriber
from detectors.rollout import Rollout
from streams.offline.simulate import generate_beacons
from tests.integration.conftest import REPO, make_rollout
from tests.integration.test_pipeline import POLICY, REGRESSED

RID = "shop-web:r2"


def gate(pipeline, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams", "gate", "wait", *args], cwd=REPO, env=pipeline.env(),
                          capture_output=True, text=True, timeout=timeout)


def verdict(seq: int, kind: str, rollout: str = RID, dry_run: bool = False, **fields) -> dict:
    return {"rollout": rollout, "app": "shop-web", "canary": "r2", "baseline": "r1", "seq": seq,
            "verdict": kind, "severity": "major" if kind == "rollback" else "none", "at": 1_000 * seq,
            "emitted_at": None, "policy": {"name": "p", "hash": "sha256:0", "dry_run": dry_run},
            "reasons": [f"reason {seq}"], "overrides": [], "metrics": [], "data_quality": {},
            "detectors": {}, "inputs": {"elapsed_ms": 5000 * seq}, **fields}


def publish(pipeline, v: dict) -> None:
    key = (v["rollout"] + (f"~dry-run:{v['policy']['name']}" if v["policy"]["dry_run"] else "")).encode()
    asyncio.run(pipeline._send(pipeline.topics.verdicts, orjson.dumps(v), key))
    asyncio.run(pipeline._send(pipeline.topics.verdicts_latest, orjson.dumps(v), key))


def start(pipeline) -> None:
    pipeline.start_rollout(Rollout(RID, "shop-web", "r2", "r1", 1_000, POLICY))


def test_exit_0_on_promote_after_continues(pipeline):
    start(pipeline)
    publish(pipeline, verdict(1, "continue"))
    process = subprocess.Popen([sys.executable, "-m", "streams", "gate", "wait", RID, "--timeout", "60s"],
                               cwd=REPO, env=pipeline.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        shown = []
        for line in process.stdout:  # the later verdicts go out once the first one is on screen,
            shown.append(line)       # however long the command took to start
            if "continue" in line:
                break
        publish(pipeline, verdict(2, "continue"))
        publish(pipeline, verdict(3, "promote"))
        rest, err = process.communicate(timeout=120)
    finally:
        process.kill()
    stdout = "".join(shown) + rest
    assert process.returncode == 0, stdout + err
    assert "PROMOTE" in stdout and "reason 3" in stdout
    assert stdout.count("continue") >= 1  # the evidence was shown as it came


def test_exit_2_on_a_final_hold_and_dry_run_verdicts_are_ignored(pipeline):
    start(pipeline)
    publish(pipeline, verdict(1, "rollback", dry_run=True))  # a dry-run policy decides nothing
    publish(pipeline, verdict(1, "hold"))  # transient (no code says otherwise): waited through
    publish(pipeline, verdict(2, "hold", reason_codes=["deadline"], hold="final"))
    run = gate(pipeline, RID, "--timeout", "30s")
    assert run.returncode == 2 and "HOLD" in run.stdout and "timeout" not in run.stderr, run.stdout + run.stderr


def test_exit_2_on_timeout_never_a_silent_pass(pipeline):
    start(pipeline)
    publish(pipeline, verdict(1, "continue"))
    run = gate(pipeline, RID, "--timeout", "3s")
    assert run.returncode == 2 and "timeout" in run.stderr
    opened = gate(pipeline, RID, "--timeout", "2s", "--fail-open")
    assert opened.returncode == 0 and "FAIL-OPEN" in opened.stderr


def test_exit_3_when_unreachable_or_unknown(pipeline):
    env_broker = ["--broker", "kafka://127.0.0.1:1"]
    run = gate(pipeline, RID, *env_broker, timeout=90)
    assert run.returncode == 3 and "cannot reach" in run.stderr
    opened = gate(pipeline, RID, *env_broker, "--fail-open", timeout=90)
    assert opened.returncode == 0 and "FAIL-OPEN" in opened.stderr
    unknown = gate(pipeline, "no-such-rollout", "--timeout", "2s")
    assert unknown.returncode == 3 and "no rollout" in unknown.stderr


def test_exit_1_on_a_live_rollback(pipeline):
    rollout = make_rollout(REGRESSED, POLICY)
    pipeline.start_rollout(rollout)
    pipeline.start_worker()
    feeder = threading.Thread(target=pipeline.produce, args=(generate_beacons(REGRESSED, seed=11),))
    feeder.start()
    run = gate(pipeline, rollout.id, "--timeout", "2m")
    feeder.join()
    assert run.returncode == 1, run.stdout + run.stderr
    assert "ROLLBACK" in run.stdout and "LCP" in run.stdout


def test_override_command_is_refused_or_put_on_record(pipeline):
    rollout = make_rollout(REGRESSED, POLICY)
    pipeline.start_rollout(rollout)
    done = subprocess.run([sys.executable, "-m", "streams", "override", rollout.id, "--action", "hold",
                           "--actor", "ana", "--reason", "launch freeze", "--ticket", "OPS-7"],
                          cwd=REPO, env=pipeline.env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    record = orjson.loads(pipeline.read(pipeline.topics.overrides)[-1].value)
    assert (record["action"], record["actor"], record["ticket"]) == ("hold", "ana", "OPS-7")
    bad = subprocess.run([sys.executable, "-m", "streams", "override", rollout.id, "--action", "hold",
                          "--actor", "ana", "--reason", "  "], cwd=REPO, env=pipeline.env(),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and "reason" in bad.stderr


def test_subscriber_yields_the_latest_first_then_each_new_one(pipeline):
    start(pipeline)
    publish(pipeline, verdict(1, "continue"))
    publish(pipeline, verdict(2, "continue"))
    publish(pipeline, verdict(1, "continue", rollout="other:x"))

    async def collect() -> list:
        got = []
        async for v in VerdictSubscriber(pipeline.broker.url, rollout=RID, topics=pipeline.topics):
            got.append((v.seq, v.verdict))
            if len(got) == 1:
                await asyncio.to_thread(publish, pipeline, verdict(3, "continue"))
                await asyncio.to_thread(publish, pipeline, verdict(3, "continue"))  # a repeat: skipped
                await asyncio.to_thread(publish, pipeline, verdict(4, "rollback"))
            if v.verdict == "rollback":
                return got
        return got

    got = asyncio.run(asyncio.wait_for(collect(), 60))
    assert got == [(2, "continue"), (3, "continue"), (4, "rollback")]
    time.sleep(0)
