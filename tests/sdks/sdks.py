"""The RUM SDK configurations rumgate is checked against, as a site would set each one up.

Each :class:`Sdk` names the scripts a page loads (files of the npm packages pinned in
``tests/sdks/web/package-lock.json``, served as they are installed) and the code that starts
the SDK. Where a package ships no browser bundle (Sentry, OpenTelemetry) an entry in
``tests/sdks/web/src/`` is bundled with the pinned esbuild when the pages are served
(:func:`build_bundles`); nothing is downloaded.

Every SDK is pointed at one ``collector`` URL, the rumgate endpoint
(``http://host:port/v1/beacons``), in the SDK's own way: a beacon URL, a ``proxy``, a
``tunnel``, an exporter URL; Elastic's ``serverUrl`` plus ``serverUrlPrefix``. The app and
the release are set where the SDK has a place for them; web-vitals and Sentry have no
place for an app name, so theirs rides in rumgate's ``?app=`` query parameter.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["APP", "RELEASE", "SDKS", "WEB", "NODE_MODULES", "Sdk", "build_bundles", "by_name"]

WEB = Path(__file__).resolve().parent / "web"
NODE_MODULES = WEB / "node_modules"
APP, RELEASE = "shop-web", "2026.11.23-abc"


@dataclass(frozen=True)
class Sdk:
    """One SDK configuration.

    ``scripts`` are paths under ``node_modules`` (or ``build/NAME.js`` for a bundle made
    from ``web/src/NAME.js``); ``setup`` is JavaScript run after them, with ``{collector}``,
    ``{base}`` (the collector's origin), ``{app}`` and ``{release}`` filled in (JSON strings).
    ``errors`` and ``inp``: whether this configuration reports JS errors, and INP, on this
    page in Chromium (see ``tests/sdks/README.md``): web-vitals captures no errors; Elastic
    sends INP in a ``page-exit`` transaction it gzips while the page unloads, which arrived in
    about one run in eight; OpenTelemetry's web-vitals instrumentation sent INP in none.
    """

    name: str
    package: str
    scripts: tuple[str, ...]
    setup: str
    errors: bool = True
    inp: bool = True

    def head(self, collector: str) -> str:
        """The ``<script>`` tags that load and start the SDK, for a page's ``<head>``."""
        base = collector.split("/v1/", 1)[0]
        values = {"collector": collector, "base": base, "app": APP, "release": RELEASE}
        setup = self.setup
        for key, value in values.items():
            setup = setup.replace("{" + key + "}", json.dumps(value))
        tags = [f'<script src="/sdk/{path}"></script>' for path in self.scripts]
        return "\n".join([*tags, f"<script>\n{setup}\n</script>"])

    @property
    def bundles(self) -> list[str]:
        return [path[len("build/"):-len(".js")] for path in self.scripts if path.startswith("build/")]


_VITALS_CONTEXT = "{collector} + '?app=' + encodeURIComponent({app}) + '&release=' + encodeURIComponent({release})"

# web-vitals README, "Send the results to an analytics endpoint": one sendBeacon per metric.
_VITALS_EACH = f"""
var url = {_VITALS_CONTEXT};
function sendToAnalytics(metric) {{
  var body = JSON.stringify({{name: metric.name, value: metric.value, id: metric.id,
                             page_location: metric.navigationURL || location.href}});
  (navigator.sendBeacon && navigator.sendBeacon(url, body)) || fetch(url, {{body: body, method: 'POST', keepalive: true}});
}}
webVitals.onCLS(sendToAnalytics); webVitals.onINP(sendToAnalytics); webVitals.onLCP(sendToAnalytics);
webVitals.onFCP(sendToAnalytics); webVitals.onTTFB(sendToAnalytics);
"""

# web-vitals README, "Batch multiple reports together": the whole queue on visibilitychange hidden.
_VITALS_BATCHED = f"""
var url = {_VITALS_CONTEXT};
var queue = new Set();
function addToQueue(metric) {{ queue.add(metric); }}
function flushQueue() {{
  if (queue.size > 0) {{
    var body = JSON.stringify([...queue]);
    navigator.sendBeacon(url, body);
    queue.clear();
  }}
}}
webVitals.onCLS(addToQueue); webVitals.onINP(addToQueue); webVitals.onLCP(addToQueue);
webVitals.onFCP(addToQueue); webVitals.onTTFB(addToQueue);
addEventListener('visibilitychange', function () {{
  if (document.visibilityState === 'hidden') flushQueue();
}});
"""

# Boomerang's own "cutting-edge-errors" flavor (plugins.json: Continuity and Errors on top of
# the default plugins), in its order, then zzz-last-plugin.js as its build appends it.
_BOOMERANG_PLUGINS = ("continuity", "rt", "painttiming", "navtiming", "restiming", "mobile", "memory",
                      "compression", "errors", "mq", "eventtiming", "bfcache", "zzz-last-plugin")

# Without ``afterOnload`` Continuity stops measuring (CLS too) at the page-load beacon, and
# without ``sendAfterOnload`` the Errors plugin keeps errors thrown after load to itself.
_BOOMERANG = """
BOOMR.addVar({app: {app}, rel: {release}});
BOOMR.init({beacon_url: {collector}, Continuity: {enabled: true, afterOnload: true},
  Errors: {enabled: true, sendAfterOnload: true}});
"""

# 1.0 sample rates: every session is kept, so one page load gives a deterministic capture.
_DATADOG = """
DD_RUM.init({applicationId: '6f1cbb0c-79a1-4e6b-9a8e-3a2c4d5e6f70', clientToken: 'pub0123456789abcdef0123456789abcdef',
  site: 'datadoghq.com', service: {app}, env: 'test', version: {release}, proxy: {collector},
  sessionSampleRate: 100, sessionReplaySampleRate: 0, trackUserInteractions: true,
  compressIntakeRequests: %s});
"""

_FARO = """
GrafanaFaroWebSdk.initializeFaro({url: {collector}, app: {name: {app}, version: {release}, environment: 'test'},
  instrumentations: GrafanaFaroWebSdk.getWebInstrumentations()});
"""

_SENTRY = """
Sentry.init({dsn: 'http://0123456789abcdef0123456789abcdef@127.0.0.1/1',
  tunnel: {collector} + '?app=' + encodeURIComponent({app}), release: {release}, environment: 'test',
  integrations: [Sentry.browserTracingIntegration()], tracesSampleRate: 1.0});
"""

_ELASTIC = """
elasticApm.init({serviceName: {app}, serviceVersion: {release}, environment: 'test',
  serverUrl: {base}, serverUrlPrefix: {collector}.slice({base}.length), session: true});
"""

_OTEL = """
rumgateOtel.start({url: {collector}, app: {app}, release: {release}});
"""

SDKS: tuple[Sdk, ...] = (
    Sdk("web-vitals-each", "web-vitals", ("web-vitals/dist/web-vitals.iife.js",), _VITALS_EACH, errors=False),
    Sdk("web-vitals-batched", "web-vitals", ("web-vitals/dist/web-vitals.iife.js",), _VITALS_BATCHED,
        errors=False),
    Sdk("boomerang", "boomerangjs",
        ("boomerangjs/boomerang.js", *(f"boomerangjs/plugins/{p}.js" for p in _BOOMERANG_PLUGINS)), _BOOMERANG),
    Sdk("datadog", "@datadog/browser-rum", ("@datadog/browser-rum/bundle/datadog-rum.js",), _DATADOG % "false"),
    Sdk("datadog-compressed", "@datadog/browser-rum", ("@datadog/browser-rum/bundle/datadog-rum.js",),
        _DATADOG % "true"),
    Sdk("faro", "@grafana/faro-web-sdk", ("@grafana/faro-web-sdk/dist/bundle/faro-web-sdk.iife.js",), _FARO),
    Sdk("sentry", "@sentry/browser", ("build/sentry.js",), _SENTRY),
    Sdk("elastic", "@elastic/apm-rum", ("@elastic/apm-rum/dist/bundles/elastic-apm-rum.umd.min.js",), _ELASTIC,
        inp=False),
    Sdk("otel", "@opentelemetry/browser-instrumentation", ("build/otel.js",), _OTEL, inp=False),
)


def by_name(name: str) -> Sdk:
    for sdk in SDKS:
        if sdk.name == name:
            return sdk
    raise KeyError(f"no SDK configuration {name!r}; known: {', '.join(s.name for s in SDKS)}")


def build_bundles(out: Path, names: list[str] | None = None) -> None:
    """Bundle ``web/src/NAME.js`` into ``out/NAME.js`` (IIFE) with the pinned esbuild."""
    esbuild = NODE_MODULES / ".bin" / "esbuild"
    for name in names if names is not None else sorted({b for sdk in SDKS for b in sdk.bundles}):
        subprocess.run([str(esbuild), str(WEB / "src" / f"{name}.js"), "--bundle", "--format=iife", "--minify",
                        "--log-level=warning", f"--outfile={out / (name + '.js')}"], check=True, cwd=WEB)
