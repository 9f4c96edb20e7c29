"""Record what the real RUM SDKs send: ``python -m tests.sdks.capture --write [--sdk NAME]``.

Each SDK configuration of :mod:`tests.sdks.sdks` loads the test shop once in Chromium and
sends to a capture server that takes anything: any path and method, ``OPTIONS``
preflights answered, CORS allowing the page's origin with credentials and whatever headers
the preflight asks for, 202 for Elastic's intake and 200 otherwise. Every request it
received is written, in arrival order, to ``tests/sdks/captures/<config>.json`` as
``{method, path, query, headers, body_b64, phase}``: ``query`` is the raw query string,
``headers`` are lower-cased without the ones that only describe this run (host, origin,
referer, cookie, content length, connection); ``user-agent`` and ``sec-ch-ua*`` are kept,
since device and browser detection read them. ``phase`` is ``open`` or ``closing``: whether
the request arrived before or after the page was closed.

These are recordings of the real SDKs, for the format adapters' tests: never edit one by
hand; run this again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path

from aiohttp import web

from streams.live.broker import free_port
from tests.sdks.browser import CHROMIUM, CHROMIUM_ARGS, PageServer, missing, visit
from tests.sdks.sdks import SDKS, Sdk, by_name

__all__ = ["CAPTURES", "CaptureServer", "capture", "main"]

CAPTURES = Path(__file__).resolve().parent / "captures"
#: Headers that say where and when this run happened, not what the SDK sends.
VOLATILE = frozenset({"host", "origin", "referer", "cookie", "content-length", "connection"})


class CaptureServer:
    """Takes every request, answers as a permissive collector would, and keeps it."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.phase = "open"
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._take)
        # auto_decompress off: a gzip or deflate body is kept as the SDK sent it
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def closing(self) -> None:
        """The page is about to be closed: later requests are its unload beacons."""
        self.phase = "closing"

    async def _take(self, request: web.Request) -> web.Response:
        cors = {"Access-Control-Allow-Origin": request.headers.get("Origin", "*"),
                "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={
                **cors, "Access-Control-Allow-Methods": "GET, POST, PUT, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
                "Access-Control-Max-Age": "600"})
        body = await request.read()
        self.requests.append({
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items() if k.lower() not in VOLATILE},
            "body_b64": base64.b64encode(body).decode(),
            "phase": self.phase,
        })
        status = 202 if request.path.startswith("/intake/") else 200
        return web.Response(status=status, text="{}", content_type="application/json", headers=cors)


async def capture(sdks: list[Sdk]) -> dict[str, tuple[list[dict], list[str]]]:
    """Each SDK's requests and the browser's problems, one page load each."""
    from playwright.async_api import async_playwright

    pages = PageServer()
    await pages.start()
    out: dict[str, tuple[list[dict], list[str]]] = {}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
            try:
                for sdk in sdks:
                    server = CaptureServer()
                    await server.start()
                    try:
                        collector = f"{server.base}/v1/beacons"
                        seen = await visit(browser, pages, sdk, collector, on_close=server.closing)
                        out[sdk.name] = (server.requests, seen.problems + [f"page: {s}" for s in seen.seen])
                    finally:
                        await server.stop()
            finally:
                await browser.close()
    finally:
        await pages.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sdks.capture", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write tests/sdks/captures/<config>.json")
    parser.add_argument("--sdk", action="append", help="only this configuration (repeatable)")
    args = parser.parse_args(argv)
    why = missing()
    if why:
        print(f"cannot capture: {why}", file=sys.stderr)
        return 2
    sdks = [by_name(n) for n in args.sdk] if args.sdk else list(SDKS)
    results = asyncio.run(capture(sdks))
    if args.write:
        CAPTURES.mkdir(exist_ok=True)
    for name, (requests, notes) in results.items():
        print(f"{name}: {len(requests)} requests: "
              + ", ".join(f"{r['method']} {r['path']} {r['headers'].get('content-type', '-')}"
                          f"{' ' + r['headers']['content-encoding'] if 'content-encoding' in r['headers'] else ''}"
                          f" [{r['phase']}]" for r in requests))
        for note in notes:
            print(f"    {note}")
        if args.write:
            (CAPTURES / f"{name}.json").write_text(json.dumps(requests, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
