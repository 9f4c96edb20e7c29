"""Beacon ingestion: ``POST /v1/beacons`` from browsers into ``rum.beacons``.

What a request goes through, in order:

1. CORS: the ``Origin`` must be on the allow-list (``RUMGATE_CORS_ORIGINS``, ``*`` for any);
   preflights (``OPTIONS``) are answered here, allowing the request headers of
   ``RUMGATE_INGEST_CORS_HEADERS`` (by default those of every SDK rumgate reads).
2. Limits: bodies over ``RUMGATE_MAX_BODY`` (64 KiB, the browsers' own keepalive cap), as sent
   or once inflated, get 413; more than ``RUMGATE_RATE_LIMIT`` requests/s from one client get
   429. Bodies are inflated here (:mod:`streams.ingest.inflate`): gzip, deflate, and Datadog's
   deflate that only its ``ddforward`` parameter names; a body that cannot be inflated gets
   400, another coding (``br``) 415. The client is the socket's peer, or behind
   a proxy the address ``RUMGATE_INGEST_TRUSTED_HOPS`` from the right of
   ``RUMGATE_INGEST_CLIENT_HEADER``; it is held in memory for the rate limit and the view cap
   only, never stored or forwarded. Beacons beyond ``RUMGATE_INGEST_CLIENT_VIEWS`` per client
   per window are dropped and counted (``capped``), not refused: browsers do not retry.
3. Parsing (:mod:`streams.ingest.formats`): JSON, NDJSON, ``text/plain`` from ``sendBeacon``, and
   form or query encoding (Boomerang); every SDK format becomes canonical beacons. A body
   that cannot be parsed gets 400 naming what is wrong.
4. Server-side fields and privacy: ``ts`` is the receive time; ``app``/``release`` come
   from the payload or the ``X-Rumgate-App``/``X-Rumgate-Release`` headers; ``device`` and
   ``browser`` from the payload or the request's ``User-Agent`` and ``Sec-CH-UA(-Mobile)``
   (:mod:`streams.ingest.useragent`); ``country`` only from a configured header; session ids kept as given or hashed with a secret salt;
   pages reduced to route templates when configured; query strings never kept.
5. Validation and dedupe: each beacon is checked like stage 1 checks it; an ``id`` seen
   within ``RUMGATE_INGEST_DEDUPE_TTL_S`` is dropped (web-vitals re-sends CLS/INP on every
   page hide), from a table of fixed size (:mod:`streams.ingest.dedupe`). Bodies of canonical
   beacons with ids (the fast path) are checked a whole record at a time, when it is flushed.
   A duplicate whose first copy is still waiting for Kafka is answered once that copy is
   stored, or with 503 if it is not: a client's retry is never a 202 for beacons that were lost.
6. Produce: good beacons are batched per app (``linger``) into JSON-array records keyed by
   app, each under ``record_bytes`` (512 KiB; Kafka refuses 1 MB by default), from at most
   ``RUMGATE_INGEST_MAX_APPS`` apps per request (the others' beacons are rejected), and only
   of the releases ``RUMGATE_INGEST_RELEASES`` allows. A request's rejected items go to
   ``rum.beacons.dlq`` as one record (see :meth:`Ingestor._dead_letters`). The response (202)
   says how many of each were accepted, rejected, capped and dropped as duplicates, once
   Kafka has them; past ``RUMGATE_INGEST_ACK_TIMEOUT_S``, or with ``RUMGATE_INGEST_MAX_WAITING``
   requests waiting already, it is 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import operator
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.helpers import parse_content_type

from streams.ingest.dedupe import RecentIds
from streams.ingest.formats import Context, FormatError, convert_items, parse_body
from streams.ingest.formats.fast import CanonicalItem, canonical_items, encode, encode_many
from streams.ingest.inflate import BodyError, coding_of, datadog_coding, read_body
from streams.ingest.snippet import add_snippet_routes
from streams.ingest.useragent import request_device_browser

__all__ = ["CORS_HEADERS", "IngestConfig", "Ingestor", "add_ingest_routes", "ingest_application", "ingest_config",
           "json_arrays", "RouteTemplates"]

#: The request headers a preflight allows by default: what every SDK rumgate reads sends
#: beyond the CORS-safelisted ones (tests/sdks/captures): the snippet's and relays' app and
#: release, Grafana Faro's session and idempotency key, Elastic's gzip (Content-Encoding),
#: and Content-Type (JSON and NDJSON are not safelisted types).
CORS_HEADERS = ("Content-Type", "Content-Encoding", "X-Rumgate-App", "X-Rumgate-Release", "X-Faro-Session-Id",
                "Idempotency-Key")

_APP_OF, _ID_OF = operator.attrgetter("app"), operator.attrgetter("id")

Sink = Callable[[str, bytes, bytes, list[tuple[str, bytes]]], Awaitable[None]]  # topic, key, value, headers


@dataclass
class IngestConfig:
    beacons_topic: str = "rum.beacons"
    dlq_topic: str = "rum.beacons.dlq"
    cors_origins: tuple[str, ...] = ("*",)
    cors_headers: tuple[str, ...] = CORS_HEADERS  # request headers a preflight allows
    max_body: int = 64 * 1024  # bytes, as sent and once inflated
    rate_per_s: float = 20.0
    burst: int = 40
    dedupe_ttl_s: float = 1800.0
    dedupe_slots: int = 1 << 20  # fixed: 16 bytes each, allocated at start
    country_header: str | None = None
    session_salt: str | None = None  # set: session ids are replaced by a keyed hash
    routes: tuple[str, ...] = ()  # route templates, e.g. /product/:id
    linger_ms: float = 5.0
    # a record's most beacons: fewer, larger records cost less per request at load (a few µs
    # per 10-beacon request); below 200,000 beacons/s the linger sends a record first anyway
    batch_beacons: int = 1_000
    # a record's most bytes: Kafka brokers (message.max.bytes) and producers refuse messages
    # over 1 MB by default, and 200 beacons near their field limits come to several MB
    record_bytes: int = 512 * 1024
    # one request naming thousands of apps would make thousands of records: beyond this many
    # distinct apps a request's beacons are rejected (to the DLQ, with the reason)
    max_apps: int = 16
    # ... and beyond this many apps waiting for their record (one linger) those of other apps
    max_batch_apps: int = 1000
    ack_timeout_s: float = 5.0  # past it the request gets 503 + Retry-After (its beacons may still land)
    max_waiting: int = 2000  # requests waiting for Kafka's ack at once; beyond it 503 at once
    # behind an ingress every request comes from its address: the client is then read from this
    # header (X-Forwarded-For), ``trusted_hops`` entries from its right (each proxy of ours appends one)
    client_header: str | None = None
    trusted_hops: int = 1
    client_views: int = 0  # page views one client may send per ``client_window_s``; 0: no cap
    client_window_s: float = 5.0
    # the releases an app may report: "any"; "open", the canary and baseline of its open
    # rollouts (an app without one reports any); or "list:<r1,r2>"
    releases: str = "any"


class RouteTemplates:
    """``/product/:id`` style templates; a page becomes the first template it matches.

    >>> r = RouteTemplates(["/product/:id", "/cart"])
    >>> r.reduce("/product/123"), r.reduce("/cart"), r.reduce("/about")
    ('/product/:id', '/cart', '/about')
    """

    def __init__(self, templates: list[str] | tuple[str, ...]) -> None:
        self.templates = [(t, re.compile("^" + re.sub(r":[A-Za-z_]\w*", r"[^/]+", re.escape(t).replace(r"\:", ":")) + "/?$"))
                          for t in templates if t]

    def reduce(self, page: str) -> str:
        for template, pattern in self.templates:
            if pattern.match(page):
                return template
        return page


class _RateLimit:
    """A token bucket per client, forgotten when full again (memory stays small)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now_s: float) -> bool:
        tokens, at = self.buckets.get(client, (self.burst, now_s))
        tokens = min(self.burst, tokens + (now_s - at) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now_s)
            return False
        self.buckets[client] = (tokens - 1, now_s)
        if len(self.buckets) > 100_000:  # drop clients whose buckets have refilled
            self.buckets = {c: v for c, v in self.buckets.items() if v[0] + (now_s - v[1]) * self.rate < self.burst}
        return True


class _ViewCap:
    """At most ``views`` beacons per client per window, held in memory only: beacons beyond
    it are dropped and counted, so one client cannot outvote real users at ingestion."""

    def __init__(self, views: int, window_s: float) -> None:
        self.views, self.window_s = views, window_s
        self.used: dict[str, tuple[float, int]] = {}

    def room(self, client: str, wanted: int, now_s: float) -> int:
        """How many of ``wanted`` beacons the client may still send now (takes them)."""
        if self.views <= 0:
            return wanted
        start, used = self.used.get(client, (now_s, 0))
        if now_s - start >= self.window_s:
            start, used = now_s, 0
        taken = max(0, min(wanted, self.views - used))
        self.used[client] = (start, used + taken)
        if len(self.used) > 100_000:  # forget clients whose window is over
            self.used = {c: v for c, v in self.used.items() if now_s - v[0] < self.window_s}
        return taken


class FirstCopiesNotStored(Exception):
    """A request's duplicates repeat beacons whose record Kafka did not store (in time)."""


@dataclass
class _Batch:
    """The beacons of one app waiting for their record.

    General-path beacons arrive deduplicated and encoded (``fragments``). Fast-path beacons
    arrive as structs; those whose request had an id on every beacon are deduplicated here,
    at flush, all at once (:meth:`RecentIds.fresh_mask`): ``unchecked`` with their ``ids``,
    and ``ends`` marking where each request's beacons end. The batch's future resolves to
    each of those requests' duplicate counts, or None when there were none.
    """

    done: asyncio.Future
    fragments: list[bytes] = field(default_factory=list)  # JSON fragments, one or more beacons each
    checked: list[CanonicalItem] = field(default_factory=list)  # fast path, deduplicated already
    unchecked: list[CanonicalItem] = field(default_factory=list)  # fast path, deduplicated at flush
    ids: list[str] = field(default_factory=list)  # the ids of ``unchecked``
    ends: list[int] = field(default_factory=list)  # len(unchecked) after each request
    received_at: int = 0  # of the latest request in ``unchecked``: the time its ids are seen at
    marked: list[str] = field(default_factory=list)  # ids the batch took: forgotten if it fails
    count: int = 0  # beacons
    stored: asyncio.Future | None = None  # True once its records are stored, False if they failed
    deadline: float = 0.0  # loop time at which its requests are answered 503


class Ingestor:
    """Turns requests into records; ``sink`` produces one record (and resolves once acked)."""

    def __init__(self, config: IngestConfig, sink: Sink, now_ms: Callable[[], int] | None = None,
                 releases_of: Callable[[str], set[str] | None] | None = None) -> None:
        self.config = config
        self.allowed = _allowed_releases(config.releases, releases_of)
        self.sink = sink
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.dedupe = RecentIds(config.dedupe_ttl_s * 1000, config.dedupe_slots)
        self.rate = _RateLimit(config.rate_per_s, config.burst)
        self.routes = RouteTemplates(config.routes)
        self.batches: dict[str, _Batch] = {}
        self.unstored: dict[str, list[asyncio.Future]] = {}  # app: ``stored`` of its batches not yet stored
        self.views = _ViewCap(config.client_views, config.client_window_s)
        self.waiting = 0  # requests waiting for Kafka's ack
        self.preflight = {"Access-Control-Allow-Methods": "POST, GET, OPTIONS", "Access-Control-Max-Age": "86400"}
        if config.cors_headers:
            self.preflight["Access-Control-Allow-Headers"] = ", ".join(config.cors_headers)
        self.counts = {"accepted": 0, "rejected": 0, "duplicates": 0, "ignored": 0, "requests": 0,
                       "capped": 0, "unavailable": 0}
        # the last request's Context and what it was made of: at load, the requests of one
        # millisecond from one kind of sender have the same, and a (frozen) Context costs more
        # to make (its checks, ~2 µs) than the rest of the request's own bookkeeping
        self._last_ctx: tuple[tuple, Context | None] = ((), None)

    # -- the request path ---------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        cors = self._cors_headers(request)
        if cors is None:
            return _json({"error": f"origin {request.headers.get('Origin')!r} is not allowed"}, 403)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={**cors, **self.preflight})
        self.counts["requests"] += 1
        client = self._client(request)
        if not self.rate.allow(client, time.monotonic()):
            return _json({"error": f"rate limit: more than {self.config.rate_per_s:g} requests/s from this client"},
                         429, {**cors, "Retry-After": "1"})
        length = request.content_length
        if length is not None and length > self.config.max_body:
            return _json({"error": f"body of {length} bytes is over the {self.config.max_body} byte limit"},
                         413, cors)
        query = {k: v for k, v in request.query.items()} if request.query_string else {}
        try:
            body = await self._body(request, query)
        except BodyError as exc:
            return _json({"error": exc.message}, exc.status, cors)
        except (ContentEncodingError, ClientPayloadError, RequestPayloadError) as exc:  # aiohttp's inflating failed
            encoding = request.headers.get("Content-Encoding", "")[:40]
            return _json({"error": f"body cannot be decoded as Content-Encoding {encoding!r}: "
                                   f"{type(exc).__name__}"}, 400, cors)
        headers = request.headers
        content_type = _media_type(headers.get("Content-Type"))
        if request.method == "GET":  # Boomerang's image beacons carry everything in the query
            body, content_type = request.query_string.encode(), "application/x-www-form-urlencoded"
        device, browser = request_device_browser(headers.get("User-Agent"), headers.get("Sec-CH-UA-Mobile"),
                                                 headers.get("Sec-CH-UA"))
        ctx = self._context(self.now_ms(), headers.get("X-Rumgate-App") or query.get("app"),
                            headers.get("X-Rumgate-Release") or query.get("release"), self._country(request),
                            device, browser)
        canonical = canonical_items(body, content_type, ctx) if request.method == "POST" else None
        if canonical is not None and not self._room_for_apps(canonical):
            canonical = None  # the general path rejects the apps beyond the caps, with the reason
        if canonical is not None and self.allowed is not None and not all(map(self._release_ok, canonical)):
            canonical = None  # ... and the releases the app may not report
        if self.waiting >= self.config.max_waiting:
            self.counts["unavailable"] += 1
            return _json({"error": f"{self.waiting} requests are waiting for Kafka already; retry later"},
                         503, {**cors, "Retry-After": "5"})
        capped = 0
        if canonical is not None:  # the fast path: exactly what the general path would give
            room = self.views.room(client, len(canonical), time.monotonic())
            capped, canonical = len(canonical) - room, canonical[:room]
            answer = self.ingest_canonical(canonical, ctx) if canonical else self._none()
            body = canonical = None  # not kept to the ack (see ingest_canonical)
        else:
            try:
                items = parse_body(body, content_type, query)
            except FormatError as exc:
                return _json({"error": f"malformed body ({content_type}): {exc}"}, 400, cors)
            if not items:
                return _json({"error": "empty body: no beacons"}, 400, cors)
            answer = self.ingest_items(items, ctx, client)
        result = await self._waited(answer)
        if isinstance(result, str):
            return _json({"error": f"cannot store beacons right now ({result}); retry later"},
                         503, {**cors, "Retry-After": "5"})
        if capped:
            result["capped"] = result.get("capped", 0) + capped
            self.counts["capped"] += capped
        result.setdefault("capped", 0)
        status = 202 if result["accepted"] or result["duplicates"] or result["ignored"] or result["capped"] else 400
        if status == 400:
            result["error"] = "no valid beacon in the request: " + "; ".join(result["errors"][:3])
        return _json(result, status, cors)

    def _context(self, received_at: int, app: str | None, release: str | None, country: str | None,
                 device: str | None, browser: str | None) -> Context:
        """``Context(...)`` of these fields: the last request's when they are the same (it is frozen)."""
        key = (received_at, app, release, country, device, browser)
        last_key, ctx = self._last_ctx
        if key != last_key or ctx is None:
            ctx = Context(received_at=received_at, app=app, release=release, country=country, device=device,
                          browser=browser)
            self._last_ctx = (key, ctx)
        return ctx

    async def _body(self, request: web.Request, query: dict[str, str]) -> bytes:
        """The request's body, inflated, within ``max_body``; :class:`BodyError` when refused.

        A ``Content-Encoding`` is undone here when the server leaves bodies as sent
        (``auto_decompress=False``, :func:`ingest_application`); a server that inflates them
        itself (aiohttp's default, e.g. the worker's) says so on the payload
        (``total_compressed_bytes`` is set once aiohttp decodes it), and then the body is
        taken as it comes. Datadog's deflate, which no header names, is inflated either way.
        """
        limit = self.config.max_body
        header = request.headers.get("Content-Encoding")
        if header is not None:
            if getattr(request.content, "total_compressed_bytes", None) is not None:  # aiohttp inflated it
                return await read_body(request.content, "identity", limit)
            return await read_body(request.content, coding_of(header), limit)
        if query and "dd-evp-encoding" in request.query_string:
            coding = datadog_coding(query)
            if coding is not None:
                return await read_body(request.content, coding, limit, "dd-evp-encoding")
        return await read_body(request.content, "identity", limit)

    async def _waited(self, answer: Awaitable[dict]) -> dict | str:
        """The request's counts once Kafka has its records, or why not: not acknowledged
        within the bound (each batch's future fails then, see :meth:`_batch`), or producing
        failed. The client gets 503 and may retry; a record that lands later is stored
        once, and the retry's beacons are duplicates of it."""
        self.waiting += 1
        try:
            return await answer
        except asyncio.TimeoutError:
            self.counts["unavailable"] += 1
            return f"Kafka has not acknowledged them within {self.config.ack_timeout_s:g} s"
        except FirstCopiesNotStored as exc:
            self.counts["unavailable"] += 1
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - Kafka unreachable: the SDK may retry
            self.counts["unavailable"] += 1
            return type(exc).__name__
        finally:
            self.waiting -= 1

    @staticmethod
    async def _none() -> dict:
        """The counts of a request whose every beacon was capped."""
        return {"accepted": 0, "rejected": 0, "duplicates": 0, "ignored": 0, "errors": [], "capped": 0}

    async def ingest_items(self, items: list, ctx: Context, client: str = "?") -> dict:
        """Items of any format (see :mod:`streams.ingest.formats`) → records; the counts of each fate."""
        # SDK batches also carry events that are not page views (Datadog actions, resources;
        # bots, synthetic sessions): valid, just not ours. They are counted, not dead-lettered.
        beacons, bad, ignored = convert_items(items, ctx)
        errors = [f"item {i}: {reason}" for i, reason in bad]
        rejects: list[tuple[bytes, str]] = [(_dump(items[i]), reason) for i, reason in bad]
        beacons = self._within_app_cap(beacons, rejects, errors)
        if self.allowed is not None:
            beacons = self._of_allowed_releases(beacons, rejects, errors)
        room = self.views.room(client, len(beacons), time.monotonic())
        capped, beacons = len(beacons) - room, beacons[:room]
        good: dict[str, tuple[list[bytes], list[str]]] = {}  # app: encoded beacons, ids taken
        duplicates = 0
        first_copies: dict[str, list[asyncio.Future]] = {}  # app: batches that may hold them
        deadline = self._deadline()
        for beacon in beacons:  # valid: to_canonical checked each, and _protect keeps them so
            self._protect(beacon)
            app = beacon["app"]
            values, marked = good.setdefault(app, ([], []))
            beacon_id = beacon.get("id")
            if isinstance(beacon_id, str) and beacon_id:
                if not self.dedupe.first_time(beacon_id, ctx.received_at, scope=app):  # ids are per app
                    duplicates += 1
                    if app not in first_copies:
                        first_copies[app] = self._unstored_of(app)
                    continue
                marked.append(beacon_id)
            values.append(orjson.dumps(beacon))
        result = await self._produce({app: (values, len(values), marked) for app, (values, marked) in good.items()
                                      if values}, rejects, duplicates, len(ignored), errors)
        await self._first_copies_stored([f for futures in first_copies.values() for f in futures], deadline)
        result["capped"] = capped
        self.counts["capped"] += capped
        return result

    def _room_for_apps(self, items: list[CanonicalItem]) -> bool:
        """Whether a fast-path request's apps are within ``max_apps`` and ``max_batch_apps``."""
        apps = set(map(_APP_OF, items))  # one C pass: cheaper than comparing each to the first in Python
        if len(apps) == 1:  # the usual request
            return items[0].app in self.batches or len(self.batches) < self.config.max_batch_apps
        return len(apps) <= self.config.max_apps and len(self.batches) + len(apps - self.batches.keys()) \
            <= self.config.max_batch_apps

    def _within_app_cap(self, beacons: list[dict], rejects: list[tuple[bytes, str]], errors: list[str]) -> list[dict]:
        """The beacons of the request's first ``max_apps`` apps, of apps with a batch or room
        for one (``max_batch_apps``); the others go to ``rejects``."""
        apps: set[str] = set()
        kept = []
        room = self.config.max_batch_apps - len(self.batches)
        for beacon in beacons:
            app = beacon["app"]
            reason = None
            if app not in apps and len(apps) >= self.config.max_apps:
                reason = f"ingest: more than {self.config.max_apps} apps in one request"
            elif app not in apps and app not in self.batches:
                if room <= 0:
                    reason = f"ingest: more than {self.config.max_batch_apps} apps waiting for a record; retry later"
                else:
                    room -= 1
            if reason is not None:
                rejects.append((orjson.dumps(beacon), reason))
                if len(errors) < 20:
                    errors.append(f"app {app[:60]!r}: {reason}")
                continue
            apps.add(app)
            kept.append(beacon)
        return kept

    def ingest_canonical(self, items: list[CanonicalItem], ctx: Context) -> Awaitable[dict]:
        """Stamped canonical beacons from :func:`~streams.ingest.formats.fast.canonical_items` → records.

        Queues the beacons at once and returns what to await for their counts, which holds
        no beacon: from here on the batch owns them, and frees them as soon as their record
        is encoded rather than once Kafka has acknowledged it. (Kept to the ack, a request's
        beacons lived some 15 ms at load, and the many megabytes of them made every
        allocation and free slower.)
        """
        if self.routes.templates:  # _stamp has already cut the page to its path
            for item in items:
                if type(item.page) is str:
                    item.page = self.routes.reduce(item.page)
        if self.config.session_salt:
            for item in items:
                if type(item.session) is str:
                    item.session = self._session(item.session)
        beacons = len(items)
        apps = set(map(_APP_OF, items))
        ids = list(map(_ID_OF, items))
        if len(apps) == 1 and all(ids):  # the usual request: one app, every beacon with an id
            app = items[0].app
            return self._answer([self._add_unchecked(app, items, ids, ctx.received_at)], beacons, 0)
        groups: dict[str, list[CanonicalItem]] = {}
        for item in items:
            groups.setdefault(item.app, []).append(item)
        duplicates = 0
        waits = []  # (future, index of this request's duplicate count in its result, or -1)
        first_copies: list[asyncio.Future] = []
        for app, group in groups.items():
            ids = [item.id for item in group if item.id]
            if len(ids) == len(group):  # deduplicated with its batch, at flush
                waits.append(self._add_unchecked(app, group, ids, ctx.received_at))
                continue
            fresh = self.dedupe.first_times(ids, ctx.received_at, scope=app)
            answers = iter(fresh)
            kept = [item for item in group if not item.id or next(answers)]
            if len(kept) < len(group):
                duplicates += len(group) - len(kept)
                first_copies += self._unstored_of(app)
            if kept:
                marked = [beacon_id for beacon_id, new in zip(ids, fresh) if new]
                waits.append(self._add(app, [], len(kept), kept, marked))
        return self._answer(waits, beacons, duplicates, first_copies, self._deadline())

    async def _answer(self, waits: list[tuple[asyncio.Future, int]], beacons: int, duplicates: int,
                      first_copies: list[asyncio.Future] = (), deadline: float = 0.0) -> dict:
        """Wait for the records of a fast-path request, and for those that may hold the first
        copies of its duplicates; its counts."""
        for future, index in waits:
            result = await future
            if result is not None and index >= 0 and result[0][index]:
                duplicates += result[0][index]
                await self._first_copies_stored(result[1], result[2])
        if first_copies:  # (not a coroutine for nothing: most requests have no duplicates)
            await self._first_copies_stored(first_copies, deadline)
        accepted = beacons - duplicates
        self.counts["accepted"] += accepted
        self.counts["duplicates"] += duplicates
        return {"accepted": accepted, "rejected": 0, "duplicates": duplicates, "ignored": 0, "errors": [],
                "capped": 0}

    async def _produce(self, good: dict[str, tuple[list[bytes], int, list[str]]], rejects: list[tuple[bytes, str]],
                       duplicates: int, ignored: int, errors: list[str]) -> dict:
        """Queue good beacons per app and rejects for the DLQ; return once Kafka has them all.

        ``good`` maps an app to JSON fragments (members of the record's array, one or more
        beacons each), the number of beacons in them and the ids they took.
        """
        accepted = sum(count for _, count, _ in good.values())
        waits = [self._add(app, fragments, count, marked=marked)[0]
                 for app, (fragments, count, marked) in good.items()]
        if len(waits) == 1:
            await waits[0]
        elif waits:
            await asyncio.gather(*waits)
        if rejects:  # bounded here: batches bound their own wait (see _batch)
            dead = asyncio.ensure_future(asyncio.gather(*self._dead_letters(rejects)))
            dead.add_done_callback(_consume)  # it may fail after the request gave up
            await asyncio.wait_for(asyncio.shield(dead), self.config.ack_timeout_s)
        self.counts["accepted"] += accepted
        self.counts["rejected"] += len(rejects)
        self.counts["duplicates"] += duplicates
        self.counts["ignored"] += ignored
        return {"accepted": accepted, "rejected": len(rejects), "duplicates": duplicates,
                "ignored": ignored, "errors": errors[:20]}

    def _release_ok(self, beacon) -> bool:
        """Whether the beacon's app may report its release (see ``IngestConfig.releases``)."""
        if isinstance(beacon, dict):
            app, release = beacon.get("app"), beacon.get("release")
        else:
            app, release = beacon.app, beacon.release
        allowed = self.allowed(app)
        return allowed is None or release in allowed

    def _of_allowed_releases(self, beacons: list[dict], rejects: list[tuple[bytes, str]],
                             errors: list[str]) -> list[dict]:
        """The beacons whose release their app may report; the others go to ``rejects``, so a
        client cannot make up traffic for a release that is not out."""
        kept = []
        for beacon in beacons:
            if self._release_ok(beacon):
                kept.append(beacon)
                continue
            reason = (f"ingest: release {str(beacon.get('release'))[:60]!r} is not one app "
                      f"{str(beacon.get('app'))[:60]!r} may report (RUMGATE_INGEST_RELEASES={self.config.releases[:60]})")
            rejects.append((orjson.dumps(beacon), reason))
            if len(errors) < 20:
                errors.append(reason)
        return kept

    def _dead_letters(self, rejects: list[tuple[bytes, str]]) -> list[Awaitable[None]]:
        """One DLQ record for a request's rejected items (more only past ``record_bytes``).

        Its value is a JSON array of ``{"item": <the item as sent>, "reason": ...}``, in the
        request's order; ``rumgate-reason`` says how many and the first reason,
        ``rumgate-items`` how many, and ``rumgate-source`` is ``ingest`` (stage 1's DLQ
        records are one per rejected item, with ``rumgate-partition`` and ``rumgate-offset``).
        One record per request keeps a body of 20,000 junk items one produce, not 20,000.
        """
        members = [b'{"item":' + _member(raw) + b',"reason":' + orjson.dumps(reason) + b"}" for raw, reason in rejects]
        first = rejects[0][1]
        sends = []
        for record in json_arrays(members, self.config.record_bytes):
            headers = [("rumgate-reason", f"{len(rejects)} items rejected at ingest, the first: {first}"[:400].encode()),
                       ("rumgate-items", str(len(rejects)).encode()), ("rumgate-source", b"ingest")]
            sends.append(self.sink(self.config.dlq_topic, b"ingest", record, headers))
        return sends

    # -- privacy --------------------------------------------------------------------------------
    def _protect(self, beacon: dict) -> None:
        page = beacon.get("page")
        if type(page) is str:
            beacon["page"] = self._page(page)
        session = beacon.get("session")
        if self.config.session_salt and isinstance(session, str):
            beacon["session"] = self._session(session)
        for leak in ("ip", "client_ip", "user_agent_full", "url"):
            beacon.pop(leak, None)

    def _page(self, page: str) -> str:
        if "?" in page or "#" in page:  # every adapter's page_path strips them already: a guard
            page = page.partition("?")[0].partition("#")[0]
        return self.routes.reduce(page) if self.routes.templates else page

    def _session(self, session: str) -> str:
        return hmac.new(self.config.session_salt.encode(), session.encode(), hashlib.sha256).hexdigest()[:32]

    def _client(self, request: web.Request) -> str:
        """The client's address for the rate limit and view cap (memory only): the socket's
        peer, or behind a configured proxy the ``trusted_hops``-th address from the right of
        ``client_header`` (entries left of it are the client's to forge)."""
        header = self.config.client_header
        if header:
            addresses = [a.strip() for value in request.headers.getall(header, ()) for a in value.split(",")]
            addresses = [a for a in addresses if a]
            hops = max(1, self.config.trusted_hops)
            if len(addresses) >= hops:
                return addresses[-hops][:100]
        return request.remote or "?"

    def _country(self, request: web.Request) -> str | None:
        if not self.config.country_header:
            return None
        value = request.headers.get(self.config.country_header, "").strip().upper()
        return value if re.fullmatch(r"[A-Z]{2}", value) else None

    def _cors_headers(self, request: web.Request) -> dict[str, str] | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        allowed = self.config.cors_origins
        if "*" in allowed:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in allowed:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return None

    # -- batching -------------------------------------------------------------------------------
    def _batch(self, app: str) -> _Batch:
        batch = self.batches.get(app)
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self.batches[app] = _Batch(done=loop.create_future(), stored=loop.create_future(),
                                               deadline=self._deadline())
            self.unstored.setdefault(app, []).append(batch.stored)
            loop.call_later(self.config.linger_ms / 1000, self._flush_soon, app, batch)
            # one timer a batch, not one a request: its requests give up together
            loop.call_later(self.config.linger_ms / 1000 + self.config.ack_timeout_s, _expire, batch.done)
        return batch

    def _add(self, app: str, fragments: list[bytes], count: int, checked: list[CanonicalItem] = (),
             marked: list[str] = ()) -> tuple[asyncio.Future, int]:
        """Queue deduplicated beacons of one app (``marked``: the ids they took); the
        future resolves once their record is produced."""
        batch = self._batch(app)
        batch.fragments.extend(fragments)
        batch.checked.extend(checked)
        batch.marked.extend(marked)
        batch.count += count
        future = batch.done
        if batch.count >= self.config.batch_beacons:
            self._flush_soon(app, batch)
        return future, -1

    def _add_unchecked(self, app: str, items: list[CanonicalItem], ids: list[str],
                       received_at: int) -> tuple[asyncio.Future, int]:
        """Queue one request's beacons of one app, to be deduplicated at flush."""
        batch = self._batch(app)
        batch.received_at = received_at
        batch.unchecked.extend(items)
        batch.ids.extend(ids)
        batch.ends.append(len(batch.unchecked))
        batch.count += len(items)
        future, index = batch.done, len(batch.ends) - 1
        if batch.count >= self.config.batch_beacons:
            self._flush_soon(app, batch)
        return future, index

    def _flush_soon(self, app: str, batch: _Batch) -> None:
        if self.batches.get(app) is batch:
            del self.batches[app]
            asyncio.ensure_future(self._flush(app, batch))

    async def _flush(self, app: str, batch: _Batch) -> None:
        try:
            duplicates = self._deduplicate(app, batch)
            if duplicates is not None:  # the first copies may be in this app's earlier batches
                earlier = [f for f in self.unstored.get(app, ()) if f is not batch.stored]
                duplicates = (duplicates, earlier, batch.deadline)
            batch.checked = batch.unchecked = batch.ids = []  # encoded: free the beacons now, not at the ack
            # usually one record; more only when large beacons would make it too big for Kafka
            for record in json_arrays(batch.fragments, self.config.record_bytes):
                await self.sink(self.config.beacons_topic, app.encode(), record, [])
        except Exception as exc:  # noqa: BLE001 - the waiting requests get the error (a 503)
            # ... and their clients retry: the ids this record took must not turn the retry
            # into "duplicates" that are never stored. (When a batch went as several records
            # and an earlier one was stored, the retry stores its beacons again: at least once.)
            self.dedupe.forget(batch.marked, scope=app)
            self._settle(app, batch, stored=False)
            if not batch.done.done():
                batch.done.set_exception(exc)
            return
        self._settle(app, batch, stored=True)
        if not batch.done.done():  # else expired: its requests were answered 503 already
            batch.done.set_result(duplicates)

    def _settle(self, app: str, batch: _Batch, stored: bool) -> None:
        """Say whether the batch's records were stored, to the duplicates waiting on it."""
        batch.stored.set_result(stored)
        waiting = self.unstored[app]
        waiting.remove(batch.stored)
        if not waiting:
            del self.unstored[app]

    def _unstored_of(self, app: str) -> list[asyncio.Future]:
        """The batches of ``app`` not stored yet: where a duplicate's first copy may still wait."""
        return list(self.unstored.get(app, ()))

    def _deadline(self) -> float:
        """When a request arriving now is answered 503 if its records are not stored."""
        return asyncio.get_running_loop().time() + self.config.linger_ms / 1000 + self.config.ack_timeout_s

    async def _first_copies_stored(self, batches: list[asyncio.Future], deadline: float) -> None:
        """Return once every batch that may hold the first copy of a request's duplicate is
        stored; raise :class:`FirstCopiesNotStored` if one failed or is not stored by ``deadline``.

        Clients retry a 503'd request while its record may still be on its way to Kafka: the
        retry's beacons are duplicates of that record's, and a 202 for them is only true once
        the record is stored. When it fails, its ids are forgotten and the next retry is new.
        """
        if not batches:
            return
        pending = [f for f in batches if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        if not all(f.done() and f.result() for f in batches):
            raise FirstCopiesNotStored("the first copies of its duplicates are not stored")

    def _deduplicate(self, app: str, batch: _Batch) -> list[int] | None:
        """Drop the batch's duplicates, encode its structs; each request's duplicate count, or None."""
        duplicates = None
        items = batch.checked
        if batch.unchecked:
            fresh = self.dedupe.fresh_mask(batch.ids, batch.received_at, scope=app)
            if fresh.all():
                items += batch.unchecked
                batch.marked += batch.ids
            else:
                answers = fresh.tolist()
                items += [item for item, new in zip(batch.unchecked, answers) if new]
                batch.marked += [beacon_id for beacon_id, new in zip(batch.ids, answers) if new]
                duplicates = np.add.reduceat(~fresh, [0, *batch.ends[:-1]]).tolist()
        if items:  # one encoding for the record's structs, or one each if that is too big for one record
            encoded = encode_many(items)
            if len(encoded) + 2 <= self.config.record_bytes:
                batch.fragments.append(encoded)
            else:
                batch.fragments.extend(map(encode, items))
        return duplicates


def json_arrays(fragments: list[bytes], limit: int) -> list[bytes]:
    """JSON arrays of the ``fragments`` (array members), in order, each at most ``limit`` bytes.

    A fragment longer than ``limit`` gets an array of its own. No fragments: no arrays.

    >>> json_arrays([b"1", b"22", b"333"], limit=8)
    [b'[1,22]', b'[333]']
    """
    if sum(map(len, fragments)) + len(fragments) + 1 <= limit:
        return [b"[" + b",".join(fragments) + b"]"] if fragments else []
    arrays, part, size = [], [], 1  # size: the brackets and a comma per member
    for fragment in fragments:
        if part and size + len(fragment) + 1 > limit:
            arrays.append(b"[" + b",".join(part) + b"]")
            part, size = [], 1
        part.append(fragment)
        size += len(fragment) + 1
    arrays.append(b"[" + b",".join(part) + b"]")
    return arrays


@functools.lru_cache(maxsize=64)
def _media_type(header: str | None) -> str:
    """The media type of a ``Content-Type`` header, as ``request.content_type`` gives it.

    aiohttp parses the header anew for every request it is asked of (a few µs, more than
    anything else in the handler but decoding); the headers SDKs send are few, so here
    each is parsed once, by the same aiohttp function.

    >>> _media_type("text/plain;charset=UTF-8"), _media_type(None)
    ('text/plain', 'application/octet-stream')
    """
    return parse_content_type(header)[0] if header is not None else "application/octet-stream"


def _allowed_releases(setting: str, releases_of: Callable[[str], set[str] | None] | None
                      ) -> Callable[[str], set[str] | None] | None:
    """``app -> the releases it may report, or None for any`` of the ``releases`` setting;
    None when every release is allowed.

    >>> sorted(_allowed_releases("list:r1, r2", None)("shop"))
    ['r1', 'r2']
    >>> _allowed_releases("any", None) is None
    True
    """
    text = setting.strip()
    if text in ("", "any"):
        return None
    if text == "open":
        if releases_of is None:
            raise ValueError("RUMGATE_INGEST_RELEASES=open needs the worker's rollouts (releases_of)")
        return releases_of
    if text.startswith("list:"):
        names = frozenset(x.strip() for x in text[5:].split(",") if x.strip())
        return lambda app: names
    raise ValueError(f"RUMGATE_INGEST_RELEASES: must be any, open or list:<r1,r2>, got {setting[:60]!r}")


def _expire(done: asyncio.Future) -> None:
    """Fail a batch's future its record has not resolved within the ack bound."""
    if not done.done():
        done.set_exception(asyncio.TimeoutError())
        done.add_done_callback(_consume)


def _consume(task: asyncio.Future) -> None:
    """Retrieve a finished task's exception, so one nobody waits for anymore is not logged."""
    if not task.cancelled():
        task.exception()


def _member(raw: bytes) -> bytes:
    """``raw`` as a JSON value: itself when it is one, else as a JSON string."""
    try:
        orjson.loads(raw)
        return raw
    except orjson.JSONDecodeError:
        return orjson.dumps(raw.decode("utf-8", "replace"))


def _dump(item) -> bytes:
    """A rejected item as it can be kept: its JSON, else its repr, else what kind it is
    (an item nested deeper than orjson and repr go is described, not quoted)."""
    if isinstance(item, bytes):
        return item
    try:
        return orjson.dumps(item)
    except TypeError:
        pass
    try:
        return repr(item).encode()
    except RecursionError:
        return orjson.dumps(f"<a {type(item).__name__} nested too deeply to quote>")


_JSON_TYPE = {"Content-Type": "application/json"}


def _json(data: dict, status: int, headers: dict[str, str] | None = None) -> web.Response:
    # the Content-Type as a header rather than ``content_type=``: the same header, without
    # aiohttp's checks of the argument (about 0.8 µs of every answer)
    return web.Response(body=orjson.dumps(data), status=status,
                        headers={**headers, **_JSON_TYPE} if headers else _JSON_TYPE)


def ingest_config(settings) -> IngestConfig:
    """The :class:`IngestConfig` of a :class:`~streams.live.settings.Settings`."""
    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip())  # noqa: E731
    return IngestConfig(
        beacons_topic=settings.topics.beacons, dlq_topic=settings.topics.dlq,
        cors_origins=split(settings.ingest_cors_origins), cors_headers=split(settings.ingest_cors_headers),
        max_body=settings.ingest_max_body,
        rate_per_s=settings.ingest_rate_limit, burst=max(1, int(2 * settings.ingest_rate_limit)),
        dedupe_ttl_s=settings.ingest_dedupe_ttl_s, dedupe_slots=settings.ingest_dedupe_slots,
        country_header=settings.ingest_country_header or None,
        session_salt=settings.ingest_session_salt or None, routes=split(settings.ingest_routes),
        linger_ms=settings.ingest_linger_ms, max_apps=settings.ingest_max_apps,
        max_batch_apps=settings.ingest_max_batch_apps, ack_timeout_s=settings.ingest_ack_timeout_s, max_waiting=settings.ingest_max_waiting,
        client_header=settings.ingest_client_header or None, trusted_hops=settings.ingest_trusted_hops,
        client_views=settings.ingest_client_views, client_window_s=settings.ingest_client_window_s,
        releases=settings.ingest_releases)


def ingest_application(**kwargs) -> web.Application:
    """An aiohttp application for the ingest routes: request bodies reach the handler as sent
    (``auto_decompress=False``), for :mod:`streams.ingest.inflate` to inflate within the limit
    and refuse with a JSON answer what it cannot (aiohttp's own decoding answers in plain text
    before any handler runs, and knows no Datadog deflate). ``kwargs`` go to ``web.Application``.
    """
    return web.Application(handler_args={"auto_decompress": False}, **kwargs)


def add_ingest_routes(app: web.Application, ingestor: Ingestor) -> None:
    """``POST``/``GET``/``OPTIONS /v1/beacons`` on ``app``, and the browser snippet."""
    app.router.add_route("POST", "/v1/beacons", ingestor.handle)
    app.router.add_route("GET", "/v1/beacons", ingestor.handle)
    app.router.add_route("OPTIONS", "/v1/beacons", ingestor.handle)
    add_snippet_routes(app)
