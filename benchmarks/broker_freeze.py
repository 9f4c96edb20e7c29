"""Broker freeze: the broker stops answering (SIGSTOP) under steady beacon traffic, then resumes.

What it shows: whether every beacon the endpoint answered 202 for is counted exactly once
in the window summaries after a freeze of ``--freeze-s`` seconds, whether the requests made
during the freeze got a clear answer (503 + ``Retry-After``) within about
``RUMGATE_INGEST_ACK_TIMEOUT_S`` rather than hanging, and whether the worker resumed on its
own. An embedded broker and a real worker process (``python -m streams worker``, as
``benchmarks/soak.py`` starts it) are started, with one rollout open; an in-process aiohttp
client posts canonical NDJSON beacons to the worker's ``POST /v1/beacons`` at ``--rate``
beacons/s, open loop (a request is sent on time whether or not the earlier ones were
answered, as browsers do). After ``--before-s`` the broker process is sent SIGSTOP, after
``--freeze-s`` SIGCONT; the load goes on for ``--after-s``. Then a trickle of beacons of
another release of the same app (same key, same partition, not counted) moves the
partition's watermark until every window of the load has closed.

Counted at the end, from the topics:

* accepted: the sum of ``accepted`` over the 202 answers;
* stored: the load's beacons in ``rum.beacons`` (each id once; a 503'd request's beacons may
  still land, as the endpoint says: its record was queued before the ack timeout);
* counted: page views of the load's releases in the ``rum.windows`` summaries, each
  (source, window, cohort) once, the first publication, as the judge keeps them;
* dead letters on ``rum.beacons.dlq``; verdicts and windows published after the thaw.

PASS when every 202'd beacon is stored and counted equals stored (each beacon counted once).
A beacon may be stored twice ("ids stored twice"): a record the producer gave up on can land
after the thaw beside its retry's copy; stage 1 counts the copies of one id once. With ``--retries N`` a 503'd request is
sent again (the same beacons, the same ids) after its ``Retry-After``, up to N times, as an
SDK that retries does; a retry answered 202 with the beacons as duplicates counts them as
202'd, so they must be stored too.

    python benchmarks/broker_freeze.py --freeze-s 30
    python benchmarks/broker_freeze.py --freeze-s 300
    python benchmarks/broker_freeze.py --freeze-s 60 --retries 3

The load generator is one client standing in for many browsers, so the worker runs with the
per-client rate limit raised (``RUMGATE_INGEST_RATE_LIMIT``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.ingest_load import rss_mb  # noqa: E402
from benchmarks.soak import TOKEN, api, scrape, wait_ready  # noqa: E402
from detectors.pipeline.judge import WindowsRecord  # noqa: E402
from streams.live.broker import EmbeddedBroker, free_port  # noqa: E402
from streams.live.settings import Settings  # noqa: E402
from streams.live.topics import ensure_topics, read_to_end  # noqa: E402

APP, BASELINE, CANARY, TAIL = "freeze-web", "freeze-base", "freeze-canary", "freeze-tail"
BATCH = 20  # beacons per request
WINDOW_MS = 5000  # the worker's default windows


@dataclass
class Plan:
    """How long each phase lasts and how hard the load is."""

    freeze_s: float = 30.0
    rate: float = 1000.0  # beacons/s
    before_s: float = 20.0
    after_s: float = 30.0
    drain_s: float = 180.0  # at most, to close every window of the load
    ack_timeout_s: float = 5.0  # the worker's RUMGATE_INGEST_ACK_TIMEOUT_S, for the report
    progress_s: float = 5.0
    retries: int = 0  # times a 503'd request is sent again, after its Retry-After


@dataclass
class Answer:
    sent_at: float  # monotonic
    first: int  # id of the request's first beacon
    status: int  # 0: no answer (a client error)
    wait_s: float
    accepted: int = 0
    retry_after: str | None = None
    attempt: int = 0  # 0: the first send, then each retry
    duplicates: int = 0  # beacons the endpoint had already taken (a retry of a 503'd request)


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    sent: int = 0  # beacons
    last_ts_ms: int = 0  # wall clock of the last load request (the endpoint stamps ts with it)
    phase: str = "before"


def body(first: int, release_of) -> bytes:
    """``BATCH`` canonical beacons with ids ``first…``, three page views per session."""
    return b"\n".join(orjson.dumps({
        "id": f"f-{n}", "app": APP, "release": release_of(n), "session": f"s-{n // 3}", "page": "/p",
        "device": "mobile", "metrics": {"LCP": 2000.0 + n % 700, "CLS": 0.02, "INP": 120.0, "TTFB": 400.0},
        "errors": 0}) for n in range(first, first + BATCH))


async def post(session, url: str, first: int, data: bytes, load: Load | None, retries: int = 0) -> None:
    """One request, and up to ``retries`` more of the same beacons after each 503's
    ``Retry-After``, as an SDK that retries does; each answer into ``load``."""
    for attempt in range(retries + 1):
        answer = await _attempt(session, url, first, data, attempt)
        if load is not None:
            load.answers.append(answer)
            load.last_ts_ms = max(load.last_ts_ms, int(time.time() * 1000))
        if answer.status != 503:
            return
        await asyncio.sleep(float(answer.retry_after or 5))


async def _attempt(session, url: str, first: int, data: bytes, attempt: int) -> Answer:
    import aiohttp

    t0 = time.monotonic()
    answer = Answer(t0, first, 0, 0.0, attempt=attempt)
    try:
        async with session.post(url, data=data) as resp:
            raw = await resp.read()
            answer.status, answer.retry_after = resp.status, resp.headers.get("Retry-After")
            if resp.status == 202:
                counts = orjson.loads(raw)
                answer.accepted, answer.duplicates = counts["accepted"], counts["duplicates"]
    except (aiohttp.ClientError, asyncio.TimeoutError):
        pass
    answer.wait_s = time.monotonic() - t0
    return answer


async def paced(http: str, rate: float, until, load: Load | None, release_of, first_id: int,
                retries: int = 0) -> None:
    """Requests of ``BATCH`` beacons at ``rate`` beacons/s, each its own task, until ``until()``."""
    import aiohttp

    url, interval, n = f"{http}/v1/beacons", BATCH / rate, first_id
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"Content-Type": "application/x-ndjson"}) as session:
        tasks, next_at = set(), time.monotonic()
        while not until():
            task = asyncio.ensure_future(post(session, url, n, body(n, release_of), load, retries))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if load is not None:
                load.sent += BATCH
            n += BATCH
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks)


def load_release(n: int) -> str:
    """10 % of the sessions (three page views each, as :func:`body` makes them) on the canary."""
    return CANARY if (n // 3) % 10 == 0 else BASELINE


# -- the run ------------------------------------------------------------------------------------

async def freeze(broker_pid: int, plan: Plan, load: Load, marks: dict) -> None:
    """Before, SIGSTOP for ``freeze_s``, SIGCONT, after: the load's phases."""
    await asyncio.sleep(plan.before_s)
    os.kill(broker_pid, signal.SIGSTOP)
    marks["frozen"], marks["frozen_ms"], load.phase = time.monotonic(), int(time.time() * 1000), "frozen"
    try:
        await asyncio.sleep(plan.freeze_s)
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    marks["thawed"], marks["thawed_ms"], load.phase = time.monotonic(), int(time.time() * 1000), "after"
    marks["at_thaw"] = await asyncio.to_thread(scrape, marks["http"])
    await asyncio.sleep(plan.after_s)
    load.phase = "done"


async def progress(http: str, load: Load, t0: float, every_s: float, worker_pid: int) -> None:
    seen = 0
    while load.phase != "done":
        await asyncio.sleep(every_s)
        new = load.answers[seen:]
        seen = len(load.answers)
        by = collections.Counter(a.status for a in new)
        longest = max((a.wait_s for a in new), default=0.0)
        accepted = sum(a.accepted for a in load.answers)
        try:
            m = await asyncio.to_thread(scrape, http)
        except OSError:
            m = {}
        print(f"  {time.monotonic() - t0:6.1f} s  {load.phase:6}  sent {load.sent:8,}  accepted {accepted:8,}  "
              f"last {every_s:g} s: 202 {by.get(202, 0):4} 503 {by.get(503, 0):4} other "
              f"{sum(v for k, v in by.items() if k not in (202, 503)):3}  longest {longest:5.2f} s  "
              f"windows {m.get('rumgate_windows_closed_total', 0):5.0f}  verdicts {m.get('rumgate_verdicts_total', 0):4.0f}"
              f"  failing {m.get('rumgate_stage1_failing_partitions', 0):.0f}  "
              f"worker {rss_mb(worker_pid) or 0:4.0f} MB", flush=True)


async def drain(http: str, servers: str, topics, load: Load, deadline_s: float) -> dict:
    """Trickle beacons of ``TAIL`` until the load's partition has closed every window of the
    load (or ``deadline_s`` passes); then what the topics hold."""
    end = time.monotonic() + deadline_s
    state: dict = {"closed": False}

    async def watch() -> None:
        while time.monotonic() < end:
            counted = await count_windows(servers, topics.windows)
            state["windows"] = counted
            if counted["closed_before"] is not None and counted["closed_before"] > load.last_ts_ms + WINDOW_MS:
                state["closed"] = True
                return
            print(f"  draining: page views counted so far {counted['views']:,}; the load's partition has closed "
                  f"windows up to {counted['closed_before']} (needs > {load.last_ts_ms + WINDOW_MS})", flush=True)
            await asyncio.sleep(5)

    watcher = asyncio.ensure_future(watch())
    await paced(http, 40.0, lambda: watcher.done() or time.monotonic() > end, None, lambda n: TAIL, 10**9)
    await watcher
    return state


async def count_windows(servers: str, topic: str) -> dict:
    """Page views of the load's releases on ``rum.windows``, each (source, window, cohort)
    once (the first publication, as the judge keeps it), and how far the sources carrying
    the load have closed their windows."""
    seen: set = set()
    views = capped = republished = 0
    closed: dict[int, int] = {}
    sources: set[int] = set()
    async for batch in read_to_end(servers, topic):
        for r in batch:
            record = WindowsRecord.from_dict(orjson.loads(r.value))
            if record.closed_before is not None:
                closed[record.source] = max(closed.get(record.source, record.closed_before), record.closed_before)
            for s in record.summaries:
                if s.key.app != APP or s.key.release == TAIL:
                    continue
                sources.add(record.source)
                k = (record.source, s.start, tuple(s.key))
                if k in seen:
                    republished += 1
                    continue
                seen.add(k)
                views += s.page_views
                capped += s.capped
    closed_before = min((closed.get(p) for p in sources), default=None) if sources else None
    return {"views": views, "capped": capped, "republished": republished, "closed_before": closed_before,
            "sources": sorted(sources)}


async def stored_beacons(servers: str, topic: str) -> collections.Counter:
    """How many times each of the load's beacon ids is on ``rum.beacons``."""
    ids: collections.Counter = collections.Counter()
    async for batch in read_to_end(servers, topic):
        for r in batch:
            for line in r.value.split(b"\n"):
                parsed = orjson.loads(line) if line.strip() else []
                for b in parsed if isinstance(parsed, list) else [parsed]:
                    if b.get("app") == APP and b.get("release") != TAIL:
                        ids[b["id"]] += 1
    return ids


async def dead_letters(servers: str, topic: str) -> tuple[int, int]:
    """Records on the DLQ, and the items they hold (an array's members, else one)."""
    records = items = 0
    async for batch in read_to_end(servers, topic):
        for r in batch:
            records += 1
            try:
                value = orjson.loads(r.value)
            except orjson.JSONDecodeError:
                value = None
            items += len(value) if isinstance(value, list) else 1
    return records, items


# -- the report ---------------------------------------------------------------------------------

def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def tally(load: Load, marks: dict, state: dict, stored: collections.Counter, dlq: tuple[int, int],
          end: dict) -> dict:
    """The run's figures, from the answers the load got and what the topics hold."""
    answers = load.answers
    ok_ids = {f"f-{a.first + k}" for a in answers if a.status == 202 for k in range(BATCH)}
    refused_ids = {f"f-{a.first + k}" for a in answers if a.attempt == 0 for k in range(BATCH)} - ok_ids
    waits_503 = [a.wait_s for a in answers if a.status == 503]
    frozen = [a for a in answers if marks["frozen"] <= a.sent_at < marks["thawed"]]
    windows = state.get("windows", {})
    thaw = marks["at_thaw"]
    return {
        "requests": len(answers), "by_status": dict(collections.Counter(a.status for a in answers)),
        "frozen_requests": len(frozen), "frozen_202": sum(a.status == 202 for a in frozen),
        "frozen_503": sum(a.status == 503 for a in frozen),
        "retry_after": dict(collections.Counter(a.retry_after for a in answers if a.status == 503)),
        "wait_503_max": max(waits_503, default=0.0), "wait_503_p99": quantile(waits_503, .99),
        "wait_503_p50": quantile(waits_503, .5), "wait_max": max((a.wait_s for a in answers), default=0.0),
        "wait_p99": quantile([a.wait_s for a in answers], .99),
        "sent": load.sent, "accepted": sum(a.accepted for a in answers),
        "stored": sum(1 for n in stored.values() if n),
        "missing": sum(1 for i in ok_ids if stored[i] == 0),
        "twice": sum(1 for n in stored.values() if n > 1), "copies": sum(stored.values()),
        "landed_anyway": sum(1 for i in refused_ids if stored[i]), "never_202": len(refused_ids),
        "retries": sum(a.attempt > 0 for a in answers), "duplicates": sum(a.duplicates for a in answers),
        "counted": windows.get("views", 0), "republished": windows.get("republished", 0),
        "capped": windows.get("capped", 0), "closed": state.get("closed", False),
        "dlq_records": dlq[0], "dlq_items": dlq[1], "dead_letters_metric": end.get("rumgate_dead_letters_total", 0),
        "rebuilds": end.get("rumgate_stage1_send_failures_total", 0),
        "agent_crashes": end.get("rumgate_agent_crashes_total", 0),
        "windows_after_thaw": end.get("rumgate_windows_closed_total", 0) - thaw.get("rumgate_windows_closed_total", 0),
        "verdicts_after_thaw": end.get("rumgate_verdicts_total", 0) - thaw.get("rumgate_verdicts_total", 0),
        "readyz": end.get("readyz"), "alive": end.get("alive"),
    }


def passed(t: dict) -> bool:
    """Every 202'd beacon stored, every stored beacon counted once (its copies too)."""
    return t["missing"] == 0 and t["counted"] == t["stored"] and t["closed"]


def report(plan: Plan, t: dict) -> bool:
    other = sum(v for k, v in t["by_status"].items() if k not in (202, 503))
    rows = [
        ("freeze", f"{plan.freeze_s:g} s (SIGSTOP of the broker), load {plan.rate:g} beacons/s in requests of {BATCH}"
                   + (f", a 503'd request sent again up to {plan.retries} times" if plan.retries else "")),
        ("requests", f"{t['requests']:,}: 202 {t['by_status'].get(202, 0):,}, 503 {t['by_status'].get(503, 0):,}, "
                     f"other {other:,}"),
        ("requests sent while frozen", f"{t['frozen_requests']:,}: 202 {t['frozen_202']:,}, 503 {t['frozen_503']:,}"),
        ("503 Retry-After", ", ".join(f"{k!r} × {v:,}" for k, v in t["retry_after"].items()) or "-"),
        ("503 wait: max / p99 / p50", f"{t['wait_503_max']:.2f} / {t['wait_503_p99']:.2f} / {t['wait_503_p50']:.2f} s "
                                      f"(ack timeout {plan.ack_timeout_s:g} s)"),
        ("any answer's wait: max / p99", f"{t['wait_max']:.2f} / {t['wait_p99']:.2f} s"),
        ("beacons sent", f"{t['sent']:,}"),
        ("accepted (sum of 202 answers)", f"{t['accepted']:,}" + (
            f" (retried requests {t['retries']:,}; beacons answered as duplicates {t['duplicates']:,}; beacons "
            f"never answered 202 {t['never_202']:,})" if plan.retries else "")),
        ("stored in rum.beacons", f"{t['stored']:,} ids; of the 202'd: {t['missing']:,} missing; ids stored twice: "
                                  f"{t['twice']:,}; 503'd beacons that landed anyway: {t['landed_anyway']:,}"),
        ("counted in rum.windows", f"{t['counted']:,} page views (republished summaries ignored: {t['republished']}; "
                                   f"capped {t['capped']})"),
        ("dead letters", f"{t['dlq_records']:,} records, {t['dlq_items']:,} items (metric {t['dead_letters_metric']:.0f})"),
        ("stage-1 rebuilds / agent crashes", f"{t['rebuilds']:.0f} / {t['agent_crashes']:.0f}"),
        ("windows closed after the thaw", f"{t['windows_after_thaw']:.0f}"),
        ("verdicts after the thaw", f"{t['verdicts_after_thaw']:.0f}"),
        ("all windows of the load closed", "yes" if t["closed"] else "no (drain timed out)"),
        ("worker at the end", f"/readyz {t['readyz']}, alive {t['alive']}"),
    ]
    print("\n| | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    ok = passed(t)
    print(f"\n{'PASS' if ok else 'FAIL'}: every 202'd beacon counted once: accepted {t['accepted']:,}, counted "
          f"{t['counted']:,} (stored {t['stored']:,} = accepted + {t['landed_anyway']:,} of 503'd requests; "
          f"202'd missing {t['missing']:,}, stored twice {t['twice']:,})")
    return ok


def readyz(http: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{http}/readyz", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


async def freeze_run(plan: Plan, http: str, servers: str, topics, broker_pid: int, worker_pid: int,
                     alive) -> dict:
    """Load, freeze, thaw, drain against a running worker; the :func:`tally` of it."""
    load, marks = Load(), {"http": http}
    t0 = time.monotonic()
    print(f"load {plan.rate:g} beacons/s; SIGSTOP of the broker (pid {broker_pid}) at {plan.before_s:g} s "
          f"for {plan.freeze_s:g} s; {plan.after_s:g} s of load after", flush=True)
    await asyncio.gather(freeze(broker_pid, plan, load, marks),
                         paced(http, plan.rate, lambda: load.phase == "done", load, load_release, 0, plan.retries),
                         progress(http, load, t0, plan.progress_s, worker_pid))
    print(f"load done at {time.monotonic() - t0:.0f} s; draining", flush=True)
    state = await drain(http, servers, topics, load, plan.drain_s)
    stored = await stored_beacons(servers, topics.beacons)
    dlq = await dead_letters(servers, topics.dlq)
    end = await asyncio.to_thread(scrape, http)
    end["readyz"], end["alive"] = readyz(http), alive()
    return tally(load, marks, state, stored, dlq, end)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--freeze-s", type=float, default=30.0, help="how long the broker is stopped (default 30)")
    parser.add_argument("--rate", type=float, default=1000.0, help="beacons per second (default 1000)")
    parser.add_argument("--before-s", type=float, default=20.0, help="load before the freeze (default 20)")
    parser.add_argument("--after-s", type=float, default=30.0, help="load after the thaw (default 30)")
    parser.add_argument("--drain-s", type=float, default=180.0, help="at most this long to close every window")
    parser.add_argument("--ack-timeout-s", type=float, default=5.0, help="RUMGATE_INGEST_ACK_TIMEOUT_S (default 5)")
    parser.add_argument("--progress-s", type=float, default=5.0, help="seconds between progress lines")
    parser.add_argument("--retries", type=int, default=0,
                        help="send a 503'd request again after its Retry-After, up to this many times (default 0: "
                             "as sendBeacon, never)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="rumgate-freeze-"))
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        settings = Settings(broker=broker.url, app_id="rumgate-freeze", topic_prefix="freeze.")
        asyncio.run(ensure_topics(settings))
        port = free_port()
        env = dict(os.environ, RUMGATE_BROKER=broker.url, RUMGATE_APP_ID=settings.app_id,
                   RUMGATE_TOPIC_PREFIX=settings.topic_prefix, RUMGATE_API_TOKEN=TOKEN,
                   RUMGATE_HTTP=f"127.0.0.1:{port}", RUMGATE_INGEST_RATE_LIMIT="100000",
                   RUMGATE_INGEST_ACK_TIMEOUT_S=f"{args.ack_timeout_s:g}", PYTHONPATH=str(REPO))
        log = tmp / "worker.log"
        worker = subprocess.Popen([sys.executable, "-m", "streams", "worker", "--loglevel", "warning"],
                                  env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=tmp)  # noqa: SIM115
        http = f"http://127.0.0.1:{port}"
        try:
            print(f"broker freeze: broker {broker.url}, worker log {log}", flush=True)
            wait_ready(http, worker)
            plan = Plan(**{k: v for k, v in vars(args).items() if k in Plan.__dataclass_fields__})
            api(http, "POST", "/v1/rollouts", {"app": APP, "canary": CANARY, "baseline": BASELINE,
                                               "expected_share": 0.1})
            t = asyncio.run(freeze_run(plan, http, broker.servers, settings.topics, broker.process.pid, worker.pid,
                                       lambda: worker.poll() is None))
            ok = report(plan, t)
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
