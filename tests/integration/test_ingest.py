"""`POST /v1/beacons` on a real broker: formats in, canonical beacons in rum.beacons, refusals."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from streams.live.broker import free_port, wait_for_port
from tests.integration.conftest import REPO, Pipeline

T = 1_763_856_000_000


@pytest.fixture
def endpoint(broker, tmp_path):
    """`rumgate ingest` as a process, on its own topics; yields (base URL, pipeline)."""
    yield from _endpoint(broker, tmp_path, RUMGATE_INGEST_RATE_LIMIT="5", RUMGATE_INGEST_LINGER_MS="5")


@pytest.fixture
def busy_endpoint(broker, tmp_path):
    """The same, without a rate limit and with a long linger: many requests share a record."""
    yield from _endpoint(broker, tmp_path, RUMGATE_INGEST_RATE_LIMIT="1e9", RUMGATE_INGEST_LINGER_MS="500")


def _endpoint(broker, tmp_path, **settings: str):
    pipeline = Pipeline(broker, tmp_path)
    port = free_port()
    env = {**pipeline.env(), "RUMGATE_HTTP": f"127.0.0.1:{port}",
           "RUMGATE_INGEST_CORS_ORIGINS": "https://shop.example", "RUMGATE_INGEST_COUNTRY_HEADER": "CF-IPCountry",
           "RUMGATE_INGEST_SESSION_SALT": "pepper", "RUMGATE_INGEST_ROUTES": "/product/:id", **settings}
    log = open(tmp_path / "ingest.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "streams", "ingest"], env=env, cwd=REPO,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port("127.0.0.1", port, 30), (tmp_path / "ingest.log").read_text()
        yield f"http://127.0.0.1:{port}", pipeline
    finally:
        process.terminate()
        process.wait(10)


def post(url: str, body: bytes, content_type: str = "application/json", headers: dict | None = None,
         method: str = "POST") -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, (orjson.loads(raw) if raw else {}), dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, (orjson.loads(raw) if raw else {}), dict(exc.headers)


def beacon(i: int, **extra) -> dict:
    return {"id": f"b{i}", "ts": T, "app": "shop-web", "release": "r2", "session": f"s{i}",
            "page": "/product/123?utm_source=mail#top", "device": "mobile",
            "metrics": {"LCP": 2000.0 + i, "CLS": 0.01}, "errors": 0, **extra}


def records(pipeline, topic: str, n: int, timeout_s: float = 15.0) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pipeline.read(topic)
        if len(got) >= n:
            return got
        time.sleep(0.2)
    return pipeline.read(topic)


def test_beacons_of_every_body_kind_arrive_canonical_and_private(endpoint):
    url, pipeline = endpoint
    before = int(time.time() * 1000)
    status, body, _ = post(url + "/v1/beacons", orjson.dumps(beacon(1)), headers={"CF-IPCountry": "de"})
    assert (status, body["accepted"], body["rejected"]) == (202, 1, 0), body
    ndjson = b"\n".join(orjson.dumps(beacon(i)) for i in (2, 3, 4))
    assert post(url + "/v1/beacons", ndjson, "application/x-ndjson")[1]["accepted"] == 3
    assert post(url + "/v1/beacons", orjson.dumps([beacon(5), beacon(6)]), "text/plain;charset=UTF-8")[1][
        "accepted"] == 2
    got = [b for r in records(pipeline, pipeline.topics.beacons, 3) for b in orjson.loads(r.value)]
    assert sorted(b["id"] for b in got) == [f"b{i}" for i in range(1, 7)]
    first = next(b for b in got if b["id"] == "b1")
    assert first["ts"] >= before and first["client_ts"] == T  # event time is the receive time
    assert first["page"] == "/product/:id"  # route template; the query string never kept
    assert first["country"] == "DE"
    assert first["session"] != "s1" and len(first["session"]) == 32  # hashed with the salt
    raw = b"".join(r.value for r in pipeline.read(pipeline.topics.beacons))
    assert b"127.0.0.1" not in raw and b"utm_source" not in raw
    assert all(r.key == b"shop-web" for r in pipeline.read(pipeline.topics.beacons))


def test_a_partly_bad_batch_is_accepted_in_part_and_the_rest_goes_to_the_dlq(endpoint):
    url, pipeline = endpoint
    bad = beacon(8, metrics={"LCP": -5.0})
    status, body, _ = post(url + "/v1/beacons", orjson.dumps([beacon(7), bad]))
    assert status == 202 and (body["accepted"], body["rejected"]) == (1, 1)
    assert "LCP" in body["errors"][0]
    dead = records(pipeline, pipeline.topics.dlq, 1)
    assert len(dead) == 1 and "LCP" in dict(dead[0].headers)["rumgate-reason"].decode()
    [member] = orjson.loads(dead[0].value)  # one record per request: its rejected items and reasons
    assert member["item"]["id"] == "b8" and "LCP" in member["reason"]


def test_refusals_say_what_is_wrong(endpoint):
    url, _ = endpoint
    status, body, _ = post(url + "/v1/beacons", b'{"ts": 1, "app":')
    assert status == 400 and "malformed" in body["error"]
    status, body, _ = post(url + "/v1/beacons", b"x" * (64 * 1024 + 1))
    assert status == 413 and "limit" in body["error"]
    status, body, _ = post(url + "/v1/beacons", orjson.dumps({"hello": "world"}))
    assert status == 400 and "unrecognised format" in body["error"]
    status, body, _ = post(url + "/v1/beacons", orjson.dumps(beacon(9)), headers={"Origin": "https://evil.example"})
    assert status == 403 and "origin" in body["error"]


def test_cors_preflight_and_allowed_origin(endpoint):
    url, _ = endpoint
    status, _, headers = post(url + "/v1/beacons", b"", method="OPTIONS",
                              headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, _, headers = post(url + "/v1/beacons", orjson.dumps(beacon(10)), headers={"Origin": "https://shop.example"})
    assert status == 202 and headers["Access-Control-Allow-Origin"] == "https://shop.example"


def test_resent_beacons_are_deduplicated(endpoint):
    url, pipeline = endpoint
    assert post(url + "/v1/beacons", orjson.dumps(beacon(11)))[1]["accepted"] == 1
    status, body, _ = post(url + "/v1/beacons", orjson.dumps(beacon(11)))
    assert status == 202 and (body["accepted"], body["duplicates"]) == (0, 1)


def test_a_client_over_its_rate_gets_429(endpoint):
    url, _ = endpoint
    codes = [post(url + "/v1/beacons", orjson.dumps(beacon(100 + i)))[0] for i in range(20)]
    assert codes[0] == 202 and 429 in codes
    status, body, headers = post(url + "/v1/beacons", orjson.dumps(beacon(200)))
    if status == 429:
        assert "rate limit" in body["error"] and headers["Retry-After"]


def test_boomerang_get_beacon(endpoint):
    url, pipeline = endpoint
    query = ("?h.key=shop-web&t_done=2300&nt_nav_st=1763856000000&nt_res_st=1763856000350"
             "&nt_first_paint=1763856001000&pt.lcp=2100&c.cls=0.05&u=https%3A%2F%2Fshop.example%2Fcart%3Fx%3D1"
             "&rt.si=abc-1&app=shop-web&release=r2")
    status, body, _ = post(url + "/v1/beacons" + query, b"", method="GET")
    assert status == 202 and body["accepted"] == 1, body
    got = [b for r in records(pipeline, pipeline.topics.beacons, 1) for b in orjson.loads(r.value)]
    assert got[0]["metrics"]["LCP"] == 2100 and got[0]["page"] == "/cart"


def test_fuzzed_bodies_never_crash_the_endpoint(endpoint):
    url, _ = endpoint
    import random

    rng = random.Random(7)
    for i in range(30):
        time.sleep(0.2)  # under the rate limit: every body reaches the parser
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        kind = rng.choice(["application/json", "application/x-ndjson", "text/plain",
                           "application/x-www-form-urlencoded"])
        status, payload, _ = post(url + "/v1/beacons", body, kind, headers={"X-Forwarded-For": f"10.0.0.{i}"})
        assert status in (202, 400) and ("error" in payload or "accepted" in payload), (body, status)
    assert post(url + "/healthz", b"", method="GET")[0] == 200


def test_a_datadog_batch_keeps_the_latest_view_versions_and_ignores_other_events(endpoint):
    url, pipeline = endpoint
    body = (REPO / "tests/ingest/formats/fixtures/datadog_batch.ndjson").read_bytes()
    status, answer, _ = post(url + "/v1/beacons", body, "text/plain", headers={"X-Rumgate-Release": "r2"})
    assert status == 202, answer
    assert answer["ignored"] >= 1 and answer["rejected"] == 0  # the action event is not a page view
    got = [b for r in records(pipeline, pipeline.topics.beacons, 1) for b in orjson.loads(r.value)]
    assert len(got) == answer["accepted"] and all(b["id"].startswith("dd-") for b in got)
    assert len({b["id"] for b in got}) == len(got)  # one beacon per view: the highest version
    assert pipeline.read(pipeline.topics.dlq) == []


def test_large_beacons_sharing_a_batch_are_all_stored(busy_endpoint):
    """Valid beacons near their field limits: the 300 of one batch come to about 1.3 MB, over the
    1 MB a Kafka producer and broker take by default. They go as several records, and every
    request is accepted (one record of 1.3 MB would fail them all with a 503)."""
    url, pipeline = busy_endpoint
    big = "\N{GRINNING FACE}" * 500  # 2,000 bytes of UTF-8, 500 characters: within the page's and browser's limits

    def send(r: int) -> int:
        # (not the session: this endpoint hashes it; not the cohort: a name, at most 64) about 4 KB each
        beacons = [beacon(1000 + 6 * r + k, browser=big, page="/" + big) for k in range(6)]
        return post(url + "/v1/beacons", b"\n".join(map(orjson.dumps, beacons)), "application/x-ndjson")[0]

    with ThreadPoolExecutor(max_workers=50) as pool:  # all in one linger: they share records
        statuses = list(pool.map(send, range(50)))
    assert statuses == [202] * 50
    deadline, got = time.monotonic() + 15, []
    while time.monotonic() < deadline and len(got) < 300:
        stored = pipeline.read(pipeline.topics.beacons)
        got = [b for r in stored for b in orjson.loads(r.value)]
        time.sleep(0.2)
    assert sorted(b["id"] for b in got) == sorted(f"b{i}" for i in range(1000, 1300))
    assert len(stored) > 1 and max(len(r.value) for r in stored) <= 512 * 1024


def _captured(name: str) -> list[dict]:
    import json

    return json.loads((REPO / "tests/sdks/captures" / f"{name}.json").read_text())


def test_compressed_bodies_are_inflated_by_the_endpoint_and_other_codings_refused(endpoint):
    """`rumgate ingest` reads bodies as sent (auto_decompress off) and inflates them itself:
    gzip, deflate, and Datadog's deflate that only its ddforward parameter names."""
    import base64
    import gzip
    import zlib

    url, pipeline = endpoint
    status, body, _ = post(url + "/v1/beacons", gzip.compress(orjson.dumps(beacon(300))),
                           headers={"Content-Encoding": "gzip"})
    assert (status, body["accepted"]) == (202, 1), body
    time.sleep(0.25)  # under the rate limit
    status, body, _ = post(url + "/v1/beacons", zlib.compress(orjson.dumps(beacon(301))),
                           headers={"Content-Encoding": "deflate"})
    assert (status, body["accepted"]) == (202, 1), body
    time.sleep(0.25)
    [compressed, _] = _captured("datadog-compressed")
    status, body, _ = post(url + "/v1/beacons?" + compressed["query"], base64.b64decode(compressed["body_b64"]),
                           "text/plain", headers={"X-Rumgate-Release": "r2"})
    assert status == 202 and body["rejected"] == 0 and body["accepted"] + body["ignored"] >= 1, body
    time.sleep(0.25)
    status, body, _ = post(url + "/v1/beacons", orjson.dumps(beacon(302)), headers={"Content-Encoding": "br"})
    assert status == 415 and "'br' is not supported" in body["error"], body
    time.sleep(0.25)
    bomb = zlib.compress(b"[" + b" " * 20_000_000 + b"]", 9)
    status, body, _ = post(url + "/v1/beacons", bomb, headers={"Content-Encoding": "deflate"})
    assert status == 413 and "once inflated" in body["error"], body
    got = {b["id"] for r in records(pipeline, pipeline.topics.beacons, 2) for b in orjson.loads(r.value)}
    assert {"b300", "b301"} <= got


def test_preflights_allow_the_sdks_headers_and_requests_name_device_and_browser(endpoint):
    url, pipeline = endpoint
    status, _, headers = post(url + "/v1/beacons", b"", method="OPTIONS", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-encoding,content-type,idempotency-key,x-faro-session-id"})
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert status == 204 and {"content-encoding", "content-type", "idempotency-key", "x-faro-session-id"} <= allowed
    [request] = _captured("datadog")  # its User-Agent and client hints, as Chromium sent them
    hints = {k: v for k, v in request["headers"].items() if k in ("user-agent", "sec-ch-ua", "sec-ch-ua-mobile")}
    time.sleep(0.25)
    bare = beacon(310)
    del bare["device"]
    status, body, _ = post(url + "/v1/beacons", orjson.dumps(bare), headers=hints)
    assert (status, body["accepted"]) == (202, 1), body
    [stored] = [b for r in records(pipeline, pipeline.topics.beacons, 1) for b in orjson.loads(r.value)
                if b["id"] == "b310"]
    assert (stored["device"], stored["browser"]) == ("desktop", "Chromium")
