"""The Ingestor without HTTP or Kafka: batching into records, and both paths giving the same records.

A recording sink stands in for the producer (the broker tests are in
tests/integration/test_ingest.py); these check what goes into each record.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.ingest.formats import Context, parse_body
from streams.ingest.formats.fast import canonical_items
from streams.ingest.endpoint import CORS_HEADERS, IngestConfig, Ingestor, add_ingest_routes, ingest_application
from streams.ingest.endpoint import ingest_config, json_arrays
from streams.live.settings import Settings

T = 1_763_856_000_000


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, list]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: list) -> None:
        self.records.append((topic, key, value, headers))

    def beacons(self, topic: str = "rum.beacons") -> list[dict]:
        return [b for t, _, v, _ in self.records if t == topic for b in orjson.loads(v)]


def body(*beacons: dict) -> bytes:
    return b"\n".join(orjson.dumps(b) for b in beacons)


def beacon(i: int, app: str = "shop-web", **extra) -> dict:
    return {"id": f"pv-{i}", "ts": T, "app": app, "release": "r2", "session": f"s{i}", "page": "/product/9?x=1",
            "device": "mobile", "metrics": {"LCP": 2000.0 + i}, "errors": 0, **extra}


async def post(ingestor: Ingestor, raw: bytes, fast: bool) -> dict:
    ctx = Context(received_at=T + 5)
    if fast:
        items = canonical_items(raw, "application/x-ndjson", ctx)
        assert items is not None, "expected the fast path to take this body"
        return await ingestor.ingest_canonical(items, ctx)
    return await ingestor.ingest_items(parse_body(raw, "application/x-ndjson"), ctx)


def run_both(config: IngestConfig, bodies: list[bytes]) -> tuple[Recorder, Recorder, list, list]:
    out = []
    for fast in (False, True):
        sink = Recorder()

        async def go(sink=sink, fast=fast) -> list:
            ingestor = Ingestor(config, sink)
            results = [await post(ingestor, raw, fast) for raw in bodies]
            return results

        out.append((sink, asyncio.run(go())))
    (slow_sink, slow_results), (fast_sink, fast_results) = out
    return slow_sink, fast_sink, slow_results, fast_results


def test_both_paths_produce_the_same_records_and_answers() -> None:
    config = IngestConfig(linger_ms=1, session_salt="pepper", routes=("/product/:id",))
    bodies = [body(beacon(1), beacon(2, app="blog")), body(beacon(3), beacon(1)), body(beacon(4), beacon(4))]
    slow, fast, slow_results, fast_results = run_both(config, bodies)
    assert slow_results == fast_results
    assert [r["duplicates"] for r in fast_results] == [0, 1, 1]  # pv-1 again; pv-4 twice in one body
    assert slow.beacons() == fast.beacons()
    assert sorted((k, len(orjson.loads(v))) for _, k, v, _ in fast.records) == sorted(
        (k, len(orjson.loads(v))) for _, k, v, _ in slow.records)
    produced = fast.beacons()
    assert {b["id"] for b in produced} == {"pv-1", "pv-2", "pv-3", "pv-4"}
    assert all(b["page"] == "/product/:id" and len(b["session"]) == 32 and b["ts"] == T + 5 for b in produced)
    assert {k for _, k, _, _ in fast.records} == {b"shop-web", b"blog"}  # keyed by app


def test_ids_are_unique_per_app_not_across_apps() -> None:
    """The same id in two apps is two page views, on both paths; a repeat within an app is not."""
    config = IngestConfig(linger_ms=1)
    bodies = [body(beacon(1), beacon(1, app="blog")),
              body({**beacon(2), "id": "blog"}, {**beacon(3, app="blog"), "id": "shop-web"}),
              body(beacon(1, app="blog"))]
    slow, fast, slow_results, fast_results = run_both(config, bodies)
    assert slow_results == fast_results
    assert [(r["accepted"], r["duplicates"]) for r in fast_results] == [(2, 0), (2, 0), (0, 1)]
    assert sorted((b["app"], b["id"]) for b in fast.beacons()) == [
        ("blog", "pv-1"), ("blog", "shop-web"), ("shop-web", "blog"), ("shop-web", "pv-1")]


def test_a_batch_is_cut_by_beacons_not_by_requests() -> None:
    """batch_beacons counts beacons: a fast-path fragment of ten beacons counts ten."""
    config = IngestConfig(linger_ms=10_000, batch_beacons=20)
    sink = Recorder()

    async def go() -> None:
        ingestor = Ingestor(config, sink)
        tasks = [asyncio.ensure_future(post(ingestor, body(*(beacon(10 * r + k) for k in range(10))), True))
                 for r in range(4)]
        await asyncio.wait_for(asyncio.gather(*tasks), 5)  # a 10 s linger: only the count can flush

    asyncio.run(go())
    assert [len(orjson.loads(v)) for _, _, v, _ in sink.records] == [20, 20]


def test_requests_sharing_a_record_get_their_own_duplicate_counts() -> None:
    """The fast path deduplicates a whole record at flush: each request still hears how many
    of its beacons were duplicates, in the batch or before it, and none is produced twice."""
    config = IngestConfig(linger_ms=200, batch_beacons=1_000)  # concurrent requests share a record
    sink = Recorder()
    bodies = [body(beacon(1), beacon(2)), body(beacon(2), beacon(3)), body(beacon(4), beacon(4)),
              body(beacon(5), beacon(1, app="blog"))]

    async def go() -> list[dict]:
        ingestor = Ingestor(config, sink)
        first = await asyncio.wait_for(
            asyncio.gather(*(post(ingestor, raw, True) for raw in bodies)), 5)
        again = await asyncio.wait_for(  # a later record: pv-3 again
            asyncio.gather(post(ingestor, body(beacon(3), beacon(6)), True),
                           post(ingestor, body(beacon(7), beacon(8), beacon(9), beacon(10),
                                               beacon(11), beacon(12)), True)), 5)
        return first + again

    results = asyncio.run(go())
    assert [(r["accepted"], r["duplicates"]) for r in results] == [(2, 0), (1, 1), (1, 1), (2, 0), (1, 1), (6, 0)]
    assert [(k, len(orjson.loads(v))) for _, k, v, _ in sink.records] == [(b"shop-web", 5), (b"blog", 1),
                                                                           (b"shop-web", 7)]
    assert sorted((b["app"], b["id"]) for b in sink.beacons()) == sorted(
        [("shop-web", f"pv-{i}") for i in range(1, 13)] + [("blog", "pv-1")])


class FlakySink(Recorder):
    """Kafka unreachable for the first ``failures`` records, then fine."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: list) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        await super().__call__(topic, key, value, headers)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("ids", ["all", "some"])  # "some": the fast path deduplicates at request time
def test_a_retry_after_kafka_failed_is_stored_not_dropped_as_duplicates(fast: bool, ids: str) -> None:
    """The endpoint answers 503 when the record cannot be produced, and the SDK retries: the
    ids the failed record took are forgotten, so the retry is accepted, not dropped."""
    config = IngestConfig(linger_ms=1)
    sink = FlakySink(failures=1)
    beacons = [beacon(1), beacon(2), beacon(3, id=None if ids == "some" else "pv-3")]
    raw = body(*beacons)

    async def go() -> dict:
        ingestor = Ingestor(config, sink)
        with pytest.raises(ConnectionError):
            await post(ingestor, raw, fast)
        retried = await post(ingestor, raw, fast)
        again = await post(ingestor, raw, fast)  # now stored: a real re-send is a duplicate
        return retried, again

    retried, again = asyncio.run(go())
    assert (retried["accepted"], retried["duplicates"]) == (3, 0)
    assert (again["accepted"], again["duplicates"]) == ((1, 2) if ids == "some" else (0, 3))
    assert sorted(b["session"] for b in sink.beacons()) == ["s1", "s2", "s3"] + (["s3"] if ids == "some" else [])


class SlowSink(Recorder):
    """Kafka that takes ``delay_s`` to answer the first record, and then fails it or stores it."""

    def __init__(self, delay_s: float, fail_first: bool) -> None:
        super().__init__()
        self.delay_s, self.fail_first, self.first = delay_s, fail_first, True

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: list) -> None:
        if self.first:
            self.first = False
            await asyncio.sleep(self.delay_s)
            if self.fail_first:
                raise ConnectionError("broker unreachable")
        await super().__call__(topic, key, value, headers)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("ids", ["all", "some"])
@pytest.mark.parametrize("first_copy", ["fails", "is stored"])
def test_a_duplicate_of_a_record_still_on_its_way_is_answered_by_that_records_fate(
        fast: bool, ids: str, first_copy: str) -> None:
    """A client retries after its request timed out while the record is still on its way to
    Kafka: the retry's beacons are duplicates of that record's. They are 202 only once that
    record is stored; when it fails, the retry gets an error (503) and the next retry is stored."""
    config = IngestConfig(linger_ms=1, ack_timeout_s=0.3)
    sink = SlowSink(delay_s=0.45, fail_first=first_copy == "fails")
    raw = body(beacon(1), beacon(2, id=None if ids == "some" else "pv-2"))

    async def go() -> tuple:
        ingestor = Ingestor(config, sink)
        with pytest.raises(asyncio.TimeoutError):  # the first copy, not acknowledged within 0.3 s
            await post(ingestor, raw, fast)
        try:  # the retry, while the first copy is still on its way
            retried = await post(ingestor, raw, fast)
        except Exception as exc:  # noqa: BLE001 - what the handler turns into a 503
            retried = type(exc).__name__
        await asyncio.sleep(0.5)
        last = await post(ingestor, raw, fast)
        return retried, last

    retried, last = asyncio.run(go())
    pv1 = [b for b in sink.beacons() if b.get("id") == "pv-1"]
    assert len(pv1) == 1, sink.beacons()  # stored once, whichever copy
    with_ids = 1 if ids == "some" else 2
    if first_copy == "fails":  # the 503'd retry took no id: the last copy is the one stored
        assert retried == "FirstCopiesNotStored", retried
        assert (last["accepted"], last["duplicates"]) == (2, 0), last
    else:
        assert isinstance(retried, dict) and retried["duplicates"] == with_ids, retried
        assert last["duplicates"] == with_ids, last


@pytest.mark.parametrize("fast", [True, False])
def test_records_stay_under_the_byte_limit_when_beacons_are_large(fast: bool) -> None:
    """Large but valid beacons are split over several records instead of one that Kafka
    refuses (which answered 503 to every request sharing the record, and lost their beacons)."""
    config = IngestConfig(linger_ms=10_000, batch_beacons=40, record_bytes=8_000)
    sink = Recorder()
    big = "\N{GRINNING FACE}" * 300  # 1,200 bytes of UTF-8 per field, well within the field limits
    bodies = [body(*(beacon(10 * r + k, session=big, browser=big) for k in range(10))) for r in range(4)]

    async def go() -> list[dict]:
        ingestor = Ingestor(config, sink)
        return await asyncio.wait_for(asyncio.gather(*(post(ingestor, raw, fast) for raw in bodies)), 5)

    results = asyncio.run(go())
    assert [r["accepted"] for r in results] == [10, 10, 10, 10]
    sizes = [len(v) for _, _, v, _ in sink.records]
    assert len(sizes) > 1 and max(sizes) <= 8_000, sizes
    assert sorted(b["id"] for b in sink.beacons()) == sorted(f"pv-{i}" for i in range(40))


def test_json_arrays_pack_fragments_in_order_under_the_limit() -> None:
    fragments = [b'{"a":%d}' % i for i in range(50)]  # 7-8 bytes each
    for limit in (10, 11, 40, 100, 1_000):
        arrays = json_arrays(fragments, limit)
        assert [x for a in arrays for x in orjson.loads(a)] == [{"a": i} for i in range(50)]
        assert all(len(a) <= limit for a in arrays)
        # packed: no two neighbours would fit in one array
        assert all(len(a) + len(b) - 1 > limit for a, b in zip(arrays, arrays[1:]))
    assert json_arrays([b'"longer than the limit"'], 5) == [b'["longer than the limit"]']
    assert json_arrays([], 5) == []


@pytest.mark.parametrize("header", [None, "application/x-ndjson", "text/plain;charset=UTF-8",
                                    "Application/JSON ; charset=utf-8", "application/x-www-form-urlencoded",
                                    "", "nonsense", "text/plain; boundary=\"a;b\""])
def test_media_type_is_what_aiohttp_gives(header: str | None) -> None:
    """The handler reads the media type once per distinct header, the way aiohttp reads it."""
    from aiohttp.test_utils import make_mocked_request

    from streams.ingest.endpoint import _media_type

    request = make_mocked_request("POST", "/v1/beacons", headers={} if header is None else {"Content-Type": header})
    assert _media_type(header) == request.content_type


def _datadog(view_id: str, event_type: str = "view", **extra) -> dict:
    return {"type": event_type, "service": "shop-web", "version": "r2", "_dd": {"document_version": 1},
            "view": {"id": view_id, "largest_contentful_paint": 2_000_000_000}, **extra}


def test_items_that_are_not_ours_are_counted_by_their_kind_not_dead_lettered() -> None:
    """Datadog actions, bots and synthetic sessions, Boomerang XHR beacons: valid, not ours.
    What sorts them is the kind the adapter gives, not the words of the reason, so a broken
    item whose reason quotes such words is still dead-lettered with its reason."""
    from streams.ingest.formats import RejectKind, convert_items, to_canonical

    boomerang = {"v": "1.815.1", "u": "https://shop.example/p/1", "app": "shop-web", "rel": "r2"}
    items = [
        _datadog("v0", "action"),  # not a page view
        _datadog("v1", device={"type": "bot"}),  # not a real user
        _datadog("v2", session={"id": "s1", "type": "synthetics"}),  # not a real user
        {**boomerang, "http.initiator": "xhr"},  # not a page view
        {**boomerang, "pt.lcp": "are not page views"},  # broken: the reason quotes the value
        _datadog("v5"),  # a page view
    ]
    ctx = Context(received_at=T + 5)
    beacons, rejects, ignored = convert_items(items, ctx)
    assert len(beacons) == 1 and beacons == to_canonical(items, ctx)[0]
    assert rejects == [(4, "Boomerang: pt.lcp: must be a number, got 'are not page views'")]
    assert [(i, kind) for i, _, kind in ignored] == [
        (0, RejectKind.NOT_A_PAGE_VIEW), (1, RejectKind.NOT_A_REAL_USER), (2, RejectKind.NOT_A_REAL_USER),
        (3, RejectKind.NOT_A_PAGE_VIEW)]
    assert [reason for _, reason, _ in ignored] == [
        "Datadog RUM: type: 'action' events are not page views (only 'view' and 'error' events are used)",
        "Datadog RUM: device.type: 'bot' is not a real user",
        "Datadog RUM: session.type: 'synthetics' sessions are not real users",
        "Boomerang: http.initiator: 'xhr' beacons are not page views "
        "(only page loads, SPA navigations, error and unload beacons are)"]
    # to_canonical still reports every item without a beacon, in item order, as plain strings
    assert to_canonical(items, ctx)[1] == sorted([*rejects, *((i, r) for i, r, _ in ignored)])

    sink = Recorder()
    result = asyncio.run(Ingestor(IngestConfig(linger_ms=1), sink).ingest_items(items, ctx))
    assert (result["accepted"], result["rejected"], result["ignored"]) == (1, 1, 4)
    assert result["errors"] == ["item 4: Boomerang: pt.lcp: must be a number, got 'are not page views'"]
    dlq = [(value, headers) for topic, _, value, headers in sink.records if topic == "rum.beacons.dlq"]
    reason = "Boomerang: pt.lcp: must be a number, got 'are not page views'"
    assert dlq == [(orjson.dumps([{"item": items[4], "reason": reason}]), [
        ("rumgate-reason", f"1 items rejected at ingest, the first: {reason}".encode()),
        ("rumgate-items", b"1"), ("rumgate-source", b"ingest")])]


# -- request headers: CORS preflights, device and browser ----------------------------------------

HEADLESS = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                          "HeadlessChrome/156.0.0.0 Safari/537.36",
            "Sec-CH-UA": '"Not:A-Brand";v="8", "Chromium";v="156"', "Sec-CH-UA-Mobile": "?0"}


def through_handler(config: IngestConfig, requests: list[tuple[str, bytes, dict]]) -> tuple[list, Recorder]:
    """(method, body, headers) through the real handler on aiohttp's test server."""
    sink = Recorder()

    async def go():
        app = ingest_application()
        add_ingest_routes(app, Ingestor(config, sink))
        out = []
        async with TestClient(TestServer(app)) as client:
            for method, raw, headers in requests:
                response = await client.request(method, "/v1/beacons", data=raw, headers=headers)
                out.append((response.status, dict(response.headers), await response.read()))
        return out

    return asyncio.run(go()), sink


def test_a_preflight_allows_every_supported_sdks_headers_by_default() -> None:
    assert ingest_config(Settings()).cors_headers == CORS_HEADERS  # the setting's default is the endpoint's
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,idempotency-key,x-faro-session-id"}
    [(status, headers, _)], _ = through_handler(IngestConfig(), [("OPTIONS", b"", preflight)])
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    # Faro's session and idempotency key, Elastic's gzip, the snippet's and relays' app and release
    assert {"content-type", "content-encoding", "x-faro-session-id", "idempotency-key", "x-rumgate-app",
            "x-rumgate-release"} <= allowed
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"


def test_the_allowed_headers_are_a_setting() -> None:
    config = ingest_config(Settings.from_env({"RUMGATE_INGEST_CORS_HEADERS": "Content-Type, X-Tenant"}))
    [(status, headers, _)], _ = through_handler(config, [("OPTIONS", b"", {"Origin": "https://a.example"})])
    assert status == 204 and headers["Access-Control-Allow-Headers"] == "Content-Type, X-Tenant"


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "text/plain"], ids=["fast path", "general path"])
def test_device_and_browser_come_from_the_request_when_the_beacon_names_none(content_type: str) -> None:
    """Both paths give the same beacons: the request's device and browser where the beacon has none."""
    bare = beacon(1, device=None)
    del bare["device"]
    named = beacon(2, device="tablet", browser="Firefox")
    [(status, _, answer)], sink = through_handler(IngestConfig(linger_ms=1), [
        ("POST", body(bare, named), {"Content-Type": content_type, **HEADLESS})])
    assert status == 202, answer
    got = {b["id"]: (b.get("device"), b.get("browser")) for b in sink.beacons()}
    assert got == {"pv-1": ("desktop", "Chromium"), "pv-2": ("tablet", "Firefox")}


def test_a_relays_own_user_agent_describes_no_beacon() -> None:
    bare = beacon(1)
    del bare["device"]
    [(status, _, _)], sink = through_handler(IngestConfig(linger_ms=1), [
        ("POST", body(bare), {"Content-Type": "application/x-ndjson", "User-Agent": "Go-http-client/1.1"})])
    [stored] = sink.beacons()
    assert status == 202 and "device" not in stored and "browser" not in stored


def test_requests_of_one_millisecond_each_get_their_own_context() -> None:
    """The handler reuses the last request's Context when its fields are the same: requests
    of the same millisecond with other headers must still get their own app, release,
    country, device and browser (and the same ones must give the same beacons)."""
    sink = Recorder()
    config = IngestConfig(linger_ms=1, country_header="CF-IPCountry")
    bare = {k: v for k, v in beacon(0).items() if k not in ("app", "release", "device")}
    variants = [{"X-Rumgate-App": "a1", "X-Rumgate-Release": "r1"},
                {"X-Rumgate-App": "a1", "X-Rumgate-Release": "r1"},
                {"X-Rumgate-App": "a2", "X-Rumgate-Release": "r1", "CF-IPCountry": "DE"},
                {"X-Rumgate-App": "a2", "X-Rumgate-Release": "r2", "CF-IPCountry": "DE", **HEADLESS},
                {"X-Rumgate-App": "a1", "X-Rumgate-Release": "r1"}]

    async def go():
        app = ingest_application()
        add_ingest_routes(app, Ingestor(config, sink, now_ms=lambda: T))  # every request in one ms
        async with TestClient(TestServer(app)) as client:
            out = []
            for i, headers in enumerate(variants):
                raw = body({**bare, "id": f"pv-{i}"})
                response = await client.post("/v1/beacons", data=raw,
                                             headers={"Content-Type": "application/x-ndjson", **headers})
                out.append((response.status, response.headers["Content-Type"], await response.json()))
            return out

    answers = asyncio.run(go())
    assert [a[:2] for a in answers] == [(202, "application/json")] * len(variants)
    got = {b["id"]: (b["ts"], b["app"], b["release"], b.get("country"), b.get("device"), b.get("browser"))
           for b in sink.beacons()}
    assert got == {"pv-0": (T, "a1", "r1", None, None, None), "pv-1": (T, "a1", "r1", None, None, None),
                   "pv-2": (T, "a2", "r1", "DE", None, None), "pv-3": (T, "a2", "r2", "DE", "desktop", "Chromium"),
                   "pv-4": (T, "a1", "r1", None, None, None)}
