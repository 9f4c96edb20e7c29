"""The worker's app: its consumer's fetch wait is scoped to it, and the control topics it follows."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import orjson
from faust.transport.drivers import aiokafka as faust_aiokafka

from detectors.override import Override
from detectors.rollout import Rollout
from streams.live.app import RumgateApp, create_app
from streams.live.control import apply_control_record
from streams.live.serving import ingest_sink
from streams.live.settings import Settings
from tests.live.test_agents import ROLLOUT, RecordingTopic, runtime


def test_the_short_fetch_wait_applies_to_this_app_only():
    rt = create_app(Settings(broker="localhost:1", fetch_max_wait_ms=37), quiet=True)
    assert isinstance(rt.app, RumgateApp) and rt.app.transport.fetch_max_wait_ms == 37

    async def fetch_wait() -> int:
        thread = rt.app.consumer._thread
        consumer = thread._create_worker_consumer(rt.app.transport)
        await consumer.stop()  # never started; closes its client
        return consumer._fetch_max_wait_ms

    assert asyncio.run(fetch_wait()) == 37
    # Faust's own classes are untouched: another app in the process keeps Faust's consumer.
    assert faust_aiokafka.Transport.Consumer is faust_aiokafka.Consumer
    assert not hasattr(faust_aiokafka.AIOKafkaConsumerThread, "fetch_max_wait_ms")
    other = faust.App("not-rumgate", broker="kafka://localhost:1")
    assert type(other.transport) is faust_aiokafka.Transport
    # Two workers' apps in one process each keep their own setting.
    second = create_app(Settings(broker="localhost:1", fetch_max_wait_ms=250), quiet=True)
    assert (rt.app.transport.fetch_max_wait_ms, second.app.transport.fetch_max_wait_ms) == (37, 250)


def _record(value: dict, key: bytes | None = None, offset: int = 0):
    return SimpleNamespace(key=key, value=orjson.dumps(value), offset=offset)


def test_control_records_reach_the_backend_and_stage2():
    rt = runtime()
    t = rt.settings.topics
    override = Override(rollout=ROLLOUT.id, action="hold", actor="ana", reason="looking", at=ROLLOUT.started_at)

    async def go():
        await apply_control_record(rt, t.rollouts, _record(ROLLOUT.to_dict(), ROLLOUT.id.encode()))
        await apply_control_record(rt, t.overrides, _record(override.to_dict()))
        await apply_control_record(rt, t.overrides, _record(override.to_dict()))  # a duplicate
        for seq in (2, 1, 3):
            await apply_control_record(rt, t.verdicts_latest,
                                       _record({"rollout": ROLLOUT.id, "seq": seq}, ROLLOUT.id.encode()))

    asyncio.run(go())
    assert rt.backend.rollouts == {ROLLOUT.id: ROLLOUT} and rt.stage2.rollouts == {ROLLOUT.id: ROLLOUT}
    assert rt.backend.overrides == {ROLLOUT.id: [override]}
    assert rt.stage2.overrides == [override, override]  # as before: stage 2 is told each record
    assert rt.backend.latest[ROLLOUT.id]["seq"] == 3


def test_the_backend_publishes_rollouts_and_overrides_on_their_topics():
    rt = runtime()
    override = Override(rollout=ROLLOUT.id, action="hold", actor="ana", reason="looking", at=1)

    async def go():
        await rt.backend.publish_rollout(ROLLOUT)
        await rt.backend.publish_override(override)

    asyncio.run(go())
    [sent] = rt.rollouts.sent
    assert sent.key == ROLLOUT.id.encode() and Rollout.from_dict(orjson.loads(sent.value)) == ROLLOUT
    [sent] = rt.overrides.sent
    assert sent.key == ROLLOUT.id.encode() and Override(**orjson.loads(sent.value)) == override
    assert rt.app.producer.flushes == 2  # each is on the broker before the API answers


def test_ingested_beacons_go_to_their_topic_or_the_dead_letters():
    rt = runtime()
    rt.beacons = RecordingTopic("beacons")
    sink = ingest_sink(rt)

    async def go():
        await sink(rt.settings.topics.beacons, b"k", b"v", [])
        await sink(rt.settings.topics.dlq, b"k2", b"bad", [("rumgate-reason", b"x")])

    asyncio.run(go())
    assert [(s.key, s.value, s.headers) for s in rt.beacons.sent] == [(b"k", b"v", None)]
    assert [(s.key, s.headers) for s in rt.dlq.sent] == [(b"k2", [("rumgate-reason", b"x")])]
