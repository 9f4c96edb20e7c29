"""The live pipeline on a real broker: records in rum.beacons → verdicts in rum.verdicts."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import replace

import orjson
import pytest
from click.testing import CliRunner

from detectors.override import Override
from detectors.policy import parse_policy
from streams.cli import cli
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons
from tests.integration.conftest import TOKEN, core, decided, make_rollout

POLICY = parse_policy("name: it\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 2m\n")
REGRESSED = replace(SCENARIOS["stationary"], duration_s=600.0, canary_share=0.2, regressions=(Regression("LCP", 1.25),))
CLEAN = replace(SCENARIOS["clean"], duration_s=600.0, canary_share=0.2)


def test_a_regressed_canary_ends_in_rollback(pipeline):
    pipeline.start_rollout(make_rollout(REGRESSED, POLICY))
    worker = pipeline.start_worker()
    pipeline.produce(generate_beacons(REGRESSED, seed=11), per_record=1)
    verdicts = pipeline.wait_for_verdict(decided)
    final = [v for v in verdicts if decided(v)][0]
    assert final["verdict"] == "rollback", final["reasons"]
    assert final["rollout"] == f"{REGRESSED.app}:{REGRESSED.canary}"
    assert any("LCP" in r for r in final["reasons"])
    assert [v["seq"] for v in verdicts] == list(range(1, len(verdicts) + 1))  # each verdict once, in order
    latest = [orjson.loads(r.value) for r in pipeline.read(pipeline.topics.verdicts_latest)]
    assert latest[-1]["seq"] == final["seq"]
    assert "partitions assigned" in worker.output()
    with urllib.request.urlopen(worker.http + "/healthz", timeout=5) as answer:
        health = orjson.loads(answer.read())
    assert health["ready"] is True  # readiness is a signal, not a line of the log
    assert sorted(health["partitions"]) == sorted([f"{pipeline.topics.beacons}[{p}]" for p in range(4)]
                                                  + [f"{pipeline.topics.windows}[0]"])
    # Decided, the rollout ends itself at the verdict's time, on rum.rollouts and in the API.
    deadline = time.monotonic() + 30
    while True:
        records = [orjson.loads(r.value) for r in pipeline.read(pipeline.topics.rollouts)]
        if records[-1]["ended_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert records[-1]["ended_at"] == final["at"], records[-1]
    assert records[-1]["end_reason"] == f"decided: rollback ({final['reason_codes'][0]}), verdict #{final['seq']}"
    request = urllib.request.Request(worker.http + f"/v1/rollouts/{final['rollout']}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert orjson.loads(answer.read())["end_reason"] == records[-1]["end_reason"]


def test_a_clean_canary_ends_in_promote_from_batch_records(pipeline):
    pipeline.start_rollout(make_rollout(CLEAN, POLICY))
    pipeline.start_worker()
    pipeline.produce(generate_beacons(CLEAN, seed=2), per_record=50)  # JSON-array records
    verdicts = pipeline.wait_for_verdict(decided)
    assert [v for v in verdicts if decided(v)][0]["verdict"] == "promote"


def test_a_malformed_record_goes_to_the_dlq_and_the_worker_keeps_going(pipeline):
    pipeline.start_rollout(make_rollout(REGRESSED, POLICY))
    worker = pipeline.start_worker()
    pipeline.send_raw(b"{not json", partition=1)
    bad_item = orjson.dumps([{"ts": REGRESSED.start_ms, "app": "shop-web", "release": "x"},
                             {"ts": "yesterday", "app": "shop-web", "release": "x"}])
    pipeline.send_raw(bad_item, partition=2)
    pipeline.produce(generate_beacons(REGRESSED, seed=11))
    verdicts = pipeline.wait_for_verdict(decided)
    assert verdicts[-1]["verdict"] == "rollback"
    dead = pipeline.read(pipeline.topics.dlq)
    # One dead-letter record per source record, holding all its refused items.
    by_source = {(dict(r.headers)["rumgate-partition"], dict(r.headers)["rumgate-offset"]): r for r in dead}
    assert set(by_source) == {(b"1", b"0"), (b"2", b"0")}
    assert orjson.loads(by_source[b"1", b"0"].value) == [
        {"item": None, "reason": "record: not valid JSON or NDJSON", "raw": "{not json", "encoding": "utf-8"}]
    [member] = orjson.loads(by_source[b"2", b"0"].value)
    assert member["item"] == 1 and member["reason"] == "ts: must be an integer (epoch ms), got str"
    assert orjson.loads(member["raw"])["ts"] == "yesterday" and member["encoding"] == "utf-8"
    assert worker.process.poll() is None


def test_replaying_the_topic_gives_the_live_verdicts(pipeline, tmp_path):
    rollout = make_rollout(REGRESSED, POLICY)
    pipeline.start_rollout(rollout)
    # A hold for the first 30 s of the rollout: it delays the rollback, live and replayed alike.
    hold = Override(rollout.id, "hold", "ana", "launch freeze", at=REGRESSED.start_ms,
                    expires_at=REGRESSED.start_ms + 30_000)
    import asyncio

    asyncio.run(pipeline._send(pipeline.topics.overrides, orjson.dumps(hold.to_dict()), rollout.id.encode()))
    pipeline.start_worker()
    pipeline.produce(generate_beacons(REGRESSED, seed=11))
    live = pipeline.wait_for_verdict(decided)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("name: it\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 2m\n")
    out = tmp_path / "replayed.ndjson"
    result = CliRunner().invoke(cli, [
        "backtest", "--topic", pipeline.topics.beacons, "--broker", pipeline.broker.url,
        "--from", str(REGRESSED.start_ms), "--app", REGRESSED.app, "--canary", REGRESSED.canary,
        "--baseline", REGRESSED.baseline, "--policy", str(policy_file), "-o", str(out)])
    assert result.exit_code == 1, result.output  # rollback
    replayed = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [core(v) for v in replayed] == [core(v) for v in live[:len(replayed)]]
    assert len(replayed) == len(live) and decided(replayed[-1])
    held = [v for v in live if v["overrides"] and v["overrides"][0]["active"]]
    assert held and all(v["verdict"] == "hold" for v in held)  # the override was in force live
    assert live[-1]["inputs"]["elapsed_ms"] >= 30_000  # decided only once the hold expired
    # The replay joined no group: the live group's committed offsets are the only ones.
    assert "final verdict: ROLLBACK" in result.output


@pytest.mark.parametrize("workers", [2])
def test_two_workers_split_the_partitions_and_give_the_same_verdicts(pipeline, workers):
    pipeline.start_rollout(make_rollout(REGRESSED, POLICY))
    started = [pipeline.start_worker() for _ in range(workers)]
    everything = {f"{pipeline.topics.beacons}[{p}]" for p in range(4)}

    def shares() -> list[set[str]]:
        """The rum.beacons partitions of each worker's latest assignment."""
        out = []
        for w in started:
            lines = [line for line in w.output().splitlines() if "partitions assigned: " in line]
            names = lines[-1].split("partitions assigned: ", 1)[1].split(", ") if lines else []
            out.append({n for n in names if n.startswith(pipeline.topics.beacons + "[")})
        return out

    deadline = time.monotonic() + 60
    while not (all(shares()) and set.union(*shares()) == everything) and time.monotonic() < deadline:
        time.sleep(0.2)
    split = shares()
    assert all(split) and not set.intersection(*split) and set.union(*split) == everything, split
    pipeline.produce(generate_beacons(REGRESSED, seed=11))
    verdicts = pipeline.wait_for_verdict(decided)
    assert shares() == split  # nobody left or joined meanwhile
    # The same verdicts as the file backtest of the same traffic.
    from streams.offline.backtest import run_backtest

    records = [orjson.dumps(b) for b in generate_beacons(REGRESSED, seed=11)]
    expected = run_backtest([records], POLICY, REGRESSED.app, REGRESSED.canary, REGRESSED.baseline)
    want = [{k: v for k, v in x.to_dict().items() if k != "emitted_at"} for x in expected.verdicts]
    assert [core(v) for v in verdicts] == want


def test_an_app_that_opted_in_gets_a_rollout_when_a_new_release_appears_in_its_beacons(pipeline):
    """RUMGATE_AUTO_ROLLOUT_APPS: after an hour of one release, a second one carries traffic;
    the worker starts APP:NEW against the first from the window where NEW first appeared,
    and judges it. An app that did not opt in gets none."""
    from detectors.windows import window_start

    start = SCENARIOS["stationary"].start_ms
    before = replace(SCENARIOS["stationary"], duration_s=3_720.0, rate=2.0, canary_share=0.0)
    during = replace(SCENARIOS["stationary"], start_ms=start + 3_660_000, duration_s=300.0, rate=10.0,
                     canary_share=0.4)
    other = replace(during, app="cart-web")
    beacons = sorted([*generate_beacons(before, seed=1), *generate_beacons(during, seed=2),
                      *generate_beacons(replace(before, app="cart-web"), seed=3), *generate_beacons(other, seed=4)],
                     key=lambda b: b["ts"])
    first_new = min(b["ts"] for b in beacons if b["app"] == during.app and b["release"] == during.canary)
    pipeline.start_worker(RUMGATE_AUTO_ROLLOUT_APPS=during.app)
    pipeline.produce(beacons, per_record=50)
    rid = f"{during.app}:{during.canary}"
    verdicts = pipeline.wait_for_verdict(lambda v: v["rollout"] == rid)
    records = [orjson.loads(r.value) for r in pipeline.read(pipeline.topics.rollouts)]
    started = [r for r in records if r["id"] == rid]
    assert started and (started[0]["canary"], started[0]["baseline"]) == (during.canary, during.baseline)
    assert started[0]["started_at"] == window_start(first_new, 5_000)
    assert {r["app"] for r in records} == {during.app}  # cart-web did not opt in
    assert verdicts[0]["seq"] == 1 and verdicts[0]["at"] > started[0]["started_at"]
