"""Mutation fuzzing of every ingestion adapter through ``POST /v1/beacons``: never a 5xx.

Each adapter's real payloads (``tests/ingest/formats/fixtures/``) are the seeds: canonical
JSON and NDJSON, bare web-vitals metrics (v4, v5, v6, bfcache) and their envelope, the
snippet's envelope, Boomerang forms and its GET query, a Datadog RUM batch and OTLP logs
exports. From a seed, with an explicit ``--seed``, a body is made by one to three mutations:

* of the JSON tree: a value swapped for another type, a key deleted, a field or an item
  duplicated (the same key twice in one object), deep nesting (up to 30,000 levels) under an
  unknown or a known key, huge numbers (``1e400``, 400 digits, 2**64), ``NaN``/``Infinity``
  literals, lone surrogates, overlong strings;
* of Boomerang params: values swapped for numbers out of range, ``NaN``, broken JSURL,
  bad percent-escapes, duplicated params;
* of the bytes: flips, truncation, a duplicated slice, invalid UTF-8, a BOM, NULs;
* of the headers: a wrong or garbled ``Content-Type`` (or none), ``Content-Encoding`` gzip or
  deflate of the body or of garbage, a truncated gzip stream, a label without compression.

Every body goes through the real handler, :meth:`streams.ingest.endpoint.Ingestor.handle`,
served by aiohttp's test server with an in-memory sink. Checked on every answer: the status
is 2xx or 4xx; the body is JSON; a 4xx carries a non-empty ``error``; no reject reason is an
adapter's caught exception (``internal error in ...``); and when the answer has counts and
the body's item count is knowable (uncompressed or validly compressed, and every item a
canonical beacon, a Boomerang beacon, a snippet envelope or unrecognised, each of which
makes at most one beacon), accepted + rejected + duplicates + ignored equals the items.
Besides HTTP, each body's plain bytes are given to :func:`streams.ingest.formats.parse_body`,
:func:`~streams.ingest.formats.convert_items` and the fast path's
:func:`~streams.ingest.formats.fast.canonical_items` directly: they may raise FormatError
(``parse_body`` only) and nothing else.

    python benchmarks/fuzz_ingest.py --bodies 100000 --seed 1 [--adapter canonical]

prints progress, then per adapter the statuses seen, the failures by kind (with the first
few cases, replayable from their seed) and the time. tests/reliability/test_ingest_fuzz.py
runs a few thousand bodies per adapter.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import logging
import random
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from aiohttp.helpers import parse_content_type
from aiohttp.test_utils import TestServer
from aiohttp import web

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.ingest.endpoint import IngestConfig, Ingestor, add_ingest_routes  # noqa: E402
from streams.ingest.formats import Context, FormatError, convert_items, detect, parse_body  # noqa: E402
from streams.ingest.formats import boomerang, canonical, webvitals  # noqa: E402
from streams.ingest.formats.fast import canonical_items  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "ingest" / "formats" / "fixtures"
NOW = 1_763_856_000_123
MAX_BODY = 64 * 1024
MAX_QUERY = 6 * 1024


@dataclass(frozen=True)
class Seed:
    """A real payload: its bytes, the Content-Type it is sent with, GET or POST."""

    body: bytes
    content_type: str | None
    method: str = "POST"


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _ndjson(name: str) -> bytes:
    return b"\n".join(orjson.dumps(item) for item in orjson.loads(_fixture(name)))


def seeds() -> dict[str, list[Seed]]:
    """Each adapter's seeds, by adapter."""
    form = "application/x-www-form-urlencoded"
    return {
        "canonical": [Seed(_fixture("canonical.json"), "application/json"),
                      Seed(_ndjson("canonical.json"), "application/x-ndjson")],
        "web-vitals": [Seed(_fixture(name), "text/plain;charset=UTF-8") for name in (
            "webvitals_v4_batch.json", "webvitals_v5_batch.json", "webvitals_v5_single.json",
            "webvitals_v6_softnav.json", "webvitals_bfcache.json", "webvitals_envelope.json")],
        "snippet": [Seed(_fixture("snippet_envelope.json"), "text/plain;charset=UTF-8")],
        "boomerang": [Seed(_fixture(name), form) for name in (
            "boomerang_pageload.form", "boomerang_spa.form", "boomerang_unload.form", "boomerang_xhr.form")]
        + [Seed(_fixture("boomerang_get.query").strip(), None, "GET")],
        "datadog": [Seed(_fixture("datadog_batch.ndjson"), "text/plain;charset=UTF-8"),
                    Seed(_fixture("datadog_batch.ndjson"), None)],
        "otel": [Seed(_fixture(name), "application/json") for name in ("otel_logs.json", "otel_semconv_body.json")],
    }


ADAPTERS = tuple(seeds())


# -- a JSON writer that can say what orjson will not: duplicate keys, raw literals ---------------
@dataclass(frozen=True)
class Raw:
    """Bytes written as they are where a JSON value goes (NaN, 1e400, deep nesting)."""

    text: bytes


@dataclass
class Pairs:
    """An object as its (key, value) pairs: the same key may come twice."""

    pairs: list[tuple[str, Any]]


def dumps(value: Any) -> bytes:
    """``value`` as JSON; :class:`Raw` and :class:`Pairs` as they say."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return b"{" + b",".join(orjson.dumps(k) + b":" + dumps(v) for k, v in value.pairs) + b"}"
    if isinstance(value, dict):
        return dumps(Pairs(list(value.items())))
    if isinstance(value, list):
        return b"[" + b",".join(dumps(v) for v in value) + b"]"
    if type(value) is int and not -(2**63) <= value < 2**64:
        return str(value).encode()
    return orjson.dumps(value)


def _nest(depth: int, rng: random.Random) -> Raw:
    if rng.random() < 0.5:
        return Raw(b"[" * depth + b"1" + b"]" * depth)
    return Raw(b'{"a":' * depth + b"1" + b"}" * depth)


_DEPTHS = (64, 200, 1_000, 2_000, 5_000, 30_000)
_HUGE = (Raw(b"1e400"), Raw(b"-1e400"), Raw(b"1" + b"0" * 400), Raw(b"1e-400"), 2**64, -(2**63) - 1, 2**63,
         10**30, Raw(b"-0"), Raw(b"0.0000000000000000000000001"), 1.7976931348623157e308)
_LITERALS = (Raw(b"NaN"), Raw(b"Infinity"), Raw(b"-Infinity"), Raw(b"nan"), Raw(b"undefined"))
_STRINGS = ("", " ", "x" * 600, "\u0000", "\u202e", "NaN", "Infinity", "1e400", "-1", "/" * 600,
            Raw(b'"\\ud800"'), Raw(b'"\\udfff\\ud800"'), "😀" * 200, "//evil.example/p?x#y")


def _swap(rng: random.Random) -> Any:
    choice = rng.randrange(8)
    if choice == 0:
        return rng.choice([None, True, False])
    if choice == 1:
        return rng.choice([0, -1, 1, 0.5, -0.0, 42])
    if choice == 2:
        return rng.choice(_HUGE)
    if choice == 3:
        return rng.choice(_LITERALS)
    if choice == 4:
        return rng.choice(_STRINGS)
    if choice == 5:
        return rng.choice([[], [None], [[]], [{}], ["LCP"]])
    if choice == 6:
        return rng.choice([{}, {"": None}, {"metrics": {}}, {"name": "LCP", "value": 1}])
    return _nest(rng.choice(_DEPTHS[:3]), rng)


def _places(tree: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a tree of dicts and lists."""
    out = [path]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += _places(value, path + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out += _places(value, path + (i,))
    return out


def _at(tree: Any, path: tuple) -> Any:
    for step in path:
        tree = tree[step]
    return tree


def mutate_tree(tree: Any, rng: random.Random) -> tuple[Any, str]:
    """One mutation of a parsed JSON body (in place, or a new root); the new tree and its name."""
    places = _places(tree)
    path = rng.choice(places)
    parent, key = (_at(tree, path[:-1]), path[-1]) if path else (None, None)
    op = rng.choice(("swap", "swap", "delete", "duplicate", "nest", "huge", "literal", "unknown", "string"))

    def put(value: Any) -> Any:
        if parent is None:
            return value
        parent[key] = value
        return tree

    if op == "swap":
        return put(_swap(rng)), op
    if op == "huge":
        return put(rng.choice(_HUGE)), op
    if op == "literal":
        return put(rng.choice(_LITERALS)), op
    if op == "string":
        return put(rng.choice(_STRINGS)), op
    if op == "nest":
        return put(_nest(rng.choice(_DEPTHS), rng)), "nest"
    containers = [p for p in places if isinstance(_at(tree, p), (dict, list))]
    where = rng.choice(containers) if containers else None
    target = _at(tree, where) if where is not None else None
    if op == "unknown" and isinstance(target, dict):
        target["x_" + str(rng.randrange(100))] = rng.choice([_nest(rng.choice(_DEPTHS), rng), rng.choice(_HUGE),
                                                             rng.choice(_LITERALS)])
        return tree, "unknown-field"
    if op == "duplicate" and isinstance(target, dict) and target:
        pairs = list(target.items())
        k, v = rng.choice(pairs)
        pairs.insert(rng.randrange(len(pairs) + 1), (k, rng.choice([v, _swap(rng)])))
        if not where:
            return Pairs(pairs), "duplicate-key"
        _at(tree, where[:-1])[where[-1]] = Pairs(pairs)  # written as is; no later mutation goes inside
        return tree, "duplicate-key"
    if op == "duplicate" and isinstance(target, list) and target:
        target.insert(rng.randrange(len(target) + 1), rng.choice(target))
        return tree, "duplicate-item"
    if parent is not None:
        del parent[key]
        return tree, "delete"
    return put(_swap(rng)), "swap"


_PARAM_VALUES = ("", "NaN", "Infinity", "-Infinity", "1e400", "-1", "1" + "0" * 400, "0x10", "1_000", "１２",
                 "~(" * 2_000, "~(~(m~'a~n~1e400))", "~(~(m~'a~n~-3))", "~(~'*zz)", "~(~(n~NaN))", "~(m~'*",
                 "x" * 600, "spa", "xhr", "\x00", "%ff", "😀", "9" * 30)


def mutate_form(pairs: list[tuple[str, str]], rng: random.Random) -> tuple[list[tuple[str, str]], str]:
    """One mutation of Boomerang's params (in place); the params and the mutation's name."""
    op = rng.choice(("value", "value", "value", "delete", "duplicate", "add"))
    if op == "value" and pairs:
        i = rng.randrange(len(pairs))
        pairs[i] = (pairs[i][0], rng.choice(_PARAM_VALUES))
    elif op == "delete" and pairs:
        del pairs[rng.randrange(len(pairs))]
    elif op == "duplicate" and pairs:
        k, _ = rng.choice(pairs)
        pairs.append((k, rng.choice(_PARAM_VALUES)))
    else:
        key = rng.choice(("err", "et.inp", "nt_nav_st", "nt_res_st", "rt.tstart", "http.initiator", "rt.quit", "app",
                          "rel", "h.key", "pid", "n", "pgu", "ua.plt", "u", "v"))
        pairs.append((key, rng.choice(_PARAM_VALUES)))
        op = "param"
    return pairs, op


def _encode_form(pairs: list[tuple[str, str]], rng: random.Random) -> bytes:
    out = []
    for k, v in pairs:
        value = v if v in ("%ff",) else quote(v, safe="")
        out.append(f"{quote(k, safe='.')}={value}")
    return "&".join(out).encode()


def mutate_bytes(body: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutation of the bytes themselves."""
    op = rng.choice(("flip", "truncate", "slice", "utf8", "bom", "nul"))
    if not body:
        return b"\xff", "utf8"
    i = rng.randrange(len(body))
    if op == "flip":
        data = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data), op
    if op == "truncate":
        return body[:i], op
    if op == "slice":
        j = rng.randrange(i, len(body) + 1)
        return body[:j] + body[i:j] + body[j:], op
    if op == "utf8":
        return body[:i] + rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf")) + body[i:], op
    if op == "bom":
        return b"\xef\xbb\xbf" + body, op
    return body[:i] + b"\x00" + body[i:], op


_CONTENT_TYPES = (None, "", "application/json", "application/x-ndjson", "text/plain", "text/plain;charset=latin-1",
                  "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/vnd.x+json",
                  "image/png", "a/b/c", ";;;", "application/json; charset=utf-16", "TEXT/PLAIN", "application/jsonl")
ENCODINGS = ("gzip", "deflate", "raw-deflate", "gzip-of-garbage", "deflate-of-garbage", "truncated-gzip",
              "label-only-gzip", "label-only-deflate", "br", "identity", "gzip, gzip", "compress", "x-gzip")


def _compress(body: bytes, how: str, rng: random.Random) -> tuple[bytes, str, bool]:
    """The body sent, its Content-Encoding, and whether the server sees ``body`` once inflated."""
    garbage = rng.randbytes(rng.randint(0, 200))
    if how == "gzip":
        return gzip.compress(body), "gzip", True
    if how == "deflate":
        return zlib.compress(body), "deflate", True
    if how == "raw-deflate":
        c = zlib.compressobj(wbits=-15)
        return c.compress(body) + c.flush(), "deflate", True
    if how == "gzip-of-garbage":
        return b"\x1f\x8b\x08\x00" + garbage, "gzip", False
    if how == "deflate-of-garbage":
        return b"\x78\x9c" + garbage, "deflate", False
    if how == "truncated-gzip":
        data = gzip.compress(body)
        return data[: rng.randrange(1, len(data))], "gzip", False
    if how == "gzip, gzip":
        return gzip.compress(gzip.compress(body)), "gzip, gzip", False
    if how.startswith("label-only-"):
        return body, how[len("label-only-"):], False
    return body, how, how == "identity"


@dataclass
class Case:
    """One fuzzed request. ``plain`` is the body the handler reads, when that is known."""

    adapter: str
    mutations: list[str]
    method: str
    body: bytes
    headers: dict[str, str]
    query: str = ""
    plain: bytes | None = None


def make_case(adapter: str, seed: Seed, rng: random.Random, encodings: tuple[str, ...] = ENCODINGS) -> Case:
    """A mutated request from ``seed``: one to three mutations of its tree, params or bytes, and
    sometimes of its headers."""
    mutations: list[str] = []
    is_form = seed.method == "GET" or seed.content_type == "application/x-www-form-urlencoded"
    body = seed.body
    rounds = rng.randint(1, 3)
    if is_form:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
        for _ in range(rounds):
            pairs, name = mutate_form(pairs, rng)
            mutations.append(name)
        body = _encode_form(pairs, rng)
    else:
        lines = seed.content_type is None or b"\n" in body.strip() and seed.content_type != "application/json"
        try:
            tree = [orjson.loads(line) for line in body.split(b"\n") if line.strip()] if lines else orjson.loads(body)
        except orjson.JSONDecodeError:
            tree = None
        if tree is not None and rng.random() < 0.85:
            for _ in range(rounds):
                tree, name = mutate_tree(tree, rng)
                mutations.append(name)
            if lines and isinstance(tree, list):
                body = b"\n".join(dumps(item) for item in tree)
            else:
                body = dumps(tree)
    if rng.random() < 0.3:
        body, name = mutate_bytes(body, rng)
        mutations.append(name)
    if len(body) > MAX_BODY:  # the size limit is not what is fuzzed: cut, as a sender would have to
        body = body[:MAX_BODY]
        mutations.append("cut-to-limit")
    headers: dict[str, str] = {}
    content_type = seed.content_type
    if rng.random() < 0.15:
        content_type = rng.choice(_CONTENT_TYPES)
        mutations.append(f"content-type={content_type!r}")
    if content_type is not None:
        headers["Content-Type"] = content_type
    if rng.random() < 0.5:
        headers["X-Rumgate-App"] = "fuzz-app"
        headers["X-Rumgate-Release"] = "r-fuzz"
    if seed.method == "GET":
        if len(body) > MAX_QUERY:  # nor is the request line's: aiohttp answers 400 over 8190 bytes
            body = body[:MAX_QUERY]
            mutations.append("cut-to-url-limit")
        # as a browser sends it: bytes a request line cannot hold (NUL, space, invalid UTF-8)
        # percent-encoded, so that they reach the handler's decoding rather than aiohttp's parser
        query = quote(body.decode("latin-1"), safe="".join(map(chr, range(0x21, 0x7F))).replace("#", ""),
                      encoding="latin-1")
        return Case(adapter, mutations, "GET", b"", headers, query=query, plain=None)
    plain: bytes | None = body
    if rng.random() < 0.2:
        how = rng.choice(encodings)
        body, headers["Content-Encoding"], inflated = _compress(body, how, rng)
        plain = plain if inflated else None
        mutations.append(f"encoding={how}")
    return Case(adapter, mutations, "POST", body, headers, plain=plain)


def expected_items(case: Case) -> int | None:
    """How many items the handler's answer must account for, when that is knowable.

    Each canonical or Boomerang beacon, snippet envelope and unrecognised item makes one
    beacon or one reject; a request of only those must count as many as it held. (Bare
    web-vitals metrics group into page views, an OTLP export makes several, a Datadog view's
    older versions fold into its newest: not knowable from the items alone.)
    """
    if case.plain is None:
        return None
    media = parse_content_type(case.headers["Content-Type"])[0] if "Content-Type" in case.headers \
        else "application/octet-stream"
    try:
        items = parse_body(case.plain, media)
    except FormatError:
        return None
    for item in items:
        try:
            adapter = detect(item)
        except Exception:  # noqa: BLE001 - the direct check reports it
            return None
        if adapter not in (None, canonical, boomerang) and not webvitals.is_envelope(item):
            return None
    return len(items)


# -- checks -----------------------------------------------------------------------------------
#: The failure of a plain-text 400 that aiohttp's HTTP parser sent before any handler ran.
PARSER_400 = "plain-text 400 from aiohttp's parser"

@dataclass
class Tally:
    """What one adapter's bodies got."""

    bodies: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    counted: int = 0  # answers whose counts were checked against the items

    def fail(self, kind: str, case: Case, detail: str) -> None:
        self.failures[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < 3:
            shown.append(f"{case.mutations} {case.method} headers={case.headers} query={case.query[:80]!r} "
                         f"body={case.body[:160]!r}: {detail[-600:]}")


def check_answer(case: Case, status: int, raw: bytes, tally: Tally) -> None:
    """The checks on one HTTP answer (see the module docstring)."""
    tally.statuses[status] += 1
    if status >= 500 or not 200 <= status < 500:
        tally.fail(f"status {status}", case, raw[:300].decode("utf-8", "replace"))
        return
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # the handler answers JSON only: a plain-text 400 is aiohttp's HTTP parser refusing the
        # request before any handler ran (an encoding it cannot decode, a short body that is
        # not the deflate stream it is labelled as)
        tally.fail(PARSER_400 if status == 400 else "answer not JSON", case, repr(raw[:200]))
        return
    if not isinstance(answer, dict):
        tally.fail("answer not an object", case, repr(raw[:200]))
        return
    if status >= 400 and not (type(answer.get("error")) is str and answer["error"].strip()):
        tally.fail("4xx without error", case, repr(raw[:200]))
    errors = answer.get("errors") or []
    if any("internal error" in str(e) for e in errors) or "internal error" in str(answer.get("error", "")):
        tally.fail("adapter exception", case, str(errors)[:400] + str(answer.get("error", ""))[:300])
    if "accepted" in answer:
        counts = [answer.get(k) for k in ("accepted", "rejected", "duplicates", "ignored")]
        if not all(type(c) is int and c >= 0 for c in counts):
            tally.fail("bad counts", case, repr(answer))
            return
        items = expected_items(case)
        if items is not None:
            tally.counted += 1
            if sum(counts) != items:
                tally.fail("counts do not add up", case, f"{items} items, answer {answer}")


_CTX = Context(received_at=NOW, app="fuzz-app", release="r-fuzz")


def check_direct(case: Case, tally: Tally) -> None:
    """The parsers on the body's plain bytes: FormatError from parse_body, else nothing raised."""
    if case.plain is None:
        return
    media = parse_content_type(case.headers["Content-Type"])[0] if "Content-Type" in case.headers \
        else "application/octet-stream"
    try:
        canonical_items(case.plain, media, _CTX)
    except Exception:  # noqa: BLE001 - the finding
        tally.fail("canonical_items raised", case, traceback.format_exc(limit=-3))
    try:
        items = parse_body(case.plain, media)
    except FormatError:
        return
    except Exception:  # noqa: BLE001
        tally.fail("parse_body raised", case, traceback.format_exc(limit=-3))
        return
    try:
        conversion = convert_items(items, _CTX)
    except Exception:  # noqa: BLE001
        tally.fail("convert_items raised", case, traceback.format_exc(limit=-3))
        return
    if any(reason.startswith("internal error") for _, reason in conversion.rejects):
        tally.fail("adapter exception", case, str([r for _, r in conversion.rejects if "internal" in r][:2]))


class _Sink:
    """Kafka stands in: records are counted, not kept."""

    def __init__(self) -> None:
        self.records = 0

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: list) -> None:
        self.records += 1


async def send(port: int, case: Case) -> tuple[int, bytes]:
    """One request in a single write, on its own connection; the answer's status and body.

    Not aiohttp's client: it adds headers of its own, and when the server answers early (a
    body it stopped reading at a broken gzip stream) and closes, it reports the unfinished
    write instead of the answer the server did send.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        target = "/v1/beacons" + (f"?{case.query}" if case.query else "")
        head = [f"{case.method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in case.headers.items()]
        if case.method == "POST":
            head.append(f"Content-Length: {len(case.body)}")
        writer.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + case.body)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    return _response(raw)


def _response(raw: bytes) -> tuple[int, bytes]:
    """An HTTP/1.1 answer's status and body (de-chunked)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding") == b"chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, body


async def fuzz_adapter(port: int, adapter: str, bodies: int, seed: int, tally: Tally,
                       progress: Callable[[int], None] | None = None, concurrency: int = 16,
                       encodings: tuple[str, ...] = ENCODINGS) -> None:
    """Post ``bodies`` mutated bodies of ``adapter``'s seeds, checking each answer."""
    rng = random.Random(f"{seed}:{adapter}")
    pool = seeds()[adapter]
    sem = asyncio.Semaphore(concurrency)

    async def one(case: Case) -> None:
        async with sem:
            try:
                status, raw = await send(port, case)
            except Exception:  # noqa: BLE001 - the connection broke: a finding too
                tally.fail("no answer", case, traceback.format_exc(limit=-2))
                return
            check_answer(case, status, raw, tally)

    pending: list[asyncio.Task] = []
    for n in range(bodies):
        case = make_case(adapter, rng.choice(pool), rng, encodings)
        tally.bodies += 1
        check_direct(case, tally)
        pending.append(asyncio.ensure_future(one(case)))
        if len(pending) >= 256:
            await asyncio.gather(*pending)
            pending.clear()
            if progress:
                progress(n + 1)
    await asyncio.gather(*pending)


def ingest_app() -> web.Application:
    """The beacon endpoint alone, as the worker serves it, with a sink that keeps nothing."""
    config = IngestConfig(rate_per_s=1e12, burst=2**62, dedupe_slots=1 << 16, linger_ms=0.5)
    app = web.Application()
    add_ingest_routes(app, Ingestor(config, _Sink(), now_ms=lambda: NOW))
    return app


async def fuzz(bodies: int, seed: int, adapters: tuple[str, ...] = ADAPTERS, progress: bool = False,
               encodings: tuple[str, ...] = ENCODINGS) -> dict[str, tuple[Tally, float]]:
    """Each adapter's tally and seconds."""
    out = {}
    async with TestServer(ingest_app()) as server:
        for adapter in adapters:
            tally = Tally()
            started = time.perf_counter()
            report = None
            if progress:
                def report(done: int, adapter=adapter, started=started) -> None:
                    if done % 5_000 < 256:
                        print(f"  {adapter}: {done}/{bodies} bodies, {time.perf_counter() - started:.0f} s, "
                              f"{sum(tally.failures.values())} failures", file=sys.stderr, flush=True)
            await fuzz_adapter(server.port, adapter, bodies, seed, tally, report, encodings=encodings)
            out[adapter] = (tally, time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=100_000, help="mutated bodies per adapter")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--adapter", action="append", choices=ADAPTERS, help="only these (default: all)")
    args = parser.parse_args(argv)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the tally reports what it would log
    adapters = tuple(args.adapter or ADAPTERS)
    print(f"fuzzing {', '.join(adapters)}: {args.bodies} bodies each, seed {args.seed}", flush=True)
    results = asyncio.run(fuzz(args.bodies, args.seed, adapters, progress=True))
    failed = 0
    for adapter, (tally, seconds) in results.items():
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(tally.statuses.items()))
        print(f"{adapter:<11} {tally.bodies} bodies in {seconds:.1f} s; statuses {statuses}; "
              f"counts checked on {tally.counted}; failures {sum(tally.failures.values())}")
        for kind, n in tally.failures.most_common():
            failed += n
            print(f"    {kind}: {n}")
            for example in tally.examples[kind]:
                print(f"        {example}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
