"""POST /v1/beacons under attack and under faults, through the real handler (aiohttp's test
server) with an in-memory sink; the broker's own stall is in test_broker_stall.py.

Each case is one an anonymous client could cause: many junk items or apps in one body, a
body that cannot be inflated or is nested too deeply, a sink that never acknowledges,
clients behind one ingress, one client sending more page views than real users do, and
beacons of a release that is not out.
"""

from __future__ import annotations

import asyncio
import gzip

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from detectors.rollout import Rollout
from streams.http.backend import Backend
from streams.ingest.endpoint import IngestConfig, Ingestor, add_ingest_routes
from streams.live.serving import releases_of
from streams.live.settings import Settings
from streams.live.topics import BrokerError, ensure_topics

T = 1_763_856_000_000
DLQ = "rum.beacons.dlq"


class Recorder:
    """The sink: every record it was given, acknowledged at once."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, list]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: list) -> None:
        self.records.append((topic, key, value, headers))

    def of(self, topic: str) -> list[tuple[bytes, dict]]:
        return [(value, dict(headers)) for t, _, value, headers in self.records if t == topic]


class Stalled(Recorder):
    """A sink whose records Kafka never acknowledges (a frozen broker)."""

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: list) -> None:
        self.records.append((topic, key, value, headers))
        await asyncio.Event().wait()


def beacon(i: int, app: str = "shop-web", release: str = "r2", **extra) -> dict:
    return {"id": f"pv-{i}", "ts": T, "app": app, "release": release, "session": f"s{i}", "page": "/p",
            "device": "mobile", "metrics": {"LCP": 2000.0}, "errors": 0, **extra}


def ndjson(*beacons: dict) -> bytes:
    return b"\n".join(map(orjson.dumps, beacons))


def run(config: IngestConfig, sink, requests, releases=None) -> list[tuple[int, dict, dict]]:
    """POST each ``(body, headers)`` in turn; each answer's status, JSON and headers."""
    async def go():
        app = web.Application()
        add_ingest_routes(app, Ingestor(config, sink, **({"releases_of": releases} if releases else {})))
        answers = []
        async with TestClient(TestServer(app)) as client:
            for raw, headers in requests:
                response = await client.post("/v1/beacons", data=raw,
                                             headers={"Content-Type": "application/json", **headers})
                answers.append((response.status, await response.json(), dict(response.headers)))
        return answers
    return asyncio.run(asyncio.wait_for(go(), 60))  # a guard against a hang, not a timing


def test_a_body_of_20000_junk_items_is_a_few_dlq_records_holding_every_item_and_its_reason() -> None:
    sink = Recorder()
    [(status, answer, _)] = run(IngestConfig(), sink, [(b"[" + b",".join([b"1"] * 20_000) + b"]", {})])
    assert status == 400 and answer["rejected"] == 20_000
    dead = sink.of(DLQ)
    assert 1 <= len(dead) <= 20, f"{len(dead)} dead-letter records for one request"  # one each before
    members = [m for value, _ in dead for m in orjson.loads(value)]
    assert len(members) == 20_000 and {m["item"] for m in members} == {1}
    assert all(m["reason"] for m in members)
    assert all(h["rumgate-source"] == b"ingest" and h["rumgate-items"] == b"20000" for _, h in dead)


def test_a_request_naming_120_apps_makes_at_most_max_apps_records_and_rejects_the_rest() -> None:
    for fast in (True, False):  # every beacon with an id takes the fast path; none the general one
        sink = Recorder()
        beacons = [beacon(i, app=f"app-{i}") if fast else {**beacon(i, app=f"app-{i}"), "id": None}
                   for i in range(120)]
        [(status, answer, _)] = run(IngestConfig(max_apps=16), sink, [(ndjson(*beacons), {})])
        assert status == 202 and (answer["accepted"], answer["rejected"]) == (16, 104), fast
        assert len(sink.of("rum.beacons")) == 16
        [(value, headers)] = sink.of(DLQ)
        rejected = orjson.loads(value)
        assert [m["item"]["app"] for m in rejected] == [f"app-{i}" for i in range(16, 120)]
        assert rejected[0]["reason"] == "ingest: more than 16 apps in one request"


def test_beyond_max_batch_apps_waiting_for_a_record_new_apps_are_rejected_with_the_reason() -> None:
    sink = Recorder()

    async def go():
        app = web.Application()
        # a long linger keeps the first requests' batches open while the third comes
        ingestor = Ingestor(IngestConfig(max_apps=16, max_batch_apps=20, linger_ms=500), sink)
        add_ingest_routes(app, ingestor)
        async with TestClient(TestServer(app)) as client:
            async def post(r: int):
                body = ndjson(*(beacon(10 * r + i, app=f"app-{10 * r + i}", id=None) for i in range(10)))
                response = await client.post("/v1/beacons", data=body)
                return response.status, await response.json()
            first = [asyncio.ensure_future(post(r)) for r in range(2)]
            while len(ingestor.batches) < 20:
                await asyncio.sleep(0.01)
            third = await post(2)
            return [*(await asyncio.gather(*first)), third]
    answers = asyncio.run(asyncio.wait_for(go(), 20))
    assert [status for status, _ in answers] == [202, 202, 400], answers
    assert answers[2][1]["rejected"] == 10
    [(value, _)] = sink.of(DLQ)
    assert {m["reason"] for m in orjson.loads(value)} == {"ingest: more than 20 apps waiting for a record; retry later"}


@pytest.mark.parametrize("raw", [b"\x1f\x8b\x08\x00" + bytes(range(40)), ndjson(beacon(1)),
                                 gzip.compress(ndjson(beacon(1))) + b"\x00garbage"],
                         ids=["garbage after the header", "not compressed", "garbage after the stream"])
def test_a_body_that_is_not_valid_gzip_is_a_400_naming_the_encoding(raw: bytes) -> None:
    [(status, answer, _)] = run(IngestConfig(), Recorder(), [(raw, {"Content-Encoding": "gzip"})])
    assert status == 400 and "Content-Encoding 'gzip'" in answer["error"]


def test_deep_nesting_in_an_unknown_field_of_a_canonical_beacon_is_a_400_saying_so() -> None:
    raw = ndjson(beacon(1))[:-1] + b',"x":' + b"[" * 2_000 + b"]" * 2_000 + b"}"
    sink = Recorder()
    [(status, answer, _)] = run(IngestConfig(), sink, [(raw, {})])
    assert status == 400 and "depth limit exceeded" in answer["error"], answer  # the general path's reason


def test_a_sink_that_never_acknowledges_gives_503_with_retry_after_past_the_ack_bound() -> None:
    sink = Stalled()
    [(status, answer, headers)] = run(IngestConfig(ack_timeout_s=0.2, linger_ms=1), sink, [(ndjson(beacon(1)), {})])
    assert status == 503 and headers["Retry-After"] == "5" and "retry later" in answer["error"]
    assert sink.of("rum.beacons")  # the record was handed over: it may still land, once


def test_beyond_max_waiting_requests_waiting_for_acks_a_request_gets_503_at_once() -> None:
    async def go():
        app = web.Application()
        ingestor = Ingestor(IngestConfig(ack_timeout_s=30, max_waiting=2, linger_ms=1), Stalled())
        add_ingest_routes(app, ingestor)
        async with TestClient(TestServer(app)) as client:
            post = lambda i: client.post("/v1/beacons", data=ndjson(beacon(i)))  # noqa: E731
            waiting = [asyncio.ensure_future(post(i)) for i in range(2)]
            while ingestor.waiting < 2:
                await asyncio.sleep(0.01)
            response = await post(3)
            status, answer = response.status, await response.json()
            for task in waiting:
                task.cancel()
            return status, answer, response.headers.get("Retry-After")
    status, answer, retry_after = asyncio.run(asyncio.wait_for(go(), 20))
    assert (status, retry_after) == (503, "5") and "2 requests are waiting" in answer["error"]


def test_behind_a_trusted_proxy_each_client_has_its_own_rate_limit_and_forged_hops_do_not_count() -> None:
    config = IngestConfig(rate_per_s=0.001, burst=1, client_header="X-Forwarded-For", trusted_hops=1)
    requests = [(ndjson(beacon(1)), {"X-Forwarded-For": "198.51.100.1"}),
                (ndjson(beacon(2)), {"X-Forwarded-For": "198.51.100.2"}),  # another browser
                (ndjson(beacon(3)), {"X-Forwarded-For": "10.9.9.9, 198.51.100.1"})]  # the first, forging
    statuses = [status for status, _, _ in run(config, Recorder(), requests)]
    assert statuses == [202, 202, 429]
    # without the setting every request is the socket's peer: one bucket
    statuses = [status for status, _, _ in run(IngestConfig(rate_per_s=0.001, burst=1), Recorder(), requests)]
    assert statuses == [202, 429, 429]


def test_one_client_sending_63_views_has_60_counted_and_3_capped_not_refused() -> None:
    sink = Recorder()
    for fast in (True, False):
        beacons = [beacon(i) if fast else {**beacon(i), "id": None} for i in range(63)]
        sink = Recorder()
        [(status, answer, _)] = run(IngestConfig(client_views=60, client_window_s=3600), sink,
                                    [(ndjson(*beacons[:40]), {}), (ndjson(*beacons[40:]), {})])[-1:]
        assert status == 202 and (answer["accepted"], answer["capped"]) == (20, 3), fast
        assert sum(len(orjson.loads(v)) for v, _ in sink.of("rum.beacons")) == 60


def test_beacons_of_a_release_the_app_may_not_report_go_to_the_dlq_with_the_reason() -> None:
    backend = Backend()
    rollout = Rollout.from_dict({"id": "r-1", "app": "shop-web", "canary": "r2", "baseline": "r1",
                                 "started_at": T, "policy": {}})
    backend.rollouts[rollout.id] = rollout
    for setting, releases in (("open", releases_of(backend)), ("list:r1,r2", None)):
        sink = Recorder()
        body = ndjson(beacon(1, release="r2"), beacon(2, release="r1"), beacon(3, release="r9"))
        [(status, answer, _)] = run(IngestConfig(releases=setting), sink, [(body, {})], releases)
        assert status == 202 and (answer["accepted"], answer["rejected"]) == (2, 1), setting
        [(value, _)] = sink.of(DLQ)
        [dead] = orjson.loads(value)
        assert dead["item"]["release"] == "r9" and "release 'r9' is not one app 'shop-web' may report" in dead["reason"]


def test_a_worker_whose_broker_never_answers_says_why() -> None:
    """A listener that accepts and never replies: the admin client times out, an exception
    whose message is empty, and the error still names it."""
    async def go() -> str:
        server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await ensure_topics(Settings.from_env({}, broker=f"kafka://127.0.0.1:{port}"), timeout_s=0.5)
        except BrokerError as exc:
            return str(exc)
        finally:
            server.close()
        return "no error"
    message = asyncio.run(go())
    assert message.startswith("cannot reach the broker at kafka://127.0.0.1:") and message.endswith(": TimeoutError"), message


def test_the_workers_producer_gives_up_on_a_stalled_broker_after_the_setting_not_20_minutes() -> None:
    from streams.live.app import build_app

    for env, expected in (({}, Settings().producer_request_timeout_s), ({"RUMGATE_PRODUCER_REQUEST_TIMEOUT_S": "7"}, 7.0)):
        app = build_app(Settings.from_env(env, broker="kafka://127.0.0.1:9092"), 4)
        assert app.conf.producer_request_timeout == expected < 1200, env  # Faust's own default: 1,200 s
