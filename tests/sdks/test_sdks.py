"""Does the gate count what real RUM SDKs send? One page load per SDK configuration, end to end.

The real SDK (:mod:`tests.sdks.sdks`) runs in Chromium on the test shop page
(:mod:`tests.sdks.browser`) and sends to a real ``rumgate ingest`` endpoint on its own origin,
which allows only the page's origin, on the embedded Tansu broker. A :class:`Relay` in front
of the endpoint passes the bytes on as they are and notes every answer (a refused request
leaves no other trace: unload beacons are invisible to Playwright). The records the endpoint
stored on ``rum.beacons`` then go through stage 1 (:class:`~detectors.pipeline.aggregate.
PartitionAggregator`, as the worker runs it) and ``rum.beacons.dlq`` is read. For one page
load the window summaries must hold exactly one page view, of app ``shop-web`` and release
``2026.11.23-abc``, on a desktop, with LCP, FCP, TTFB and CLS (and INP and the JS error where
the SDK reports them; CLS above 0 and INP of at least the click handler's 80 ms), every
request must be answered 2xx and none blocked by the browser, every stored beacon must name
its browser, and nothing may be dead-lettered.

Each check that fails is listed, so a configuration rumgate cannot count yet is marked
``xfail(strict=True)`` with what fails today: when a gap closes, the test passes, strict
xfail turns that red, and the mark is removed. The checks are never loosened to pass.

One browser, one page server and one broker serve every test (module fixtures); each
configuration gets its own topics and endpoint. The browser and the servers run on one
event loop in a thread of their own, because pytest's loop lives per test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
import pytest

from detectors.beacon import METRICS
from detectors.pipeline.aggregate import PartitionAggregator
from detectors.sketch import LogSketch
from detectors.windows import WindowSummary
from streams.live.broker import EmbeddedBroker, free_port
from streams.live.topics import read_to_end
from tests.integration.conftest import Pipeline
from tests.sdks.browser import CHROMIUM, CHROMIUM_ARGS, PageServer, UntimedClicks, Visit, missing, visit
from tests.sdks.sdks import APP, RELEASE, SDKS, Sdk

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


class Browsing:
    """Chromium and the page server on an event loop in their own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sdk-browser", daemon=True)
        self.thread.start()
        self.pages = PageServer()
        self.run(self._start())

    def run(self, coro, timeout_s: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _start(self) -> None:
        from playwright.async_api import async_playwright

        await self.pages.start()
        self.playwright = await async_playwright().start()
        self.browser = await self.playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                             timeout=60_000)

    async def _stop(self) -> None:
        await self.browser.close()
        await self.playwright.stop()
        await self.pages.stop()

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def browsing() -> Iterator[Browsing]:
    b = Browsing()
    yield b
    b.close()


@pytest.fixture(scope="module")
def sdk_broker(tmp_path_factory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("sdk-broker") / "tansu.log") as b:
        yield b


@dataclass
class Outcome:
    """What one page load became: the browser's view, the endpoint's counts, the topics, stage 1."""

    visit: Visit
    counts: dict
    answers: list[tuple[str, str, int, str]]  # every request the endpoint answered
    beacons: list[dict] = field(default_factory=list)  # as stored on rum.beacons
    dead: list[bytes] = field(default_factory=list)  # rum.beacons.dlq values
    summaries: list[WindowSummary] = field(default_factory=list)
    stage1_rejects: list[str] = field(default_factory=list)


async def _start_ingest(settings) -> asyncio.Task:
    from streams.cli.ingest import serve_ingest

    ready = asyncio.Event()
    task = asyncio.create_task(serve_ingest(settings, ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # raises what stopped it
    assert ready.is_set(), "the ingestion endpoint did not start within 60 s"
    return task


class Relay:
    """Passes every request to the endpoint as it came and notes how each was answered.

    Unload beacons are invisible to Playwright, and a refused request (CORS, 400) leaves no
    trace on the topics: the relay is where the test sees every answer. It forwards bytes as
    they are (compressed bodies stay compressed) and answers with the endpoint's own status,
    headers and body, so the browser applies the endpoint's CORS rules, not the relay's.
    """

    HOP = frozenset({"host", "connection", "content-length", "transfer-encoding", "keep-alive"})

    def __init__(self, target: str) -> None:
        self.target = target
        self.answers: list[tuple[str, str, int, str]] = []  # method, path, status, body (4xx/5xx)
        self._runner = None
        self.base = ""

    async def start(self) -> None:
        import aiohttp
        from aiohttp import web

        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._pass)
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._http.close()

    async def _pass(self, request):
        from aiohttp import web

        headers = {k: v for k, v in request.headers.items() if k.lower() not in self.HOP}
        body = await request.read()
        async with self._http.request(request.method, self.target + request.path_qs, headers=headers,
                                      data=body or None) as answer:
            payload = await answer.read()
            back = {k: v for k, v in answer.headers.items() if k.lower() not in self.HOP}
            status = answer.status
        self.answers.append((request.method, request.path, status,
                             payload.decode(errors="replace")[:300] if status >= 400 else ""))
        return web.Response(status=status, body=payload, headers=back)


async def _records(servers: str, topic: str) -> list:
    return [r async for batch in read_to_end(servers, topic) for r in batch]


def _stage1(records: list) -> tuple[list[WindowSummary], list[str]]:
    """Every window the records make, closed (``flush``), and stage 1's refusals."""
    summaries, rejects = [], []
    by_partition: dict[int, list] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append((r.offset, r.value))
    for partition, rows in sorted(by_partition.items()):
        agg = PartitionAggregator(partition)
        for step in (agg.process(sorted(rows)), agg.flush()):
            summaries += step.closed
            rejects += [d.reason for d in step.rejects]
    return summaries, rejects


async def _load(browsing: Browsing, pipeline: Pipeline, sdk: Sdk) -> Outcome:
    import aiohttp

    port = free_port()
    settings = replace(pipeline.settings, http=f"127.0.0.1:{port}", ingest_cors_origins=browsing.pages.origin)
    ingest = await _start_ingest(settings)
    relay = Relay(f"http://127.0.0.1:{port}")
    await relay.start()
    try:
        seen = await visit(browsing.browser, browsing.pages, sdk, f"{relay.base}/v1/beacons")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                counts = await response.json()
    finally:
        await relay.stop()
        ingest.cancel()
        try:
            await ingest
        except asyncio.CancelledError:
            pass
    servers = pipeline.broker.servers
    records = await _records(servers, pipeline.topics.beacons)
    outcome = Outcome(seen, counts, relay.answers, dead=[r.value for r in await _records(servers, pipeline.topics.dlq)])
    for r in records:
        value = orjson.loads(r.value)
        outcome.beacons += value if isinstance(value, list) else [value]
    outcome.summaries, outcome.stage1_rejects = _stage1(records)
    return outcome


def _merged(summaries: list[WindowSummary], metric: str) -> LogSketch | None:
    """The metric's sketch over every window, or None when no page view had it."""
    merged = None
    for summary in summaries:
        sketch = summary.sketches[metric]
        if not sketch.count:
            continue
        if merged is None:
            merged = sketch.copy()
        else:
            merged.merge(sketch)
    return merged


def gaps(sdk: Sdk, o: Outcome) -> list[str]:
    """Every way this page load was not counted as the one page view it was."""
    found = []
    refused = [f"{method} {status} {body}".strip() for method, _, status, body in o.answers if status >= 300]
    if refused:
        found.append(f"{len(refused)} of {len(o.answers)} requests refused: {refused[:3]}")
    cors = [p for p in o.visit.problems if "CORS policy" in p]
    if cors:
        found.append(f"the browser blocked {len(cors)} requests: {cors[0]}")
    views = sum(s.page_views for s in o.summaries)
    if views != 1:
        found.append(f"{views} page views in the window summaries, not 1")
    keys = {s.key for s in o.summaries if s.page_views}
    if {(k.app, k.release) for k in keys} - {(APP, RELEASE)}:
        found.append(f"app/release {sorted({(k.app, k.release) for k in keys})}, not {(APP, RELEASE)}")
    if {k.segment for k in keys} - {"desktop"}:
        found.append(f"device {sorted({k.segment for k in keys})}, not desktop")
    unnamed = [b for b in o.beacons if not b.get("browser")]
    if unnamed:
        found.append(f"{len(unnamed)} of {len(o.beacons)} stored beacons name no browser")
    wanted = [m for m in METRICS if m != "INP" or sdk.inp]
    sketches = {m: _merged(o.summaries, m) for m in wanted}
    absent = [m for m in wanted if sketches[m] is None]
    if absent:
        found.append(f"no {', '.join(absent)}")
    if sketches.get("CLS") is not None and sketches["CLS"].quantile(1.0) == 0:
        found.append("CLS 0 (the banner shifts the page by about 0.09)")
    if sketches.get("INP") is not None and sketches["INP"].quantile(1.0) < 80:
        found.append(f"INP {sketches['INP'].quantile(1.0):.0f} ms (the click handler blocks for 80 ms)")
    if sdk.errors and sum(s.error_views for s in o.summaries) != 1:
        found.append(f"{sum(s.error_views for s in o.summaries)} page views with an error, not 1")
    if o.dead:
        reasons = [item.get("reason") for value in o.dead for item in orjson.loads(value)]
        found.append(f"{len(reasons)} items dead-lettered: {reasons[:3]}")
    if o.stage1_rejects:
        found.append(f"stage 1 refused {o.stage1_rejects[:3]}")
    return found


#: What rumgate does not count yet, per configuration: the reason of its strict xfail.
GAPS: dict[str, str] = {
    "boomerang": "CLS 0: c.cls restarts at every beacon, so the page's CLS is the sum over its beacons, and the "
                 "banner's shift is on the error beacon; stage 1 counts a metric's first value, which cannot "
                 "rebuild a sum, and the adapter sends the page-load beacon's",
}


def _params():
    for sdk in SDKS:
        # raises=AssertionError: only the checks' failure is expected; the harness failing is not
        marks = ([pytest.mark.xfail(strict=True, raises=AssertionError, reason=GAPS[sdk.name])]
                 if sdk.name in GAPS else [])
        yield pytest.param(sdk, marks=marks, id=sdk.name)


@pytest.mark.parametrize("sdk", list(_params()))
def test_one_page_load_is_one_counted_page_view(sdk: Sdk, browsing: Browsing, sdk_broker: EmbeddedBroker,
                                                tmp_path: Path) -> None:
    started = time.monotonic()
    for attempt in range(3):
        # A page on which Chromium times no click at all (one in some tens, see
        # browser._click_timed) is thrown away with its topics and endpoint: it is the
        # browser's failure, not the SDK's or rumgate's.
        pipeline = Pipeline(sdk_broker, tmp_path / str(attempt), partitions=1)
        try:
            outcome = browsing.run(_load(browsing, pipeline, sdk))
            break
        except UntimedClicks:
            if attempt == 2:
                raise
    found = gaps(sdk, outcome)
    context = (f"\nendpoint counts {outcome.counts}\nbrowser {outcome.visit.problems}\npage {outcome.visit.seen}"
               f"\nbeacons {outcome.beacons}\n({time.monotonic() - started:.1f} s)")
    assert not found, "; ".join(found) + context
