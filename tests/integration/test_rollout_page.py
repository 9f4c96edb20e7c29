"""The live rollout page in real headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright), with the token sent as a proxy in front of the worker would send it.

Two runs of the same checks:

* ``test_live_page_over_the_core_verdicts``: the API application served over real HTTP in
  this process, its backend fed with verdict events the decision core made for a rollout
  whose canary's LCP regresses (tests/http/test_series.py), released a few at a time as a
  worker would receive them;
* ``test_live_page_of_a_running_rollout_on_a_worker``: a real worker on the embedded broker,
  judging simulated beacons streamed into ``rum.beacons`` in two parts.

Each checks that every chart draws one point per verdict (the DOM's own SVG point lists,
against the series JSON the page links to), that the page updates by itself when new
verdicts arrive, that the rollback marker sits at the rollback verdict's time, that the
page then stops polling, and that the browser logs no console error, warning, page error
or failed request (a Content-Security-Policy violation would be one). A screenshot of the
page is written to the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web

from detectors.policy import parse_policy
from detectors.rollout import Rollout
from streams.http.api import make_api
from streams.http.backend import Backend
from streams.http.series import dry_run_key
from streams.live.broker import free_port
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons
from tests.http.test_series import DRY, ROLLOUT, dry_history, history
from tests.integration.conftest import TOKEN, Pipeline

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run "
                                                                 "`apt-get install -y chromium`")
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

# What the page draws, read from the DOM in one go (so it is one version of the fragment).
DRAWN = """() => {
  const f = document.querySelector('#live .fragment');
  const lines = [...document.querySelectorAll('#live svg.chart polyline.series')].map(p => ({
    chart: p.closest('svg').dataset.chart, series: p.dataset.series,
    declared: Number(p.dataset.points), drawn: p.points.numberOfItems}));
  const markers = [...document.querySelectorAll('#live svg.timeline[data-timeline="enforcing"] g.marker')].map(g => ({
    kind: g.dataset.kind, at: Number(g.dataset.at), width: g.getBoundingClientRect().width}));
  const events = [...document.querySelectorAll('#live svg.timeline[data-timeline="enforcing"] g.event')].map(g => ({
    kind: g.dataset.kind, at: Number(g.dataset.at), width: g.getBoundingClientRect().width}));
  return {windows: Number(f.dataset.windows), live: f.dataset.live, lines, markers, events,
          timeline: Number(document.querySelector('#live svg.timeline').dataset.points),
          status: document.getElementById('live-status').textContent};
}"""


def check_drawn(drawn: dict, series: dict) -> None:
    """Every polyline of the page has the points its series JSON says it has."""
    assert drawn["windows"] == series["windows"] == drawn["timeline"] == len(series["timeline"]["seq"])
    by_chart = {(m["metric"], m["segment"]): m for m in series["metrics"]}
    # 3 e-values, the effect, 2 estimates per window and 2 cumulative; the 2 shares, page views per arm, late beacons
    assert len(drawn["lines"]) == 8 * len(by_chart) + 5
    for line in drawn["lines"]:
        if line["chart"].startswith("quality/"):
            values = series["quality"][line["series"]]
            assert line["drawn"] == line["declared"] == sum(v is not None for v in values), line
            continue
        metric, segment, _chart = line["chart"].split("/")
        values = by_chart[(metric, segment)][line["series"]]
        assert line["drawn"] == line["declared"] == sum(v is not None for v in values), line


# -- the application in this process, fed with the core's verdicts --------------------------


class Feed:
    """The topics as the backend sees them: verdicts released a few at a time."""

    def __init__(self, backend: Backend, events: list[dict], dry: list[dict]) -> None:
        self.backend, self.events, self.dry = backend, events, dry
        self.released = {ROLLOUT.id: [], dry_run_key(ROLLOUT.id, DRY.name): []}
        backend.history = self.history

    async def history(self, key: str) -> list[dict]:
        return list(self.released.get(key, []))

    def release(self, upto: int) -> dict:
        """The enforcing verdicts up to index ``upto`` and the dry-run ones of those windows."""
        shown = self.events[:upto]
        last_at = shown[-1]["at"]
        dry = [e for e in self.dry if e["at"] <= last_at]
        # As the worker does: written to rum.verdicts, then offered as the latest.
        self.released[ROLLOUT.id] = shown
        self.released[dry_run_key(ROLLOUT.id, DRY.name)] = dry
        self.backend.offer_verdict(ROLLOUT.id, shown[-1])
        if dry:
            self.backend.offer_verdict(dry_run_key(ROLLOUT.id, DRY.name), dry[-1])
        return shown[-1]


async def _browse_core(tmp: Path) -> dict:
    from playwright.async_api import async_playwright

    events, dry = history(), dry_history()
    backend = Backend()
    # The split changes at the 16th window: drawn once the page's time axis reaches it.
    backend.rollouts[ROLLOUT.id] = ROLLOUT.with_share(0.3, events[15]["at"])
    feed = Feed(backend, events, dry)
    feed.release(10)
    app = make_api(backend, token=TOKEN)
    statuses: list[int] = []  # what the server answered the page's polls (the browser shows a 304 as 200)

    @web.middleware
    async def record(request, handler):
        response = await handler(request)
        if request.query.get("fragment") == "1":
            statuses.append(response.status)
        return response

    app.middlewares.append(record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    url = base + "/rollouts/" + quote(ROLLOUT.id, safe=":@")
    out: dict = {"problems": [], "events": events, "fragment_statuses": statuses}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
            try:
                context = await browser.new_context(extra_http_headers=HEADERS, viewport={"width": 1340, "height": 900})
                page = await context.new_page()
                _watch(page, out["problems"])
                await page.goto(base + "/", wait_until="load")
                out["index_links"] = await page.eval_on_selector_all("td a", "as => as.map(a => a.href)")
                await page.goto(url, wait_until="load")

                async def series() -> dict:
                    answer = await context.request.get(base + f"/v1/rollouts/{quote(ROLLOUT.id, safe=':@')}/series")
                    assert answer.status == 200
                    return await answer.json()

                await page.wait_for_timeout(7_000)  # two polls with no new verdict
                out["first"] = (await page.evaluate(DRAWN), await series())
                feed.release(20)  # new verdicts arrive: the page must show them by itself
                await page.wait_for_function("() => document.querySelector('#live .fragment').dataset.windows === '20'",
                                             timeout=20_000)
                out["second"] = (await page.evaluate(DRAWN), await series())
                feed.release(len(events))  # through the rollback
                await page.wait_for_function("() => document.querySelector('#live .fragment').dataset.live === '0'",
                                             timeout=20_000)
                out["last"] = (await page.evaluate(DRAWN), await series())
                await page.wait_for_timeout(500)
                await page.screenshot(path=str(tmp / "rollout-page.png"), full_page=True)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    return out


def _watch(page, problems: list[str]) -> None:
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
            if m.type in ("warning", "error") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))


@needs_chromium
def test_live_page_over_the_core_verdicts(tmp_path: Path) -> None:
    out = asyncio.run(_browse_core(tmp_path))
    assert out["problems"] == []
    assert [link.endswith("/rollouts/" + ROLLOUT.id) for link in out["index_links"]] == [True]
    for step, windows in (("first", 10), ("second", 20), ("last", len(out["events"]))):
        drawn, series = out[step]
        assert drawn["windows"] == windows, step
        check_drawn(drawn, series)
    assert out["first"][0]["live"] == "1" and out["first"][0]["markers"] == []
    assert out["first"][0]["events"] == []  # the split change is after the last verdict shown
    (split,) = out["second"][0]["events"]
    assert (split["kind"], split["at"]) == ("split", out["events"][15]["at"]) and split["width"] > 0
    # Polls while nothing changed are revalidated (304), the first and the changed ones sent (200).
    assert 304 in out["fragment_statuses"] and 200 in out["fragment_statuses"], out["fragment_statuses"]
    assert out["second"][0]["status"].startswith("updated ")  # swapped in by the page's script
    drawn = out["last"][0]
    rollback = out["events"][-1]
    assert rollback["verdict"] == "rollback"
    rollbacks = [m for m in drawn["markers"] if m["kind"] == "rollback"]
    assert [m["at"] for m in rollbacks] == [rollback["at"]]
    assert rollbacks[0]["width"] > 0  # drawn, not just in the markup
    assert drawn["live"] == "0" and drawn["status"].startswith("not updating")
    assert (tmp_path / "rollout-page.png").stat().st_size > 10_000


# -- a real worker on the embedded broker ------------------------------------------------------

WORKER_POLICY = parse_policy("name: page\nmetrics:\n  - metric: LCP\n  - metric: errors\nwarmup: 10s\n"
                             "min_duration: 2m\n")
WORKER_SCENARIO = replace(SCENARIOS["stationary"], duration_s=600.0, canary_share=0.2,
                          regressions=(Regression("LCP", 1.25, start_s=90.0),))


def _get(url: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=HEADERS), timeout=10) as answer:
        return orjson.loads(answer.read())


def _wait_ready(base: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _get(base + "/healthz").get("ready"):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("the worker did not get ready")


async def _browse_worker(pipeline: Pipeline, base: str, rollout: Rollout, later: list, tmp: Path) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {"problems": []}
    rid = quote(rollout.id, safe=":@")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            context = await browser.new_context(extra_http_headers=HEADERS, viewport={"width": 1340, "height": 900})
            page = await context.new_page()
            _watch(page, out["problems"])
            await page.goto(f"{base}/rollouts/{rid}", wait_until="load")

            async def consistent() -> tuple[dict, dict]:
                """The DOM and the series JSON at one moment (verdicts keep arriving)."""
                for _ in range(40):
                    drawn = await page.evaluate(DRAWN)
                    answer = await context.request.get(f"{base}/v1/rollouts/{rid}/series")
                    series = await answer.json()
                    if series["windows"] == drawn["windows"]:
                        return drawn, series
                    await page.wait_for_timeout(500)
                raise AssertionError("the page never caught up with the series")

            out["first"] = await consistent()
            before = out["first"][0]["windows"]
            await asyncio.to_thread(pipeline.produce, later, 10)  # the rest of the traffic
            await page.wait_for_function(f"() => Number(document.querySelector('#live .fragment').dataset.windows) > {before}",
                                         timeout=60_000)
            out["second"] = await consistent()
            await page.wait_for_function("() => document.querySelector('#live .fragment').dataset.live === '0'",
                                         timeout=120_000)
            out["last"] = await consistent()
            await page.screenshot(path=str(tmp / "rollout-page-worker.png"), full_page=True)
        finally:
            await browser.close()
    return out


@needs_chromium
def test_live_page_of_a_running_rollout_on_a_worker(pipeline: Pipeline, tmp_path: Path) -> None:
    worker = pipeline.start_worker()
    _wait_ready(worker.http)
    rollout = Rollout(f"{WORKER_SCENARIO.app}:{WORKER_SCENARIO.canary}", WORKER_SCENARIO.app, WORKER_SCENARIO.canary,
                      WORKER_SCENARIO.baseline, WORKER_SCENARIO.start_ms, WORKER_POLICY)
    pipeline.start_rollout(rollout)
    beacons = list(generate_beacons(WORKER_SCENARIO, seed=11))
    cut = next(i for i, b in enumerate(beacons) if b["ts"] >= WORKER_SCENARIO.start_ms + 80_000)
    pipeline.produce(beacons[:cut], per_record=10)  # before the regression starts: continue
    pipeline.wait_for_verdict(lambda v: v["rollout"] == rollout.id and v["seq"] >= 5)
    out = asyncio.run(_browse_worker(pipeline, worker.http, rollout, beacons[cut:], tmp_path))
    assert out["problems"] == []
    for step in ("first", "second", "last"):
        check_drawn(*out[step])
    assert out["first"][0]["live"] == "1"
    assert out["second"][0]["windows"] > out["first"][0]["windows"]
    verdicts = [v for v in pipeline.verdicts() if v["rollout"] == rollout.id and not v["policy"]["dry_run"]]
    rollback = next(v for v in verdicts if v["verdict"] == "rollback")
    drawn = out["last"][0]
    assert ("rollback", rollback["at"]) in [(m["kind"], m["at"]) for m in drawn["markers"]]
    assert drawn["live"] == "0"


# -- rumgate demo ------------------------------------------------------------------------------


def test_demo_prints_the_live_page_and_serves_it() -> None:
    """The URL ``rumgate demo`` prints is the live page of its rollout, served while it runs."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from tests.integration.conftest import REPO

    demo = subprocess.Popen([sys.executable, "-m", "streams", "demo", "--speed", "5"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "live page" in line:
                break
        assert lines and "live page" in lines[-1], "".join(lines)
        url = lines[-1].rsplit(" ", 1)[-1].strip()
        threading.Thread(target=lambda: [lines.append(x) for x in demo.stdout], daemon=True).start()  # keep the pipe drained
        assert url.startswith("http://127.0.0.1:") and url.endswith("/rollouts/shop-web:2026.11.23-canary"), lines
        deadline, windows = time.monotonic() + 120, 0
        fragment = ""
        while time.monotonic() < deadline and windows == 0:
            try:
                with urllib.request.urlopen(url + "?fragment=1", timeout=10) as answer:  # the demo's reads are open
                    fragment = answer.read().decode()
            except urllib.error.HTTPError as exc:  # 404 until the worker has read the rollout the demo sends next
                assert exc.code == 404, exc
            else:
                windows = int(fragment.split('data-windows="', 1)[1].split('"', 1)[0])
            time.sleep(0.5)
        assert windows > 0, fragment[:500]
        with urllib.request.urlopen(url, timeout=10) as answer:
            page = answer.read().decode()
        assert answer.status == 200 and "<h1>shop-web:2026.11.23-canary</h1>" in page
    finally:
        demo.send_signal(signal.SIGINT)  # its own clean-up stops the worker and the broker
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
