"""Content codings undone by the endpoint (streams/ingest/inflate.py): what is inflated, what is
refused and with which status, and that no body, however made, gets a 5xx or more memory than
the limit.

The Inflater is checked on its own (Hypothesis: random bytes, streams cut anywhere, bodies fed
in random pieces, bombs), then through the real handler on aiohttp's test server, both as
``rumgate ingest`` serves it (``ingest_application``: bodies as sent) and as a server that
inflates bodies itself (aiohttp's default, the worker's), with the SDK captures' own bytes.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import tracemalloc
import zlib
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingest.endpoint import IngestConfig, Ingestor, add_ingest_routes, ingest_application
from streams.ingest.inflate import BodyError, Inflater, coding_of, datadog_coding, inflate

CAPTURES = Path(__file__).resolve().parents[1] / "sdks" / "captures"
LIMIT = 64 * 1024
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BEACON = b'{"id":"pv-1","app":"shop-web","release":"r2","metrics":{"LCP":1200}}'


def raw_deflate(data: bytes) -> bytes:
    encoder = zlib.compressobj(wbits=-15)
    return encoder.compress(data) + encoder.flush()


ENCODERS = {"gzip": gzip.compress, "deflate": zlib.compress, "raw deflate": raw_deflate}
CODING = {"gzip": "gzip", "deflate": "deflate", "raw deflate": "deflate"}


def capture(name: str) -> list[dict]:
    return json.loads((CAPTURES / f"{name}.json").read_text())


# -- the Inflater ----------------------------------------------------------------------------

@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_each_coding_round_trips(encoder: str) -> None:
    body = BEACON * 50
    assert inflate(ENCODERS[encoder](body), CODING[encoder], LIMIT) == body
    assert inflate(b"", CODING[encoder], LIMIT) == b""  # no body at all stays none


@pytest.mark.parametrize("header, coding", [(None, "identity"), ("", "identity"), ("identity", "identity"),
                                            ("gzip", "gzip"), ("GZip", "gzip"), ("x-gzip", "gzip"),
                                            ("deflate", "deflate"), ("gzip, identity", "gzip")])
def test_the_codings_named(header, coding) -> None:
    assert coding_of(header) == coding


@pytest.mark.parametrize("header", ["br", "zstd", "compress", "lzma", "gzip, deflate", "gzip, br"])
def test_other_codings_are_415_naming_them(header: str) -> None:
    with pytest.raises(BodyError) as info:
        coding_of(header)
    assert info.value.status == 415 and "not supported" in info.value.message
    assert header.split(",")[-1].strip() in info.value.message or "more than one" in info.value.message


def test_datadogs_coding_is_read_from_ddforward() -> None:
    [compressed, rest] = capture("datadog-compressed")
    query = dict(pair.split("=", 1) for pair in compressed["query"].split("&"))
    from urllib.parse import unquote
    assert datadog_coding({k: unquote(v) for k, v in query.items()}) == "deflate"
    assert "dd-evp-encoding" not in unquote(rest["query"])
    with pytest.raises(BodyError) as info:
        datadog_coding({"ddforward": "/api/v2/rum?dd-evp-encoding=br"})
    assert info.value.status == 415 and "dd-evp-encoding 'br'" in info.value.message


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_a_bomb_is_413_without_inflating_past_the_limit(encoder: str) -> None:
    bomb = ENCODERS[encoder](b"\0" * 200_000_000)  # 200 MB of zeros in about 200 KB
    bomb = bomb[:LIMIT] if len(bomb) > LIMIT else bomb
    tracemalloc.start()
    try:
        with pytest.raises(BodyError) as info:
            inflate(bomb, CODING[encoder], LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status == 413 and "once inflated" in info.value.message
    assert peak < 4 * LIMIT + len(bomb), peak  # the limit's worth of output, never the 200 MB


def test_a_body_over_the_limit_as_sent_is_413() -> None:
    with pytest.raises(BodyError) as info:
        inflate(b"x" * (LIMIT + 1), "identity", LIMIT)
    assert info.value.status == 413 and "once inflated" not in info.value.message


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_just_within_the_limit_is_taken(encoder: str) -> None:
    body = bytes(range(256)) * (LIMIT // 256)
    assert inflate(ENCODERS[encoder](body), CODING[encoder], LIMIT) == body
    with pytest.raises(BodyError):
        inflate(ENCODERS[encoder](body + b"!"), CODING[encoder], LIMIT)


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["gzip", "deflate", "identity"]))
def test_random_bytes_are_inflated_or_refused_with_400_or_413(body: bytes, coding: str) -> None:
    try:
        out = inflate(body, coding, 1024)
    except BodyError as exc:
        assert exc.status in (400, 413), exc
        assert exc.status == 413 or coding != "identity"
    else:
        assert len(out) <= 1024


@SETTINGS
@given(st.binary(min_size=1, max_size=3000), st.sampled_from(list(ENCODERS)), st.data())
def test_a_stream_cut_short_is_400(data: bytes, encoder: str, draw) -> None:
    compressed = ENCODERS[encoder](data)
    cut = draw.draw(st.integers(1, len(compressed) - 1))
    with pytest.raises(BodyError) as info:
        inflate(compressed[:cut], CODING[encoder], LIMIT)
    assert info.value.status == 400 and "cannot be decoded" in info.value.message


@SETTINGS
@given(st.binary(max_size=5000), st.sampled_from(list(ENCODERS)), st.lists(st.integers(0, 6000), max_size=6),
       st.integers(1, 6000))
def test_pieces_as_they_arrive_inflate_as_the_whole(data: bytes, encoder: str, cuts: list[int], limit: int) -> None:
    """Fed in any pieces, the answer (the body, or the refusal) is the whole body's."""
    compressed = ENCODERS[encoder](data)
    bounds = sorted({0, len(compressed), *(c for c in cuts if c < len(compressed))})

    def answer(pieces):
        inflater = Inflater(CODING[encoder], limit)
        try:
            for piece in pieces:
                inflater.feed(piece)
            return inflater.finish()
        except BodyError as exc:
            return exc.status

    whole = answer([compressed])
    assert whole == (data if len(data) <= limit and len(compressed) <= limit else 413)
    assert answer([compressed[a:b] for a, b in zip(bounds, bounds[1:])]) == whole


@SETTINGS
@given(st.binary(max_size=300), st.binary(min_size=1, max_size=50))
def test_bytes_after_the_stream_are_400_unless_another_gzip_member(data: bytes, tail: bytes) -> None:
    with pytest.raises(BodyError) as info:
        inflate(zlib.compress(data) + tail, "deflate", LIMIT)
    assert info.value.status == 400
    assert inflate(gzip.compress(data) + gzip.compress(tail), "gzip", LIMIT) == data + tail  # RFC 1952 members


# -- through the handler ---------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: list) -> None:
        self.records.append((topic, value))

    def beacons(self) -> list[dict]:
        return [b for topic, value in self.records if topic == "rum.beacons" for b in orjson.loads(value)]


def serve(requests: list[tuple[bytes, dict[str, str], str]], raw_bodies: bool = True,
          config: IngestConfig | None = None) -> tuple[list[tuple[int, dict]], Recorder]:
    """Each (body, headers, query) posted to a fresh endpoint; the answers and what it produced.

    ``raw_bodies``: served as ``rumgate ingest`` serves it; else on aiohttp's default server,
    which inflates gzip and deflate itself before the handler runs."""
    sink = Recorder()

    async def go():
        app = ingest_application() if raw_bodies else web.Application()
        add_ingest_routes(app, Ingestor(config or IngestConfig(linger_ms=1, rate_per_s=1e9, burst=10**9), sink))
        answers = []
        async with TestClient(TestServer(app, skip_url_asserts=True), auto_decompress=False) as client:
            for body, headers, query in requests:
                response = await client.post("/v1/beacons" + (f"?{query}" if query else ""), data=body,
                                             headers=headers, skip_auto_headers=("Content-Type",))
                raw = await response.read()
                try:
                    answers.append((response.status, orjson.loads(raw)))
                except orjson.JSONDecodeError:
                    answers.append((response.status, {"error": raw.decode("utf-8", "replace")}))
        return answers

    return asyncio.run(go()), sink


def sent(request: dict) -> tuple[bytes, dict[str, str], str]:
    """A captured request as its SDK sent it."""
    return base64.b64decode(request["body_b64"]), dict(request["headers"]), request["query"]


@pytest.mark.parametrize("raw_bodies", [True, False], ids=["as sent", "inflated by aiohttp"])
@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_compressed_beacons_are_taken_on_either_server(encoder: str, raw_bodies: bool) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": CODING[encoder]}
    [(status, answer)], sink = serve([(ENCODERS[encoder](BEACON), headers, "")], raw_bodies)
    assert (status, answer["accepted"]) == (202, 1), answer
    assert [b["id"] for b in sink.beacons()] == ["pv-1"]


@pytest.mark.parametrize("raw_bodies", [True, False], ids=["as sent", "inflated by aiohttp"])
def test_datadogs_deflate_without_content_encoding_is_inflated(raw_bodies: bool) -> None:
    """The first request of datadog-compressed: zlib bytes as text/plain, named only in ddforward."""
    [compressed, rest] = capture("datadog-compressed")
    answers, _ = serve([sent(compressed), sent(rest)], raw_bodies)
    for status, answer in answers:
        assert status == 202, answer  # (was 400 "body: not valid UTF-8")
        assert answer["rejected"] == 0, answer
    assert answers[0][1]["ignored"] >= 1  # its long tasks, resources, actions: read, not page views


def test_elastics_gzip_bodies_reach_the_parser() -> None:
    for status, answer in serve([sent(r) for r in capture("elastic")])[0]:
        assert status in (202, 400), answer
        assert "cannot be decoded" not in answer.get("error", "") and "not valid UTF-8" not in answer.get("error", "")


@pytest.mark.parametrize("headers, query, status, words", [
    ({"Content-Encoding": "br"}, "", 415, "Content-Encoding 'br' is not supported"),
    ({"Content-Encoding": "zstd"}, "", 415, "Content-Encoding 'zstd' is not supported"),
    ({"Content-Encoding": "gzip"}, "", 400, "cannot be decoded as Content-Encoding 'gzip'"),
    ({"Content-Encoding": "deflate"}, "", 400, "cannot be decoded as Content-Encoding 'deflate'"),
    ({}, "ddforward=%2Fapi%2Fv2%2Frum%3Fdd-evp-encoding%3Ddeflate", 400, "as dd-evp-encoding 'deflate'"),
    ({}, "ddforward=%2Fapi%2Fv2%2Frum%3Fdd-evp-encoding%3Dgzip", 415, "dd-evp-encoding 'gzip'"),
])
def test_refusals_are_json_and_say_why(headers, query, status, words) -> None:
    [(got, answer)], sink = serve([(BEACON, {"Content-Type": "application/json", **headers}, query)])
    assert got == status and words in answer["error"], answer
    assert not sink.records


def test_a_bomb_through_the_handler_is_413() -> None:
    bomb = zlib.compress(b"[" + b" " * 50_000_000 + b"]", 9)
    [(status, answer)], _ = serve([(bomb, {"Content-Type": "application/json", "Content-Encoding": "deflate"}, "")])
    assert status == 413 and "once inflated" in answer["error"], answer


def test_a_body_in_many_pieces_is_read_whole() -> None:
    """Chunked transfer: the body arrives in pieces, and every piece is read (not just the first)."""
    body = b"\n".join(BEACON.replace(b"pv-1", f"pv-{i}".encode()) for i in range(400))

    async def pieces():
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]
            await asyncio.sleep(0)

    sink = Recorder()

    async def go():
        app = ingest_application()
        add_ingest_routes(app, Ingestor(IngestConfig(linger_ms=1), sink))
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/v1/beacons", data=pieces(), headers={"Content-Type": "application/x-ndjson"})
            return response.status, await response.json()

    status, answer = asyncio.run(go())
    assert (status, answer["accepted"]) == (202, 400), answer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(["gzip", "deflate", "identity", "br", "x-gzip", "gzip, deflate"]),
       st.sampled_from(["", "ddforward=%2Fapi%2Fv2%2Frum%3Fdd-evp-encoding%3Ddeflate"]), st.booleans())
def test_no_body_gets_a_5xx(body: bytes, coding: str, query: str, compress: bool) -> None:
    if compress and coding in ("gzip", "x-gzip"):
        body = gzip.compress(body)
    elif compress and coding == "deflate":
        body = zlib.compress(body)
    [(status, answer)], _ = serve([(body, {"Content-Type": "application/json", "Content-Encoding": coding}, query)])
    assert status < 500, (status, answer)
    assert status in (202, 400, 413, 415) and (status == 202 or answer["error"]), (status, answer)
