"""`rumgate rollout start|status|end` and `rumgate broker` against a real broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import orjson
from click.testing import CliRunner

from streams.live.broker import wait_for_port
from streams.cli import cli
from detectors.rollout import Rollout
from tests.integration.conftest import REPO


def invoke(pipeline, *args: str):
    env = pipeline.env()
    return CliRunner(env={k: env[k] for k in ("RUMGATE_BROKER", "RUMGATE_TOPIC_PREFIX")}).invoke(
        cli, list(args), catch_exceptions=False)


def test_rollout_start_status_end(pipeline, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("name: strict\nmetrics:\n  - metric: LCP\n")
    trial = tmp_path / "trial.yaml"
    trial.write_text("name: trial\nmetrics:\n  - metric: INP\n")
    started = invoke(pipeline, "rollout", "start", "--app", "shop-web", "--canary", "r2", "--baseline", "r1",
                     "--policy", str(policy), "--expected-share", "0.05", "--started-at", "2026-11-23T10:00:00Z",
                     "--dry-run-policy", str(trial))
    assert started.exit_code == 0, started.output
    assert "rollout shop-web:r2 started" in started.output and "policy strict" in started.output
    assert "dry run trial" in started.output
    records = pipeline.read(pipeline.topics.rollouts)
    rollout = Rollout.from_dict(orjson.loads(records[-1].value))
    assert (rollout.app, rollout.canary, rollout.baseline, rollout.expected_share) == ("shop-web", "r2", "r1", 0.05)
    assert rollout.started_at == 1_795_428_000_000 and rollout.policy.name == "strict"
    assert [(p.name, p.dry_run) for p in rollout.dry_run_policies] == [("trial", True)]
    again = invoke(pipeline, "rollout", "start", "--app", "shop-web", "--canary", "r2", "--baseline", "r1")
    assert again.exit_code == 1 and "never reused" in again.output

    status = invoke(pipeline, "rollout", "status", "shop-web:r2")
    assert status.exit_code == 2  # no verdict yet: not a pass
    assert "no verdict yet" in status.output and "(active" in status.output

    # A verdict on the latest topic is what status reports, with its exit code.
    verdict = {"rollout": "shop-web:r2", "seq": 3, "verdict": "rollback", "severity": "major",
               "reasons": ["LCP p75 worse"]}
    import asyncio
    asyncio.run(pipeline._send(pipeline.topics.verdicts_latest, orjson.dumps(verdict), b"shop-web:r2"))
    status = invoke(pipeline, "rollout", "status", "shop-web:r2")
    assert status.exit_code == 1 and "ROLLBACK (major)" in status.output and "LCP p75 worse" in status.output

    listing = invoke(pipeline, "rollout", "status", "--json")
    assert orjson.loads(listing.output.splitlines()[0])["verdict"]["seq"] == 3

    ramp = invoke(pipeline, "rollout", "share", "shop-web:r2", "0.25", "--at", "2026-11-23T10:10:00Z")
    assert ramp.exit_code == 0 and "expected canary share 25.0% from 1795428600000" in ramp.output, ramp.output
    ramped = Rollout.from_dict(orjson.loads(pipeline.read(pipeline.topics.rollouts)[-1].value))
    assert ramped.share_changes == ((1_795_428_600_000, 0.25),) and ramped.policy.name == "strict"
    back = invoke(pipeline, "rollout", "share", "shop-web:r2", "0.5", "--at", "2026-11-23T10:05:00Z")
    assert back.exit_code == 2 and "before the share's last change" in back.output

    ended = invoke(pipeline, "rollout", "end", "shop-web:r2")
    assert ended.exit_code == 0
    assert orjson.loads(pipeline.read(pipeline.topics.rollouts)[-1].value)["ended_at"] is not None
    assert "(ended: by a person" in invoke(pipeline, "rollout", "status").output
    late = invoke(pipeline, "rollout", "share", "shop-web:r2", "0.5")
    assert late.exit_code == 1 and "has ended (by a person)" in late.output


def test_unknown_rollout_and_bad_input_are_refused_clearly(pipeline):
    missing = invoke(pipeline, "rollout", "status", "nope")
    assert missing.exit_code == 1 and "no rollout 'nope'" in missing.output
    same = invoke(pipeline, "rollout", "start", "--app", "a", "--canary", "r1", "--baseline", "r1")
    assert same.exit_code == 2 and "different releases" in same.output
    when = invoke(pipeline, "rollout", "start", "--app", "a", "--canary", "r2", "--baseline", "r1",
                  "--started-at", "yesterday")
    assert when.exit_code == 2 and "ISO 8601" in when.output


def test_rollout_commands_need_a_broker():
    result = CliRunner(env={"RUMGATE_BROKER": None}).invoke(cli, ["rollout", "status"])
    assert result.exit_code == 1 and "no broker" in result.output


def test_an_unreachable_broker_is_an_error_not_a_hang(tmp_path):
    run = subprocess.run([sys.executable, "-m", "streams", "rollout", "status", "--broker", "kafka://127.0.0.1:1"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 3 and "cannot reach the broker" in run.stderr


def test_rumgate_broker_runs_in_the_foreground_and_stops_on_sigterm():
    from streams.live.broker import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "streams", "broker", "--port", str(port)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_port("127.0.0.1", port, 20)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert f"kafka://127.0.0.1:{port}" in out and "broker stopped" in out
    time.sleep(0.2)
    assert not wait_for_port("127.0.0.1", port, 0.5)
