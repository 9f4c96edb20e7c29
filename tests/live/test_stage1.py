"""Stage 1's dead letters and the metrics an operator reads, on the worker's own app
(:func:`tests.live.test_agents.runtime`: sends recorded, nothing on the network)."""

from __future__ import annotations

import asyncio

import orjson

from streams.live.runtime import dead_letter_records
from tests.live.test_agents import T0, beacon, deliver, runtime, until
from tests.reliability.test_no_window_lost import Event, FailingSends, Message, SeekingConsumer


def _sample(rt, name: str, **labels: str) -> float:
    return rt.backend.metrics.registry.get_sample_value(name, labels or None) or 0.0


def test_a_record_of_a_thousand_cohort_cap_refusals_is_one_dead_letter_record_holding_every_item():
    rt = runtime(max_cohorts_per_window=2)
    flood = orjson.dumps([{"ts": T0 + 10, "app": "shop-web", "release": f"r{i}"} for i in range(1000)])
    mixed = b"\n".join([beacon(T0 + 20, release="r0"), b'{"ts": "later", "app": "shop-web", "release": "r0"}', b"[1"])

    async def go():
        await rt.stage1.process(0, [Event(Message(0, flood)), Event(Message(1, mixed))])

    asyncio.run(go())
    first, second = rt.dlq.sent
    assert (first.key, second.key) == (b"0:0", b"0:1")
    members = orjson.loads(first.value)
    assert len(members) == 998 and [m["item"] for m in members] == list(range(2, 1000))
    assert {m["encoding"] for m in members} == {"utf-8"}
    assert orjson.loads(members[0]["raw"])["release"] == "r2"
    headers = dict(first.headers)
    assert headers["rumgate-items"] == b"998" and headers["rumgate-offset"] == b"0"
    assert headers["rumgate-reason"].startswith(b"998 items rejected at stage 1, the first: ")
    assert [m["item"] for m in orjson.loads(second.value)] == [1, 2]  # the record's two bad lines
    assert rt.stats["dead_letters"] == 1000  # items
    assert {kind: _sample(rt, "rumgate_dead_letters_total", reason=kind) for kind in ("cohort_cap", "ts", "not_json")} \
        == {"cohort_cap": 998, "ts": 1, "not_json": 1}


def test_bytes_that_are_not_utf8_travel_as_base64_and_a_large_batch_is_split_under_the_limit():
    from detectors.pipeline.aggregate import DeadLetter

    rejects = [DeadLetter(3, None, b"\xff\xfe" * 10, "record: not valid JSON or NDJSON")]
    [(_, value, _)] = dead_letter_records(1, rejects)
    [member] = orjson.loads(value)
    assert member["encoding"] == "base64" and member["item"] is None
    many = [DeadLetter(4, i, b'{"release":"' + b"x" * 100 + b'"}', "cap") for i in range(100)]
    records = dead_letter_records(1, many, max_bytes=2000)
    assert len(records) > 1 and all(len(v) <= 2000 for _, v, _ in records)
    assert [m["item"] for _, v, _ in records for m in orjson.loads(v)] == list(range(100))
    assert {dict(h)["rumgate-items"] for _, _, h in records} == {b"100"}  # the source record's count


def test_page_views_over_the_session_cap_are_counted_as_they_are_published():
    rt = runtime(max_views_per_session=3)
    views = [orjson.dumps({"ts": T0 + i, "app": "shop-web", "release": "r2", "session": "s1"}) for i in range(10)]

    async def go():
        events = [Event(Message(i, v)) for i, v in enumerate(views)]
        await rt.stage1.process(0, events)
        assert _sample(rt, "rumgate_capped_page_views_total") == 0  # the window is still open
        await rt.stage1.process(0, [Event(Message(10, beacon(T0 + 6000)))])

    asyncio.run(go())
    assert _sample(rt, "rumgate_capped_page_views_total") == 7


def test_the_failing_partitions_gauge_follows_the_rebuilds():
    rt = runtime(stage1_retry_s=0.0, stage1_retry_max_s=0.0)
    rt.app.consumer = SeekingConsumer()
    rt.windows = FailingSends(rt.windows, failures=1)

    async def go():
        await rt.stage1.process(0, [Event(Message(0, beacon(T0)))])
        failing = _sample(rt, "rumgate_stage1_failing_partitions")
        await rt.stage1.process(0, [Event(Message(0, beacon(T0)))])  # the re-read from the checkpoint
        return failing

    failing = asyncio.run(go())
    assert failing == 1 and _sample(rt, "rumgate_stage1_send_failures_total") == 1
    assert _sample(rt, "rumgate_stage1_failing_partitions") == 0


def test_an_exception_in_the_aggregate_agent_is_counted_as_a_crash():
    rt = runtime()

    async def boom(p, events):
        raise RuntimeError("boom")

    rt.stage1.process = boom

    aggregate = rt.app.agents["aggregate"]

    async def go():  # the test context replaces the agent's error hook: it is handed on
        async with aggregate.test_context(on_error=aggregate._on_error) as agent:
            await deliver(agent, beacon(T0))
            await until(lambda: _sample(rt, "rumgate_agent_crashes_total", agent="aggregate") == 1)

    try:
        asyncio.run(go())
    except RuntimeError as exc:  # the test context's supervisor raises what crashed the agent
        assert "boom" in str(exc)
    assert _sample(rt, "rumgate_agent_crashes_total", agent="aggregate") == 1


def test_an_idle_partition_drops_its_answered_sends_and_a_refused_one_rebuilds_it():
    from faust.types import TP

    from tests.reliability.test_no_window_lost import RefusedDelivery

    rt = runtime(stage1_retry_s=0.0, stage1_retry_max_s=0.0)
    beacons = rt.settings.topics.beacons
    consumer = SeekingConsumer()
    consumer.assignment = lambda: {TP(beacons, 0)}
    rt.app.consumer = consumer

    async def beat(n: int) -> None:
        for _ in range(n):
            rt.stage1.last_record_at[0] = 0.0  # quiet for long
            await rt.stage1.heartbeat()

    async def go():
        await rt.stage1.heartbeat()
        await beat(50)
        answered = len(rt.stage1.unconfirmed[0])
        rt.windows = RefusedDelivery(rt.windows)
        await beat(2)  # the first refusal is seen at the next beat
        return answered

    answered = asyncio.run(go())
    assert answered <= 1  # not one per beat
    assert _sample(rt, "rumgate_stage1_send_failures_total") == 1 and rt.backend.failing


def test_page_views_forgotten_early_are_a_gauge():
    rt = runtime(view_slots=4)  # one bucket of 4 ways: a fifth page view alive forgets the oldest
    views = [orjson.dumps({"ts": T0 + i, "app": "shop-web", "release": "r2", "view": f"v{i}"}) for i in range(10)]

    async def go():
        await rt.stage1.process(0, [Event(Message(i, v)) for i, v in enumerate(views)])

    assert _sample(rt, "rumgate_page_views_forgotten_early") == 0
    asyncio.run(go())
    assert _sample(rt, "rumgate_page_views_forgotten_early") == 6
