"""A broker that stops answering (frozen with SIGSTOP) while browsers send beacons to
``rumgate ingest`` on the real embedded broker.

Each request must get a clear answer within the ack bound (``RUMGATE_INGEST_ACK_TIMEOUT_S``):
503 with Retry-After, not a hang until the producer gives up. Once the broker resumes,
every beacon a request got 202 for is in ``rum.beacons`` exactly once, the ones of the
503'd requests too when their browser sends them again; and with a worker behind the
endpoint, counted exactly once in ``rum.windows``, stage 1 rebuilding what it could not send.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal

import orjson
import pytest

from tests.integration.conftest import broker  # noqa: F401 - the real broker fixture
from tests.integration.test_ingest import _endpoint, beacon, post, records

ACK_TIMEOUT_S = 1.0


@pytest.fixture
def stalling_endpoint(broker, tmp_path):
    yield from _endpoint(broker, tmp_path, RUMGATE_INGEST_RATE_LIMIT="1e9", RUMGATE_INGEST_LINGER_MS="5",
                         RUMGATE_INGEST_ACK_TIMEOUT_S=str(ACK_TIMEOUT_S))


def ndjson(ids: range) -> bytes:
    return b"\n".join(orjson.dumps(beacon(i)) for i in ids)


def test_a_frozen_broker_gives_503_with_retry_after_and_every_202_beacon_lands_once(broker, stalling_endpoint):
    url, pipeline = stalling_endpoint
    answered: dict[int, int] = {}  # first beacon id of a request → its status
    status, _, _ = post(url + "/v1/beacons", ndjson(range(0, 5)), "application/x-ndjson")
    assert status == 202  # the producer is connected before the freeze
    answered[0] = status
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        stalled = [post(url + "/v1/beacons", ndjson(range(start, start + 5)), "application/x-ndjson")
                   for start in range(5, 25, 5)]  # urllib's 10 s timeout raises if a request hangs
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    for status, answer, headers in stalled:
        assert status == 503 and headers.get("Retry-After") == "5", (status, answer)
    # the browsers send the refused beacons again; the broker answers now
    for start in range(5, 25, 5):
        status, answer, _ = post(url + "/v1/beacons", ndjson(range(start, start + 5)), "application/x-ndjson")
        assert status == 202 and answer["accepted"] + answer["duplicates"] == 5, answer
    stored = collections.Counter(b["id"] for r in records(pipeline, pipeline.topics.beacons, 5)
                                 for b in orjson.loads(r.value))
    # the 503'd records may land late (their retry's beacons are then duplicates): wait for all
    for _ in range(50):
        if len(stored) == 25:
            break
        stored = collections.Counter(b["id"] for r in records(pipeline, pipeline.topics.beacons, 5)
                                     for b in orjson.loads(r.value))
    assert stored == {f"b{i}": 1 for i in range(25)}


# -- stage 1 behind the endpoint ----------------------------------------------------------------

def test_a_checkpoint_read_that_fails_after_an_assignment_rebuilds_instead_of_skipping_the_batch():
    """The broker away just after an assignment: the first batch cannot read its partition's
    checkpoint. The partition is rebuilt (a seek back, the batch read again) rather than the
    exception ending the agent's run, after which Faust's restarted agent would count on from
    past the batch's records."""
    from tests.reliability.test_no_window_lost import VALUES, _consume, _rt, _views_judged

    async def scenario():
        want = _rt(0)
        await _consume(want, [list(range(i, i + 8)) for i in range(0, 80, 8)])

        rt = _rt(0)
        stage1 = rt.stage1
        stage1.saved = None  # revoked and assigned again: the checkpoints are read anew
        unreachable = [ConnectionError("KafkaConnectionError: Unable to bootstrap")] * 2

        async def flaky():  # the broker answers on the third try: no checkpoint stored yet
            if unreachable:
                raise unreachable.pop()
            stage1.saved = {}

        stage1.load_checkpoints = flaky
        await _consume(rt, [list(range(0, 8))])
        assert rt.app.consumer.seeks == [("rum.beacons", 0, 0)] and not unreachable
        await _consume(rt, [list(range(8, 16))])  # fetched before the seek: skipped
        await _consume(rt, [list(range(i, i + 8)) for i in range(0, 80, 8)])
        return want, rt

    want, rt = asyncio.run(scenario())
    assert not rt.backend.failing and len(VALUES) == 80
    assert _views_judged(rt) == _views_judged(want)


@pytest.fixture
def frozen_worker(broker, tmp_path):  # noqa: F811
    """A worker serving the endpoint whose producer gives a record up after 1.5 s and whose
    partitions go idle after 1 s: a freeze of a few seconds then fails stage-1 sends (the idle
    partitions' progress), as a freeze past ``RUMGATE_PRODUCER_REQUEST_TIMEOUT_S`` does."""
    from tests.integration.conftest import Pipeline

    pipeline = Pipeline(broker, tmp_path, partitions=2)
    worker = pipeline.start_worker(RUMGATE_INGEST_RATE_LIMIT="1e9", RUMGATE_INGEST_ACK_TIMEOUT_S=str(ACK_TIMEOUT_S),
                                   RUMGATE_PRODUCER_REQUEST_TIMEOUT_S="1.5", RUMGATE_IDLE_AFTER_S="1",
                                   RUMGATE_STAGE1_RETRY_S="0.2")
    try:
        from benchmarks.soak import wait_ready

        wait_ready(worker.http, worker.process)
        yield pipeline, worker
    finally:
        pipeline.stop()


def test_a_broker_frozen_under_load_counts_every_202_beacon_once_in_the_windows(broker, frozen_worker):
    """``benchmarks/broker_freeze.py`` at CI's size: steady load on the worker's endpoint, the
    broker frozen for 4 s, then every beacon a 202 answered for (and any a 503'd request still
    stored) is in ``rum.windows`` exactly once, and the worker carries on by itself."""
    from benchmarks.broker_freeze import Plan, freeze_run, passed

    pipeline, worker = frozen_worker
    plan = Plan(freeze_s=4.0, rate=400.0, before_s=3.0, after_s=3.0, drain_s=90.0, ack_timeout_s=ACK_TIMEOUT_S,
                progress_s=2.0)
    t = asyncio.run(freeze_run(plan, worker.http, broker.servers, pipeline.topics, broker.process.pid,
                               worker.process.pid, lambda: worker.process.poll() is None))
    assert set(t["by_status"]) <= {202, 503} and t["frozen_503"] > 0, t  # clear answers, none hung
    assert set(t["retry_after"]) <= {"5"}, t
    assert (t["missing"], t["twice"], t["counted"]) == (0, 0, t["stored"]) and passed(t), t
    assert t["alive"] and t["agent_crashes"] == 0 and t["windows_after_thaw"] > 0, t


def test_a_retry_answered_as_duplicates_while_the_first_copy_is_unacknowledged_is_still_stored(broker, tmp_path):  # noqa: F811
    """Clients that retry after ``Retry-After`` while the broker stays frozen longer than the
    retry but shorter than the producer's give-up time (here 1 s ack bound, Retry-After 5 s,
    the producer giving a record up after 8 s, a 10-s freeze): every beacon a 202 answered for
    must be stored, the ones answered as duplicates too."""
    from benchmarks.broker_freeze import Plan, freeze_run, passed
    from benchmarks.soak import wait_ready
    from tests.integration.conftest import Pipeline

    pipeline = Pipeline(broker, tmp_path, partitions=1)
    worker = pipeline.start_worker(RUMGATE_INGEST_RATE_LIMIT="1e9", RUMGATE_INGEST_ACK_TIMEOUT_S=str(ACK_TIMEOUT_S),
                                   RUMGATE_PRODUCER_REQUEST_TIMEOUT_S="8")
    try:
        wait_ready(worker.http, worker.process)
        plan = Plan(freeze_s=10.0, rate=200.0, before_s=2.0, after_s=2.0, drain_s=90.0,
                    ack_timeout_s=ACK_TIMEOUT_S, progress_s=5.0, retries=2)
        t = asyncio.run(freeze_run(plan, worker.http, broker.servers, pipeline.topics, broker.process.pid,
                                   worker.process.pid, lambda: worker.process.poll() is None))
    finally:
        pipeline.stop()
    assert t["duplicates"] > 0 and t["closed"], t  # retries met unacknowledged first copies
    # A record the producer gave up on can still land after the freeze, beside its retry's
    # copy: stored at least once, and counted once (stage 1 joins copies of one id).
    assert (t["missing"], t["counted"]) == (0, t["stored"]) and passed(t), t
