"""One page load per SDK in Debian's Chromium: the test shop page, its server, and the visit.

The page is what the gate is meant to measure: an LCP image (a real PNG, answered after
150 ms so that LCP comes after FCP), a banner inserted above the content 300 ms after
``load`` (a layout shift with no recent input: CLS > 0), a button whose click handler
blocks for 80 ms and then updates the cart (INP) and an uncaught error thrown after load.

Headless Chromium keeps every page "visible", so the page is hidden the way a user's tab
most often is: it is closed with its unload handlers run (``page.close(run_before_unload=
True)``), which fires the real ``pagehide`` and then ``visibilitychange`` to hidden. Beacons
sent then are invisible to Playwright's request events, so callers count what their server
received, and wait a little after the close for late ones.

Playwright drives ``/usr/bin/chromium`` (``playwright install`` cannot download a browser
here); the SDKs come from ``tests/sdks/web/node_modules`` (``npm ci --prefix tests/sdks/web``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from playwright.async_api import TimeoutError as PlaywrightTimeout

from streams.live.broker import free_port
from tests.sdks.sdks import NODE_MODULES, Sdk, build_bundles

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "PageServer", "UntimedClicks", "Visit", "missing", "png", "visit"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
PAGE_PATH = "/shop/running-shoes"
#: How long the page stays open after the click.
DWELL_MS = 1500
#: How long requests may still arrive after the page closed (unload beacons, late flushes).
LATE_S = 1.5


def missing() -> str | None:
    """Why the SDK pages cannot run here (what to install), or None."""
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium: run `apt-get install -y chromium`"
    if not (NODE_MODULES / ".package-lock.json").exists():
        return "the SDKs are not installed: run `npm ci --prefix tests/sdks/web`"
    return None


def png(width: int = 800, height: int = 450) -> bytes:
    """A real PNG (an RGB gradient), made here: the LCP element is an image."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")


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
  window.timedInteractions = 0;
  new PerformanceObserver(function (list) {
    list.getEntries().forEach(function (e) { if (e.interactionId && e.duration >= 40) window.timedInteractions++; });
  }).observe({type: 'event', durationThreshold: 40});
</script>
{head}
</head>
<body style="margin:0;font-family:sans-serif">
<div id="content">
<h1 style="font-size:32px;margin:0;padding:16px">Running shoes</h1>
<img id="hero" src="/hero.png" width="800" height="450" alt="Running shoes">
<p style="font-size:20px;padding:16px">Light, quick and comfortable. Free returns within thirty days.</p>
<button id="buy" onclick="var t = performance.now(); while (performance.now() - t < 80) {}
                          document.getElementById('cart').textContent = 'Cart: 1 item';">Add to cart</button>
<span id="cart" style="font-size:20px;padding:16px">Cart: empty</span>
</div>
<script>
  // After load: a banner is inserted above the content (a layout shift, no input), then an
  // uncaught error.
  addEventListener('load', function () {
    setTimeout(function () {
      var banner = document.createElement('div');
      banner.style.cssText = 'height:120px;background:#fd0;font-size:24px';
      banner.textContent = 'Free shipping this week';
      document.body.insertBefore(banner, document.getElementById('content'));
      setTimeout(function () { throw new Error('rumgate test error'); }, 50);
    }, 300);
  });
</script>
</body></html>
"""


class PageServer:
    """The test shop on its own origin: the page of the current SDK, the image, the SDK files.

    ``sdk`` and ``collector`` say which page ``GET /shop/running-shoes`` answers; ``seen``
    collects what the page reported about itself (its visibility changes).
    """

    def __init__(self) -> None:
        self.sdk: Sdk | None = None
        self.collector = ""
        self.seen: list[str] = []
        self._image = png()
        self._build = Path(tempfile.mkdtemp(prefix="rumgate-sdk-bundles-"))
        self._runner: web.AppRunner | None = None
        self.origin = ""

    async def start(self) -> None:
        await asyncio.to_thread(build_bundles, self._build)
        app = web.Application()
        app.router.add_get(PAGE_PATH, self._page)
        app.router.add_get("/hero.png", self._hero)
        app.router.add_get("/sdk/{path:.+}", self._script)
        app.router.add_post("/seen", self._report)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.origin = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        shutil.rmtree(self._build, ignore_errors=True)

    async def _page(self, request: web.Request) -> web.Response:
        assert self.sdk is not None
        html = PAGE.replace("{head}", self.sdk.head(self.collector))
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _hero(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0.15)
        return web.Response(body=self._image, content_type="image/png", headers={"Cache-Control": "no-store"})

    async def _script(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        root = self._build if path.startswith("build/") else NODE_MODULES
        name = path[len("build/"):] if path.startswith("build/") else path
        file = (root / name).resolve()
        if root.resolve() not in file.parents or not file.is_file():
            raise web.HTTPNotFound()
        text = file.read_text()
        if path == "boomerangjs/boomerang.js":  # what Boomerang's own build fills in
            version = json.loads((NODE_MODULES / "boomerangjs" / "package.json").read_text())["version"]
            text = text.replace("%boomerang_version%", version)
        return web.Response(text=text, content_type="application/javascript")

    async def _report(self, request: web.Request) -> web.Response:
        self.seen.append(await request.text())
        return web.Response(status=204)


@dataclass
class Visit:
    """What the browser showed of one page load (the servers keep what they received)."""

    seen: list[str] = field(default_factory=list)  # the page's own reports
    problems: list[str] = field(default_factory=list)  # console errors, failed requests


class UntimedClicks(RuntimeError):
    """Chromium timed none of the clicks on this page: it can show no INP to any SDK."""


async def _click_timed(page, tries: int = 4) -> None:
    """Click the slow button (INP of about 80 ms) until Chromium has timed the interaction.

    Headless Chromium times an interaction once a frame after it has been presented; a page
    that then draws nothing often got no timing at all (or only the first input's 8 ms), so
    every SDK missed INP in about one run in five. Waiting with ``wait_for_function`` (which
    polls on animation frames) gives it frames to present; a click still untimed after that
    is made again, as a user would.
    """
    await page.bring_to_front()
    for attempt in range(tries):
        await page.click("#buy")
        try:
            await page.wait_for_function("window.timedInteractions > 0", timeout=3_000)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise UntimedClicks(f"Chromium timed none of {tries} clicks: no SDK can report INP") from None


async def visit(browser, pages: PageServer, sdk: Sdk, collector: str,
                on_close: Callable[[], None] | None = None) -> Visit:
    """Load the shop page with ``sdk`` sending to ``collector``, use it, close it.

    ``on_close`` is called just before the page is closed.
    """
    pages.sdk, pages.collector, pages.seen = sdk, collector, []
    result = Visit(seen=pages.seen)
    # The default viewport (1280x720): a taller one (Playwright's device-metrics override past
    # the headless window) left Chromium timing no interaction at all, so no SDK saw INP.
    context = await browser.new_context()
    try:
        page = await context.new_page()
        page.on("console", lambda m: result.problems.append(f"console.{m.type}: {m.text}")
                if m.type in ("warning", "error") and "rumgate test error" not in m.text else None)
        page.on("pageerror", lambda e: None if "rumgate test error" in str(e) else
                result.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: result.problems.append(f"request failed: {r.method} {r.url} {r.failure}"))
        await page.goto(f"{pages.origin}{PAGE_PATH}?utm_source=mail&email=a%40b.example", wait_until="load")
        await page.wait_for_function("window.layoutShift > 0", timeout=10_000)
        await page.wait_for_timeout(400)  # the error is thrown, SDK timers run
        await _click_timed(page)
        # The user stays a moment: SDKs that report errors on a timer (Boomerang: 1 s) have
        # sent them by the time the tab is closed.
        await page.wait_for_timeout(DWELL_MS)
        if await page.evaluate("document.visibilityState") != "visible":
            result.problems.append("the page was hidden before it was closed")
        if on_close is not None:
            on_close()
        await page.close(run_before_unload=True)  # pagehide, then visibilitychange → hidden
        await asyncio.sleep(LATE_S)
    finally:
        await context.close()
    return result
