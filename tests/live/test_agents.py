"""The worker's agents without a broker: Faust's ``agent.test_context()`` feeds them events.

The app is the worker's own (:func:`streams.live.app.create_app`); only what would reach
the network is replaced: the topics the stages publish to record what is sent, the
producer's ``flush`` does nothing, and the checkpoints and published verdicts a worker
reads back on assignment start empty.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

import orjson
import pytest

from detectors.pipeline.aggregate import PartitionAggregator
from detectors.pipeline.judge import Judge, WindowsRecord
from detectors.policy import parse_policy
from detectors.rollout import Rollout
from streams.live.app import create_app
from streams.live.runtime import Runtime
from streams.live.settings import Settings
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons

T0 = 1763856000000  # a window boundary (5 s windows)


@dataclass
class Sent:
    key: bytes | None
    value: bytes
    partition: int | None
    headers: list | None


class RecordingTopic:
    """Stands in for a faust topic: remembers each send."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Sent] = []

    async def send(self, *, key=None, value=None, partition=None, headers=None):
        self.sent.append(Sent(key, value, partition, headers))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class QuietProducer:
    flushes = 0

    async def flush(self) -> None:
        self.flushes += 1


PUBLISHED = ("dlq", "windows", "checkpoints", "verdicts", "verdicts_latest", "rollouts", "overrides")


def runtime(**settings) -> Runtime:
    s = Settings(broker="localhost:1", app_id="rumgate-unit", window_ms=5000, lateness_ms=0,
                 batch_within_s=0.01, **settings)
    rt = create_app(s, 2, quiet=True)
    for name in PUBLISHED:
        setattr(rt, name, RecordingTopic(name))
    rt.app.producer = QuietProducer()
    rt.stage1.saved = {}  # nothing on rum.checkpoints yet
    return rt


def beacon(ts: int, app: str = "shop-web", release: str = "r2") -> bytes:
    return orjson.dumps({"ts": ts, "app": app, "release": release})


async def deliver(agent, value: bytes, *, partition: int = 0, key: bytes | None = None):
    """What ``agent.put`` does, plus the reference Faust's conductor takes for the one stream.

    A consumed message arrives with one reference per stream that reads it; ``put`` takes
    none, so the stream's own ack would then commit an offset stage 1 still holds.
    """
    message = agent.to_message(key, value, partition=partition, offset=agent.sent_offset)
    message.incref()
    channel = agent.stream().channel
    event = await channel.decode(message)
    await channel.put(event)
    agent.sent_offset += 1
    return event


async def until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {condition.__code__.co_names}")
        await asyncio.sleep(0.005)


def test_register_declares_the_agents_timers_and_tasks():
    rt = runtime()
    assert sorted(rt.app.agents) == ["aggregate", "judge"]
    assert rt.app.agents["aggregate"].channel is not None
    assert rt.backend.publish_rollout is not None and rt.backend.history is not None


def test_aggregate_publishes_windows_dead_letters_and_checkpoints_then_acks():
    rt = runtime()

    async def go():
        async with rt.app.agents["aggregate"].test_context() as agent:
            events = []
            for ts in (T0 + 100, T0 + 4000):
                events.append(await deliver(agent, beacon(ts), key=b"s"))
            events.append(await deliver(agent, b"oops", key=b"s"))
            await until(lambda: rt.stats["records"] == 3)
            assert rt.windows.sent[-1].value and not rt.checkpoints.sent  # nothing closed yet
            events.append(await deliver(agent, beacon(T0 + 6000), key=b"s"))  # closes window 0
            # The acks follow the checkpoint's confirmation: wait for the last one due.
            await until(lambda: rt.checkpoints.sent and events[2].message.acked)
            return [e.message.acked for e in events], [e.message.offset for e in rt.stage1.held[0]]

    acked, held = asyncio.run(go())
    assert rt.stats == {**rt.stats, "beacons": 3, "records": 4, "dead_letters": 1, "windows": 1}
    [dead] = rt.dlq.sent
    assert dead.key == b"0:2" and dead.partition == 0
    assert orjson.loads(dead.value) == [{"item": None, "reason": "record: not valid JSON or NDJSON", "raw": "oops",
                                         "encoding": "utf-8"}]
    assert dict(dead.headers) == {"rumgate-reason": b"1 item rejected at stage 1, the first: record: not valid "
                                                    b"JSON or NDJSON",
                                  "rumgate-items": b"1", "rumgate-source": b"stage1",
                                  "rumgate-partition": b"0", "rumgate-offset": b"2"}
    records = [WindowsRecord.from_dict(orjson.loads(s.value)) for s in rt.windows.sent]
    assert {s.partition for s in rt.windows.sent} == {0} and {s.key for s in rt.windows.sent} == {b"0"}
    [window] = [r for r in records if r.summaries]
    assert (window.source, window.closed_before, [s.start for s in window.summaries]) == (0, T0 + 5000, [T0])
    assert window.summaries[0].page_views == 2
    assert records[-1] == WindowsRecord(0, T0 + 5000, False, [])  # the partition's progress comes last
    # views_from 0: the page views of every record so far may still be joined
    assert [orjson.loads(s.value) for s in rt.checkpoints.sent] == [{"offset": 3, "watermark": T0 + 4000, "views_from": 0}]
    assert rt.checkpoints.sent[0].key == b"0"
    # Offsets below the checkpoint are acknowledged; the record still in an open window is held.
    assert acked == [True, True, True, False]
    assert held == [3]


def test_aggregate_keeps_partitions_apart():
    rt = runtime()

    async def go():
        async with rt.app.agents["aggregate"].test_context() as agent:
            await deliver(agent, beacon(T0 + 100), partition=0)
            await deliver(agent, beacon(T0 + 200), partition=1)
            await until(lambda: rt.stats["records"] == 2)  # a checkpoint falls between batches
            await deliver(agent, beacon(T0 + 9000), partition=1)
            await until(lambda: rt.stats["records"] == 3 and rt.checkpoints.sent)

    asyncio.run(go())
    assert sorted(rt.stage1.aggs) == [0, 1]
    assert [s.key for s in rt.checkpoints.sent] == [b"1"]  # only partition 1 closed a window
    closed = [WindowsRecord.from_dict(orjson.loads(s.value)) for s in rt.windows.sent]
    assert [r.source for r in closed if r.summaries] == [1]


SC = replace(SCENARIOS["stationary"], duration_s=300.0, regressions=(Regression("LCP", 1.25),))
POLICY = parse_policy("name: fast\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 0s\nmin_duration: 2m\n")
ROLLOUT = Rollout("shop-web:canary", SC.app, SC.canary, SC.baseline, SC.start_ms, POLICY)


@pytest.fixture(scope="module")
def windows_records() -> list[WindowsRecord]:
    """Stage 1's records for one partition of the simulated rollout (as the aggregate agent sends)."""
    agg = PartitionAggregator(0)
    records = [orjson.dumps(b) for b in generate_beacons(SC, seed=5)]
    out = []
    for i in range(0, len(records), 500):
        step = agg.process([(i + j, r) for j, r in enumerate(records[i:i + 500])])
        out.append(WindowsRecord(0, agg.closed_before, False, step.closed))
    step = agg.advance(agg.watermark + 60_000)
    out.append(WindowsRecord(0, agg.closed_before, False, step.closed))
    return out


def _expected(records: list[WindowsRecord]) -> list[dict]:
    judge = Judge(1)
    verdicts = judge.apply_rollout(ROLLOUT)
    for r in records:
        verdicts += judge.add(r)
    return [v.to_dict() for v in verdicts]


def _without_emitted(body: bytes) -> dict:
    d = orjson.loads(body)
    d.pop("emitted_at")
    return d


def test_judge_publishes_the_verdicts_of_the_windows_it_is_given(windows_records):
    rt = runtime(beacons_partitions=1)
    rt.sources = 1

    async def go():
        await rt.stage2.on_rollout(ROLLOUT)  # no judge yet: remembered for the partition's judge
        async with rt.app.agents["judge"].test_context() as agent:
            await deliver(agent, b"not a windows record")  # logged and skipped
            for r in windows_records:
                await deliver(agent, orjson.dumps(r.to_dict()), key=b"0")
            want = len(_expected(windows_records))
            await until(lambda: len(rt.verdicts.sent) >= want)

    asyncio.run(go())
    want = [{k: v for k, v in d.items() if k != "emitted_at"} for d in _expected(windows_records)]
    assert want and want[-1]["verdict"] == "rollback"
    assert [_without_emitted(s.value) for s in rt.verdicts.sent] == want
    assert [s.value for s in rt.verdicts_latest.sent] == [s.value for s in rt.verdicts.sent]
    assert {s.key for s in rt.verdicts.sent} == {ROLLOUT.id.encode()}
    assert rt.stats["verdicts"] == len(want)
    assert rt.stage2.published[ROLLOUT.id] == want[-1]["seq"]


def test_judge_does_not_republish_what_was_published_before_a_restart(windows_records):
    rt = runtime(beacons_partitions=1)
    rt.sources = 1
    want = _expected(windows_records)
    rt.stage2.published[ROLLOUT.id] = want[-2]["seq"]  # as read back from rum.verdicts.latest

    async def go():
        await rt.stage2.on_rollout(ROLLOUT)
        async with rt.app.agents["judge"].test_context() as agent:
            for r in windows_records:
                await deliver(agent, orjson.dumps(r.to_dict()), key=b"0")
            await until(lambda: rt.verdicts.sent)
            await asyncio.sleep(0.05)

    asyncio.run(go())
    assert [orjson.loads(s.value)["seq"] for s in rt.verdicts.sent] == [want[-1]["seq"]]


def test_heartbeat_reports_a_quiet_partition_as_idle():
    from faust.types import TP

    rt = runtime()
    beacons = rt.settings.topics.beacons
    rt.app.consumer = type("Assigned", (), {"assignment": lambda self: {TP(beacons, 0), TP("other", 1)}})()

    async def go():
        await rt.stage1.heartbeat()  # first sight of partition 0: the clock starts
        assert rt.windows.sent == []
        rt.stage1.last_record_at[0] -= rt.settings.idle_after_s + 1
        await rt.stage1.heartbeat()

    asyncio.run(go())
    assert rt.stage1.assigned == {0}
    assert [WindowsRecord.from_dict(orjson.loads(s.value)) for s in rt.windows.sent] == [
        WindowsRecord(0, None, True, [])]
