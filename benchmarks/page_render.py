"""How fast a 2-hour rollout renders: the backtest report and the live rollout page in
headless Chromium, and the series endpoint's latency.

The history: the ``stationary`` scenario (seed 1) for 2 hours, judged in process by the
one driver (:class:`detectors.pipeline.run.Run`, what ``rumgate backtest --no-stop`` runs)
with the default policy (6 metrics) and no stop at a decision: 1,440 windows of 5 s, so
1,440 verdict events, each with 6 metrics and both arms' estimates. ``--rate`` (beacons/s,
default 20) only sets how long judging takes; the windows and series are as many.

Measured, each ``--runs`` times (default 5), median printed:

* report: :func:`streams.offline.report.write_report` of that history, opened from
  ``file://`` (network off) in a fresh page: navigation start → load event
  (``PerformanceNavigationTiming.loadEventEnd``), and ``performance.now()`` two animation
  frames after the load event, once every chart has been laid out and painted;
* live page: the API application (``streams.http.api.make_api``) served over HTTP in this
  process, its backend holding the rollout and the history; ``GET /rollouts/{id}``, the
  same two figures (the page's own script polls afterwards; that is not timed);
* series endpoint: ``GET /v1/rollouts/{id}/series`` over HTTP from this process, cold (the
  series cache emptied before each request: reading and building the series) and warm
  (the cached series, only the JSON encoding and sending).

Usage: ``python benchmarks/page_render.py [--runs 5] [--rate 20]``. Needs /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import ClientSession, web  # noqa: E402

from detectors.pipeline.run import Run  # noqa: E402
from detectors.policy import DEFAULT_POLICY  # noqa: E402
from streams.http import series as series_module  # noqa: E402
from streams.http.api import make_api  # noqa: E402
from streams.http.backend import Backend  # noqa: E402
from streams.live.broker import free_port  # noqa: E402
from streams.offline.backtest import backtest_rollout  # noqa: E402
from streams.offline.report import PolicyRun, write_report  # noqa: E402
from streams.offline.simulate import SCENARIOS, generate_beacons  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
TOKEN = "bench-token"
TIMING = """() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  done({load: nav.loadEventEnd - nav.startTime, painted: performance.now(),
        charts: document.querySelectorAll('svg.chart').length,
        points: [...document.querySelectorAll('svg.chart polyline')].reduce((n, p) => n + p.points.numberOfItems, 0)});
})))"""


def history(rate: float) -> tuple[object, list[dict]]:
    sc = replace(SCENARIOS["stationary"], duration_s=7200.0, rate=rate)
    rollout = replace(backtest_rollout(sc.app, sc.canary, sc.baseline, DEFAULT_POLICY), started_at=sc.start_ms)
    run = Run(rollout, stop_at_decision=False)
    batch: list[bytes] = []
    offset = 0
    for b in generate_beacons(sc, seed=1):
        batch.append(orjson.dumps(b))
        if len(batch) == 4096:
            run.add(0, list(enumerate(batch, offset)))
            offset += len(batch)
            batch = []
    run.add(0, list(enumerate(batch, offset)))
    events = [orjson.loads(orjson.dumps(v.to_dict())) for v in run.finish(flush=True).verdicts]
    return rollout, events


async def render_times(url: str, runs: int, headers: dict | None = None, offline: bool = False) -> list[dict]:
    from playwright.async_api import async_playwright

    out = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for _ in range(runs):
                context = await browser.new_context(viewport={"width": 1340, "height": 900},
                                                    extra_http_headers=headers or {})
                if offline:
                    await context.set_offline(True)
                page = await context.new_page()
                await page.goto(url, wait_until="load")
                out.append(await page.evaluate(TIMING))
                await context.close()
        finally:
            await browser.close()
    return out


async def live(rollout, events: list[dict], runs: int) -> tuple[list[dict], list[float], list[float], int]:
    backend = Backend()
    backend.rollouts[rollout.id] = rollout

    async def read(key: str) -> list[dict]:
        return events if key == rollout.id else []

    backend.history = read
    backend.offer_verdict(rollout.id, events[-1])
    runner = web.AppRunner(make_api(backend, token=TOKEN), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base, rid = f"http://127.0.0.1:{port}", quote(rollout.id, safe=":@")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        cold, warm, size = [], [], 0
        async with ClientSession(headers=headers) as http:
            for i in range(2 * runs + 1):
                if i % 2 == 0:
                    series_module._cache.clear()
                started = time.perf_counter()
                async with http.get(f"{base}/v1/rollouts/{rid}/series") as answer:
                    body = await answer.read()
                    assert answer.status == 200, answer.status
                took = time.perf_counter() - started
                size = len(body)
                if i:  # the first request also warms up the process
                    (cold if i % 2 == 0 else warm).append(took)
        pages = await render_times(f"{base}/rollouts/{rid}", runs, headers)
    finally:
        await runner.cleanup()
    return pages, cold, warm, size


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    started = time.perf_counter()
    rollout, events = history(args.rate)
    metrics = {(m["metric"], m["segment"]) for e in events for m in e["metrics"]}
    print(f"history: {len(events)} verdicts, {len(metrics)} (metric, segment), judged in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        t0 = time.perf_counter()
        size = write_report(path, [PolicyRun(rollout, events)], source="benchmark")
        print(f"report: {size / 1e6:.2f} MB written in {time.perf_counter() - t0:.2f} s", flush=True)
        report = asyncio.run(render_times(path.as_uri(), args.runs, offline=True))
    pages, cold, warm, series_size = asyncio.run(live(rollout, events, args.runs))
    for name, rows in (("report (file://)", report), ("live page (HTTP)", pages)):
        print(f"{name}: {rows[0]['charts']} charts, {rows[0]['points']:,} points; median of {len(rows)}: "
              f"navigation start → load {_median(rows, 'load'):.0f} ms, painted after {_median(rows, 'painted'):.0f} ms")
    print(f"series endpoint ({series_size / 1e6:.2f} MB JSON): median of {len(cold)}: "
          f"cold {statistics.median(cold) * 1000:.0f} ms, warm {statistics.median(warm) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
