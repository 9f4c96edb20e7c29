"""``GET /v1/rumgate.js``: the browser snippet that sends web vitals to ``/v1/beacons``.

A page includes it once, with its app and the release it runs::

    <script src="https://rumgate.example/v1/rumgate.js" data-app="shop-web"
            data-release="2026.11.23-abc" data-endpoint="https://rumgate.example/v1/beacons"
            async></script>

(or sets ``window.rumgateConfig = {app, release, endpoint, route, sampleRate}`` first). It
measures LCP, INP, CLS, FCP and TTFB with Google's ``web-vitals`` library, counts uncaught
errors, and sends one envelope per page view with ``navigator.sendBeacon`` when the page
is hidden (again at a later hide if it changed: a new ``id``, the same ``view``);
:mod:`streams.ingest.formats` turns that into a canonical beacon.

The script is the ``web-vitals`` IIFE build (from ``streams/ingest/web/node_modules``, installed by
``npm ci --prefix streams/ingest/web``) followed by ``streams/ingest/web/rumgate-snippet.js``, wrapped in
one function so that neither leaves a global behind. It is read (and gzipped) once and
kept in memory.
Without ``node_modules`` the route answers 503 saying what to run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from pathlib import Path

from aiohttp import web

__all__ = ["WEB_DIR", "add_snippet_routes", "build_snippet"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
_VITALS = Path("node_modules") / "web-vitals"
_IIFE = _VITALS / "dist" / "web-vitals.iife.js"  # defines the global ``webVitals``
_SOURCE = "rumgate-snippet.js"
_INSTALL = "npm ci --prefix streams/ingest/web"

# Short enough that a new rumgate version reaches pages soon; the ETag makes rechecks cheap.
CACHE_CONTROL = "public, max-age=300"


def build_snippet(web_dir: Path = WEB_DIR) -> bytes:
    """The served script; raises :class:`FileNotFoundError` when web-vitals is not installed."""
    vitals = (web_dir / _IIFE).read_text(encoding="utf-8")
    try:
        version = json.loads((web_dir / _VITALS / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        version = "?"
    # The map is not served beside /v1/rumgate.js: a dangling reference only makes devtools 404.
    vitals = re.sub(r"^//# sourceMappingURL=.*$", "", vitals, flags=re.MULTILINE).strip()
    snippet = (web_dir / _SOURCE).read_text(encoding="utf-8").strip()
    text = (f"/*! rumgate snippet; web-vitals {version} (c) Google LLC, Apache-2.0 */\n"
            f"(function () {{\n{vitals}\n{snippet}\n}})();\n")
    return text.encode("utf-8")


def add_snippet_routes(app: web.Application, web_dir: Path = WEB_DIR) -> None:
    """Register ``GET /v1/rumgate.js`` (and ``HEAD``) on ``app``; ``web_dir`` is for tests."""
    cache: dict[str, bytes | str] = {}
    warned = False

    async def rumgate_js(request: web.Request) -> web.Response:
        nonlocal warned
        headers = {"Access-Control-Allow-Origin": "*", "X-Content-Type-Options": "nosniff"}
        if "body" not in cache:
            try:
                body = build_snippet(web_dir)
            except FileNotFoundError:
                # Not cached: the route starts working once npm ci has run, without a restart.
                if not warned:
                    warned = True
                    log.warning("GET /v1/rumgate.js: web-vitals is not installed in %s; run `%s`",
                                web_dir / "node_modules", _INSTALL)
                return web.Response(status=503, text=f"rumgate.js is unavailable: web-vitals is not installed on "
                                                     f"this server (run `{_INSTALL}`)\n",
                                    headers={**headers, "Cache-Control": "no-store", "Retry-After": "60"})
            cache["body"], cache["gzip"] = body, gzip.compress(body, 9, mtime=0)  # 16 KB -> 6 KB
            cache["etag"] = 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'  # weak: gzipped or not
        headers.update({"Cache-Control": CACHE_CONTROL, "ETag": str(cache["etag"]), "Vary": "Accept-Encoding"})
        if cache["etag"] in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        body = cache["body"]
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body, headers["Content-Encoding"] = cache["gzip"], "gzip"
        return web.Response(body=body, content_type="application/javascript", charset="utf-8", headers=headers)

    app.router.add_get("/v1/rumgate.js", rumgate_js)
