"""Integration fixtures: a real Kafka-compatible broker (Tansu) and real worker processes.

Each test gets its own topic prefix and consumer group on one broker, so tests do not
see each other's records. Workers run as ``python -m streams worker`` subprocesses with
short group timeouts (Faust's group join otherwise waits half the rebalance timeout).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from detectors.policy import Policy
from streams.live.broker import EmbeddedBroker, free_port
from streams.offline.feed import produce_beacons
from detectors.rollout import Rollout
from streams.live.settings import Settings
from streams.live.topics import ensure_topics, read_to_end

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token"


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path
    http: str  # base URL of its HTTP API

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 60.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.output().count(text) >= count:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.output()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"worker never printed {text!r}:\n{self.output()[-4000:]}")

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Pipeline:
    """One isolated rumgate deployment (topic prefix + group) on the shared broker."""

    def __init__(self, broker: EmbeddedBroker, tmp: Path, partitions: int = 4) -> None:
        tag = uuid.uuid4().hex[:8]
        self.broker, self.tmp = broker, tmp
        self.settings = Settings(broker=broker.url, app_id=f"rumgate-{tag}", topic_prefix=f"t{tag}.",
                                 beacons_partitions=partitions)
        self.topics = self.settings.topics
        self.workers: list[Worker] = []
        asyncio.run(ensure_topics(self.settings))

    def env(self) -> dict[str, str]:
        s = self.settings
        return dict(os.environ, RUMGATE_BROKER=self.broker.url, RUMGATE_APP_ID=s.app_id,
                    RUMGATE_TOPIC_PREFIX=s.topic_prefix, RUMGATE_BEACONS_PARTITIONS=str(s.beacons_partitions),
                    RUMGATE_REBALANCE_TIMEOUT_S="4", RUMGATE_SESSION_TIMEOUT_S="4", RUMGATE_API_TOKEN=TOKEN,
                    PYTHONPATH=str(REPO))

    def start_worker(self, **env: str) -> Worker:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "streams", "worker", "--loglevel", "warning"],
                                   env={**self.env(), "RUMGATE_HTTP": f"127.0.0.1:{port}", **env},
                                   stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                   cwd=self.tmp)
        worker = Worker(process, log, f"http://127.0.0.1:{port}")
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    # -- talking to the topics --------------------------------------------------------------
    def start_rollout(self, rollout: Rollout) -> None:
        asyncio.run(self._send(self.topics.rollouts, orjson.dumps(rollout.to_dict()), rollout.id.encode()))

    async def _send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None):
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.servers)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
        finally:
            await producer.stop()

    def send_raw(self, value: bytes, partition: int = 0) -> None:
        asyncio.run(self._send(self.topics.beacons, value, partition=partition))

    def produce(self, beacons, per_record: int = 1) -> int:
        return asyncio.run(produce_beacons(self.broker.servers, self.topics.beacons, beacons,
                                           self.settings.beacons_partitions, per_record=per_record))

    def read(self, topic: str) -> list:
        async def go():
            return [r async for batch in read_to_end(self.broker.servers, topic) for r in batch]
        return asyncio.run(go())

    def verdicts(self) -> list[dict]:
        return [orjson.loads(r.value) for r in self.read(self.topics.verdicts)]

    def wait_for_verdict(self, predicate, timeout_s: float = 90.0) -> list[dict]:
        """Verdicts so far, once one satisfies ``predicate`` (workers must stay alive)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            vs = self.verdicts()
            if any(predicate(v) for v in vs):
                return vs
            for w in self.workers:
                if w.process.poll() is not None and w.process.returncode not in (-9,):
                    raise AssertionError(f"a worker exited:\n{w.output()[-4000:]}")
            time.sleep(0.5)
        logs = "\n".join(w.output()[-3000:] for w in self.workers)
        raise AssertionError(f"no such verdict within {timeout_s} s; got {[v['verdict'] for v in vs]}\n{logs}")


@pytest.fixture
def pipeline(broker, tmp_path) -> Iterator[Pipeline]:
    p = Pipeline(broker, tmp_path)
    yield p
    p.stop()


def decided(v: dict) -> bool:
    return v["verdict"] in ("promote", "rollback")


def core(v: dict) -> dict:
    """A verdict without what legitimately differs between runs (wall-clock emission time)."""
    return {k: val for k, val in v.items() if k != "emitted_at"}


def make_rollout(scenario, policy: Policy, rollout_id: str | None = None) -> Rollout:
    return Rollout(rollout_id or f"{scenario.app}:{scenario.canary}", scenario.app, scenario.canary,
                   scenario.baseline, scenario.start_ms, policy)
