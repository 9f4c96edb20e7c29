"""A broker that stops answering (frozen with SIGSTOP) while browsers send beacons to
``rumgate ingest`` on the real embedded broker.

Each request must get a clear answer within the ack bound (``RUMGATE_INGEST_ACK_TIMEOUT_S``):
503 with Retry-After, not a hang until the producer gives up. Once the broker resumes,
every beacon a request got 202 for is in ``rum.beacons`` exactly once, the ones of the
503'd requests too when their browser sends them again.
"""

from __future__ import annotations

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
