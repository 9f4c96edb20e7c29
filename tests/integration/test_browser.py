"""The browser snippet end to end: real headless Chromium, the real ingestion endpoint, Kafka.

A test page on one origin loads ``/v1/rumgate.js`` from the ingestion endpoint on another
(``crossorigin``, so the script's CORS header is needed too) and the snippet's beacon goes
cross-origin to ``/v1/beacons``, which only allows the page's origin. The page paints large
text (LCP), shifts its layout late (CLS > 0), throws an error and rejects a promise, and has
a button whose click handler blocks for 80 ms (INP).

Headless Chromium keeps every page "visible" (other tabs, minimising and CDP lifecycle
freezing change nothing), so the page is hidden the way a user's tab most often is: it is
closed, with unload handlers run (``page.close(run_before_unload=True)``). That fires the real
``pagehide`` and then ``visibilitychange`` to hidden; the page reports the latter to its own
server, and the test checks it fired.

Playwright drives Debian's ``/usr/bin/chromium`` (``playwright install`` cannot download a
browser here). The test skips only when that browser or ``streams/ingest/web/node_modules`` is
missing; ``.ci/run`` installs both.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.live.broker import free_port
from streams.ingest.snippet import WEB_DIR, add_snippet_routes
from streams.live.topics import read_to_end
from tests.integration.conftest import Pipeline

CHROMIUM = Path("/usr/bin/chromium")
VITALS = WEB_DIR / "node_modules" / "web-vitals" / "dist" / "web-vitals.iife.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
APP, RELEASE = "shop-web", "2026.11.23-abc"

needs_vitals = pytest.mark.skipif(not VITALS.exists(), reason="web-vitals is not installed: run "
                                                              "`npm ci --prefix streams/ingest/web`")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run "
                                                                 "`apt-get install -y chromium`")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>rumgate test shop</title>
<link rel="icon" href="data:,">
<script>
  // What the test cannot see once the page is closed: tell this page's own server.
  addEventListener('visibilitychange', function () {
    navigator.sendBeacon('/seen', 'visibilitychange:' + document.visibilityState);
  });
  window.layoutShift = 0;
  new PerformanceObserver(function (list) {
    list.getEntries().forEach(function (e) { if (!e.hadRecentInput) window.layoutShift += e.value; });
  }).observe({type: 'layout-shift', buffered: true});
</script>
<script src="{endpoint}/v1/rumgate.js" crossorigin="anonymous" async
        data-app="{app}" data-release="{release}" data-endpoint="{endpoint}/v1/beacons"></script>
</head>
<body style="margin:0;font-family:sans-serif">
<h1 style="font-size:64px;margin:0;padding:24px">Running shoes</h1>
<div id="banner" style="height:40px;background:#fd0"></div>
<p style="font-size:28px;padding:24px">Light, quick and comfortable. Free returns within thirty days.</p>
<button id="buy" onclick="var t = performance.now(); while (performance.now() - t < 80) {}">Add to cart</button>
<script>
  // After load: a banner grows and pushes the text down (a layout shift, no input), then
  // an uncaught error and an unhandled rejection (the snippet counts both).
  addEventListener('load', function () {
    setTimeout(function () {
      document.getElementById('banner').style.height = '240px';
      setTimeout(function () { throw new Error('rumgate test error'); }, 0);
      Promise.reject(new Error('rumgate test rejection'));
    }, 200);
  });
</script>
</body></html>
"""


# -- serving the snippet ---------------------------------------------------------------------


async def _get(web_dir: Path, headers: dict | None = None):
    app = web.Application()
    add_snippet_routes(app, web_dir)
    async with TestClient(TestServer(app)) as client:
        first = await client.get("/v1/rumgate.js", headers=headers or {})
        body = await first.read()
        again = await client.get("/v1/rumgate.js", headers={"If-None-Match": first.headers.get("ETag", "-")})
        return first, body, again


@needs_vitals
def test_snippet_is_served_with_web_vitals() -> None:
    response, body, again = asyncio.run(_get(WEB_DIR, {"Origin": "https://shop.example"}))
    assert response.status == 200
    assert response.content_type == "application/javascript"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "max-age" in response.headers["Cache-Control"]
    assert response.headers["Content-Encoding"] == "gzip"  # the client asked for it
    text = body.decode()
    assert "webVitals" in text and "navigator.sendBeacon" in text and "onLCP" in text
    assert "sourceMappingURL" not in text  # the map is not served
    assert text.rstrip().endswith("})();")  # one wrapper: no globals left behind
    assert again.status == 304


def test_snippet_without_node_modules_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "rumgate-snippet.js").write_text("/* snippet */")
    response, body, _ = asyncio.run(_get(tmp_path))
    assert response.status == 503
    assert "npm ci --prefix streams/ingest/web" in body.decode()


# -- end to end ------------------------------------------------------------------------------


async def _serve_page(endpoint: str) -> tuple[web.AppRunner, str, list[str]]:
    """The shop page, on its own origin; ``seen`` collects what the page reports."""
    seen: list[str] = []
    html = PAGE.replace("{endpoint}", endpoint).replace("{app}", APP).replace("{release}", RELEASE)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    async def report(request: web.Request) -> web.Response:
        seen.append(await request.text())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/shop/running-shoes", page)
    app.router.add_post("/seen", report)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}", seen


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


async def _records(servers: str, topic: str) -> list:
    return [r async for batch in read_to_end(servers, topic) for r in batch]


async def _browse(pipeline: Pipeline) -> dict:
    from playwright.async_api import async_playwright

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    page_server, origin, seen = await _serve_page(endpoint)
    # Only the test page's origin may send beacons: the CORS check is exercised, not bypassed.
    settings = replace(pipeline.settings, http=f"127.0.0.1:{port}", ingest_cors_origins=origin)
    ingest = await _start_ingest(settings)
    problems: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
            try:
                page = await browser.new_page()
                page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
                        if m.type in ("warning", "error") and "rumgate test" not in m.text else None)
                page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
                started_ms = int(time.time() * 1000)
                await page.goto(f"{origin}/shop/running-shoes?utm=x&email=a%40b.example", wait_until="load")
                # Settle: the late layout shift has been observed, and a frame or two after it.
                await page.wait_for_function("window.layoutShift > 0", timeout=10_000)
                await page.wait_for_timeout(300)
                await page.click("#buy")  # a slow click handler: INP of about 80 ms
                await page.wait_for_timeout(200)
                assert await page.evaluate("document.visibilityState") == "visible"
                await page.close(run_before_unload=True)  # pagehide, then visibilitychange → hidden
            finally:
                await browser.close()

        deadline = time.monotonic() + 30
        records: list = []
        while not records and time.monotonic() < deadline:
            records = await _records(pipeline.broker.servers, pipeline.topics.beacons)
            if not records:
                await asyncio.sleep(0.25)
        dlq = await _records(pipeline.broker.servers, pipeline.topics.dlq)
        return {"records": records, "dlq": dlq, "seen": seen, "problems": problems, "started_ms": started_ms,
                "finished_ms": int(time.time() * 1000)}
    finally:
        ingest.cancel()
        try:
            await ingest
        except asyncio.CancelledError:
            pass
        await page_server.cleanup()


@needs_vitals
@needs_chromium
def test_snippet_beacon_reaches_kafka_from_headless_chromium(pipeline: Pipeline) -> None:
    run = asyncio.run(_browse(pipeline))
    context = f"page reported {run['seen']}; browser problems {run['problems']}; dlq {run['dlq']}"
    assert "visibilitychange:hidden" in run["seen"], context
    assert len(run["records"]) == 1, context
    record = run["records"][0]
    assert record.key == APP.encode()
    beacons = orjson.loads(record.value)
    assert isinstance(beacons, list) and len(beacons) == 1, beacons  # canonical beacons, one page view
    beacon = beacons[0]
    assert run["dlq"] == [], context

    assert beacon["app"] == APP and beacon["release"] == RELEASE
    assert run["started_ms"] <= beacon["ts"] <= run["finished_ms"]  # stamped by the server
    assert beacon["page"] == "/shop/running-shoes"  # the query string stayed in the browser
    assert re.fullmatch(r"[0-9a-f]{32}", beacon["id"]), beacon  # this send's id
    assert re.fullmatch(r"[0-9a-f]{32}", beacon["view"]) and beacon["view"] != beacon["id"], beacon  # the page view's
    assert re.fullmatch(r"[0-9a-f]{32}", beacon["session"]), beacon
    assert beacon["device"] == "desktop"
    assert beacon["errors"] == 2  # the thrown error and the unhandled rejection

    metrics = beacon["metrics"]
    assert {"LCP", "FCP", "TTFB", "CLS", "INP"} <= set(metrics), metrics
    for name in ("LCP", "FCP", "TTFB"):
        assert 0 < metrics[name] < 30_000, metrics
    assert 80 <= metrics["INP"] < 30_000, metrics  # the handler's busy loop, at least
    assert metrics["LCP"] >= metrics["FCP"], metrics
    assert 0 < metrics["CLS"] < 1, metrics  # the late banner
