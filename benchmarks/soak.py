"""Soak: a worker under steady beacon traffic with a new rollout every few minutes.

What it shows: whether the worker's memory, its consumer lag and its verdict latency stay
flat over a long run, or grow. An embedded broker and a real worker process (``python -m
streams worker``) are started; an in-process aiohttp client posts NDJSON beacons to
``POST /v1/beacons`` at ``--rate`` beacons/s, split between a baseline release and the
canary of the rollout that is open; every ``--rollout-every`` seconds the open rollout is
ended and a new one (a new canary release) is started through the API. Every
``--sample-every`` seconds the worker's and the broker's RSS and CPU, the summed ``rum.beacons`` lag
and the mean window-close-to-verdict latency since the previous sample are recorded.

The report gives a row per rollout period and compares the medians of the run's second
half with its first: a ratio near 1 is flat. (The first minute is left out: the worker
starts, the group forms, the allocator warms up.)

    python benchmarks/soak.py --minutes 60 --rate 2000 --rollout-every 300

The load generator is one client standing in for many browsers, so the worker runs with
the per-client rate limit and per-client caps raised (``RUMGATE_INGEST_RATE_LIMIT``);
sessions are many and short, as real traffic's are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.ingest_load import cpu_ticks, rss_mb  # noqa: E402
from streams.live.broker import EmbeddedBroker, free_port  # noqa: E402
from streams.live.settings import Settings  # noqa: E402
from streams.live.topics import ensure_topics  # noqa: E402

APP, BASELINE, TOKEN = "soak-web", "soak-base", "soak-token"
BATCH = 20  # beacons per request, as an SDK that buffers a few page views sends them


@dataclass
class Sample:
    t_s: float
    worker_mb: float | None
    broker_mb: float | None
    lag: float
    latency_s: float | None  # mean over the verdicts since the previous sample
    verdicts: float
    worker_cpu: float | None = None  # % of one core since the previous sample
    broker_cpu: float | None = None


@dataclass
class Load:
    sent: int = 0
    accepted: int = 0
    failed: int = 0  # requests answered with anything but 202
    canary: str = "soak-c0"


def scrape(http: str) -> dict[str, float]:
    """The worker's metrics (``rumgate_*``), each summed over its labels."""
    with urllib.request.urlopen(f"{http}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("rumgate_"):
                out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def api(http: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"{http}{path}", method=method, data=orjson.dumps(body) if body else None,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return orjson.loads(resp.read() or b"{}")


async def post_beacons(http: str, rate: float, deadline: float, load: Load, seed: int) -> None:
    """Beacons at ``rate``/s until ``deadline``: 10 % to the open canary, the rest to the baseline."""
    import aiohttp

    rng = np.random.default_rng(seed)
    interval = BATCH / rate
    n = 0
    async with aiohttp.ClientSession(headers={"Content-Type": "application/x-ndjson"}) as session:
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            lcp = rng.lognormal(np.log(2200), 0.5, BATCH)
            canary = rng.random(BATCH) < 0.10
            lines = []
            for k in range(BATCH):
                n += 1
                release = load.canary if canary[k] else BASELINE
                lines.append(orjson.dumps({"id": f"b{seed}-{n}", "app": APP, "release": release,
                                           "session": f"s{seed}-{n // 3}", "page": "/p", "device": "mobile",
                                           "metrics": {"LCP": round(float(lcp[k]), 1), "CLS": 0.02,
                                                       "INP": 120.0, "TTFB": 400.0},
                                           "errors": 0}))
            load.sent += BATCH
            try:
                async with session.post(f"{http}/v1/beacons", data=b"\n".join(lines)) as resp:
                    answer = await resp.read()
                    if resp.status == 202:
                        load.accepted += orjson.loads(answer)["accepted"]
                    else:
                        load.failed += 1
            except aiohttp.ClientError:
                load.failed += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def rollouts(http: str, every_s: float, deadline: float, load: Load) -> list[str]:
    """A new rollout every ``every_s`` seconds; the previous one is ended."""
    started: list[str] = []
    k = 0
    while time.monotonic() < deadline:
        canary = f"soak-c{k}"
        if started:
            await asyncio.to_thread(api, http, "POST", f"/v1/rollouts/{started[-1]}/end")
        load.canary = canary
        body = {"app": APP, "canary": canary, "baseline": BASELINE, "expected_share": 0.1}
        await asyncio.to_thread(api, http, "POST", "/v1/rollouts", body)
        started.append(f"{APP}:{canary}")
        k += 1
        await asyncio.sleep(min(every_s, max(0.0, deadline - time.monotonic())))
    return started


async def sampler(http: str, worker_pid: int, broker_pid: int, every_s: float, deadline: float,
                  t0: float, samples: list[Sample]) -> None:
    before = None
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    ticks = (time.monotonic(), cpu_ticks(worker_pid), cpu_ticks(broker_pid))
    while time.monotonic() < deadline:
        await asyncio.sleep(every_s)
        now = (time.monotonic(), cpu_ticks(worker_pid), cpu_ticks(broker_pid))
        cpu = [100 * (b - a) * tick_s / (now[0] - ticks[0]) for a, b in zip(ticks[1:], now[1:])]
        ticks = now
        try:
            m = await asyncio.to_thread(scrape, http)
        except OSError:
            continue
        count = m.get("rumgate_window_close_to_verdict_seconds_count", 0.0)
        total = m.get("rumgate_window_close_to_verdict_seconds_sum", 0.0)
        latency, verdicts = None, 0.0
        if before is not None and count > before[0]:
            verdicts = count - before[0]
            latency = (total - before[1]) / verdicts
        before = (count, total)
        samples.append(Sample(time.monotonic() - t0, rss_mb(worker_pid), rss_mb(broker_pid),
                              m.get("rumgate_consumer_lag", 0.0), latency, verdicts, *cpu))
        s = samples[-1]
        print(f"  {s.t_s / 60:5.1f} min  worker {s.worker_mb or 0:6.0f} MB {cpu[0]:4.0f} % CPU  "
              f"broker {s.broker_mb or 0:6.0f} MB {cpu[1]:4.0f} % CPU  "
              f"lag {s.lag:6.0f}  verdict latency {'-' if latency is None else f'{latency:.2f} s'}", flush=True)


def wait_ready(http: str, process: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the worker exited ({process.returncode}) before it was ready")
        try:
            with urllib.request.urlopen(f"{http}/healthz", timeout=2) as resp:
                if orjson.loads(resp.read()).get("ready"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the worker was not ready within {timeout_s:.0f} s")


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(samples: list[Sample], load: Load, args: argparse.Namespace, elapsed_s: float) -> None:
    kept = [s for s in samples if s.t_s >= 60]
    print(f"\nsoak: {elapsed_s / 60:.1f} min at {args.rate:g} beacons/s, a rollout every {args.rollout_every:g} s; "
          f"{load.sent:,} beacons sent, {load.accepted:,} accepted, {load.failed} requests not accepted")
    print("\n| minutes | worker RSS MB | worker CPU % | broker RSS MB | broker CPU % | lag (records) | verdict latency s |")
    print("|---|---|---|---|---|---|---|")
    period = args.rollout_every
    for start in np.arange(60, elapsed_s, period):
        part = [s for s in kept if start <= s.t_s < start + period]
        if not part:
            continue
        cells = [median([s.worker_mb for s in part]), median([s.worker_cpu for s in part]),
                 median([s.broker_mb for s in part]), median([s.broker_cpu for s in part]),
                 median([s.lag for s in part]), median([s.latency_s for s in part])]
        print(f"| {start / 60:.0f}–{min(elapsed_s, start + period) / 60:.0f} | "
              + " | ".join("-" if c is None else f"{c:.2f}" if i == 5 else f"{c:.0f}" for i, c in enumerate(cells))
              + " |")
    half = len(kept) // 2
    if half:
        print("\nsecond half / first half (medians; 1.00 is flat):")
        for name, get in (("worker RSS", lambda s: s.worker_mb), ("worker CPU", lambda s: s.worker_cpu),
                          ("broker RSS", lambda s: s.broker_mb), ("broker CPU", lambda s: s.broker_cpu),
                          ("lag", lambda s: s.lag), ("verdict latency", lambda s: s.latency_s)):
            a, b = median([get(s) for s in kept[:half]]), median([get(s) for s in kept[half:]])
            ratio = "-" if not a or b is None else f"{b / a:.2f}"
            print(f"  {name:16} {ratio}  ({a if a is None else round(a, 2)} → {b if b is None else round(b, 2)})")


async def soak(args: argparse.Namespace, http: str, worker_pid: int, broker_pid: int) -> tuple[list[Sample], Load]:
    t0 = time.monotonic()
    deadline = t0 + args.minutes * 60
    load, samples = Load(), []
    senders = max(1, int(args.rate // 500))  # each client task paces itself to its share
    await asyncio.gather(rollouts(http, args.rollout_every, deadline, load),
                         sampler(http, worker_pid, broker_pid, args.sample_every, deadline, t0, samples),
                         *(post_beacons(http, args.rate / senders, deadline, load, seed=i) for i in range(senders)))
    return samples, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the run (default 60)")
    parser.add_argument("--rate", type=float, default=2000.0, help="beacons per second (default 2000)")
    parser.add_argument("--rollout-every", type=float, default=300.0, help="seconds between rollouts (default 300)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples (default 10)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="rumgate-soak-"))
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        settings = Settings(broker=broker.url, app_id="rumgate-soak", topic_prefix="soak.")
        asyncio.run(ensure_topics(settings))
        port = free_port()
        env = dict(os.environ, RUMGATE_BROKER=broker.url, RUMGATE_APP_ID=settings.app_id,
                   RUMGATE_TOPIC_PREFIX=settings.topic_prefix, RUMGATE_API_TOKEN=TOKEN,
                   RUMGATE_HTTP=f"127.0.0.1:{port}", RUMGATE_INGEST_RATE_LIMIT="100000",
                   PYTHONPATH=str(REPO))
        log = tmp / "worker.log"
        worker = subprocess.Popen([sys.executable, "-m", "streams", "worker", "--loglevel", "warning"],
                                  env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=tmp)  # noqa: SIM115
        http = f"http://127.0.0.1:{port}"
        try:
            print(f"soak: broker {broker.url}, worker log {log}", flush=True)
            wait_ready(http, worker)
            t0 = time.monotonic()
            samples, load = asyncio.run(soak(args, http, worker.pid, broker.process.pid))
            report(samples, load, args, time.monotonic() - t0)
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
