"""Pipeline throughput and latency: the live worker against the embedded broker.

One run starts the embedded broker (Tansu, memory storage) and produces two data sets of
simulated beacons (the ``stationary`` scenario, seed 1): ``--beacons`` one beacon per record
at ``--rate`` beacons/s of event time, and ``--batch-beacons`` 100 beacons per record (a JSON
array) at ``--batch-rate``. The event-time rate sets how many windows the data spans, so
that stage 1 closes windows and publishes them in both (the output counts them). Then, on
each data set, it times three contenders that all read the whole topic:

aiokafka  bare ``AIOKafkaConsumer``: assign every partition (no group), ``getmany`` until
          all records are read, only counting them. The floor of what any consumer pays.
faust     a bare Faust agent on the worker's own app (``streams.live.app.build_app`` and
          ``declare_topics``, what ``create_app`` makes stage 1's app of, without the
          worker's agents) that only iterates:
          ``async for events in stream.take_events(batch_max, within=batch_within_s)``,
          counting. What Faust itself costs.
stage1    the rumgate worker's own app (``streams.live.app.create_app``): the ``aggregate`` agent
          (stage 1: decode, windows, dead letters, ``rum.windows``, checkpoints, commits),
          with the ``judge`` agent running beside it in the same process as in production
          (no rollout is defined, so no gate runs).

Each contender runs in its own fresh Python process (the same script with ``--child``)
with its own consumer group / app id and its own topic prefix for everything it writes,
so runs do not interfere and every one reads the same records from offset 0. The contenders
alternate (the order rotates each repeat) so that all of them see the same noise.

Timing: a contender's clock starts once its code has handled the first batch of records
(so process start, broker connection, group join, partition assignment and the first fetch
are excluded for all three alike) and stops when its last record has been handled; rate =
records (or beacons) handled after the first batch / that interval. For stage 1 the first
"batch" is the first partition's share of the first ``take_events`` batch. The baselines do
not decode, so their beacons/s is records/s × the data set's beacons per record. Start-up
(spawn to clock start) is reported separately.

Latency (stage 1 + stage 2): a full worker with 1-s windows and 500 ms allowed lateness,
a rollout whose policy will not decide (warm-up 0 s, min duration 30 min), and traffic paced
in real time whose beacon timestamps are the wall clock at sending. For each verdict on
``rum.verdicts``: latency = ``emitted_at - (at + lateness_ms)``, i.e. from the wall-clock
moment the window could close (its end plus the allowed lateness: the first beacon past
that moment closes it) to the verdict's publication.

Targets: stage 1 one-beacon rate ≥ 80 % of the bare Faust rate; batch records ≥ 150,000
beacons/s per worker; latency p99 ≤ 1 s. Medians over ``--repeat`` runs.

    python benchmarks/pipeline_throughput.py                      # 1 repeat, about 4 minutes
    python benchmarks/pipeline_throughput.py --repeat 3
    python benchmarks/pipeline_throughput.py --skip-latency --repeat 5
    python benchmarks/pipeline_throughput.py --skip-throughput --fetch-max-wait-ms 1500   # what-if
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import orjson  # noqa: E402

TARGET_RATIO = 0.80  # stage-1 one-beacon rate / bare Faust rate
TARGET_BATCH = 150_000.0  # beacons/s through stage 1 with 100-beacon records, one worker
TARGET_P99_MS = 1000.0  # window close → verdict, p99
CONTENDERS = ("aiokafka", "faust", "stage1")
LABELS = {"aiokafka": "bare aiokafka", "faust": "bare Faust agent", "stage1": "stage 1 (aggregate)"}
BENCH_POLICY = "name: bench\nwarmup: 0s\nmin_duration: 30m\nmax_duration: 2h\n"


FIRST_BATCH_ALL = "the first batch held every record: nothing left to time (use more beacons)"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ================================================================================================
# Children: one contender per process
# ================================================================================================


def _write(path: str, result: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def _contender_settings(spec: dict):
    from streams.live.settings import Settings, Topics

    topics = replace(Topics.prefixed(spec["prefix"]), beacons=spec["data_topic"])
    settings = Settings(broker=spec["broker"], app_id=spec["app_id"], beacons_partitions=spec["partitions"],
                        window_ms=spec["window_ms"], lateness_ms=spec["lateness_ms"],
                        batch_max=spec["batch_max"], batch_within_s=spec["batch_within_s"],
                        rebalance_timeout_s=spec["group_timeout_s"], session_timeout_s=spec["group_timeout_s"],
                        http="off", topics=topics)
    if spec.get("fetch_max_wait_ms"):  # what-if: not the shipped setting
        settings = replace(settings, fetch_max_wait_ms=spec["fetch_max_wait_ms"])
    return settings


async def _child_aiokafka(spec: dict) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=spec["servers"], group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=1 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(spec["data_topic"], p) for p in range(spec["partitions"])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + spec["timeout_s"]
        n, t0, t0_wall, n0 = 0, None, None, 0
        while n < spec["records"] and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                n += len(records)
            if t0 is None and n:  # the clock starts once the first batch has been handled
                t0, t0_wall, n0 = time.perf_counter(), time.time(), n
                if n0 >= spec["records"]:
                    return {"ok": False, "error": FIRST_BATCH_ALL}
        t1 = time.perf_counter()
    finally:
        await consumer.stop()
    if n < spec["records"]:
        return {"ok": False, "error": f"read {n} of {spec['records']} records before the deadline"}
    return {"ok": True, "records": n, "timed_records": n - n0, "seconds": t1 - t0, "first_wall": t0_wall}


def _bare_worker_app(settings, sources: int):
    """The worker's own app and ``rum.beacons`` topic, without its agents.

    ``streams.live.app.build_app`` and ``declare_topics`` are what ``create_app`` (the
    ``stage1`` contender's app) is made of, so the bare Faust baseline has the worker's app
    settings, consumer (its ``fetch_max_wait_ms``) and topic by construction: only the
    agents differ.
    """
    from streams.live.app import build_app, declare_topics

    app = build_app(settings, sources)
    return app, declare_topics(app, settings, sources)["beacons"]


def _child_faust(spec: dict) -> int:
    """Run a Faust worker in this process (bare agent, stage 1, or the full worker for latency)."""
    from faust.worker import Worker

    settings = _contender_settings(spec)
    kind = spec["kind"]
    state: dict = {"t0": None, "t0_wall": None, "done": False, "progress": lambda: ""}
    total = spec.get("records", 0)

    def finish(result: dict) -> None:
        if state["done"]:
            return
        state["done"] = True
        _write(spec["result"], result)
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful shutdown

    if kind == "faust":
        app, topic = _bare_worker_app(settings, spec["partitions"])
        counted = [0]
        state["progress"] = lambda: f"{counted[0]} of {total} records"

        @app.agent(topic, name="count")
        async def count(stream):
            async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
                counted[0] += len(events)
                if state["t0"] is None:  # the clock starts once the first batch has been handled
                    state["t0"], state["t0_wall"], state["n0"] = time.perf_counter(), time.time(), counted[0]
                    if counted[0] >= total:
                        finish({"ok": False, "error": FIRST_BATCH_ALL})
                elif counted[0] >= total:
                    finish({"ok": True, "records": counted[0], "timed_records": counted[0] - state["n0"],
                            "seconds": time.perf_counter() - state["t0"], "first_wall": state["t0_wall"]})
    else:
        from streams.live.app import create_app

        rt = create_app(settings, spec["partitions"], quiet=True)
        app = rt.app
        state["progress"] = lambda: f"{rt.stats} of {total} records"
        if kind == "stage1":
            original = rt.stage1.process

            async def process(p: int, events: list) -> None:
                await original(p, events)
                st = rt.stats
                if state["t0"] is None:  # the clock starts once the first (partition's) batch is handled
                    state["t0"], state["t0_wall"] = time.perf_counter(), time.time()
                    state["n0"], state["b0"] = st["records"], st["beacons"]
                    if st["records"] >= total:
                        finish({"ok": False, "error": FIRST_BATCH_ALL})
                elif st["records"] >= total:
                    finish({"ok": True, "records": st["records"], "beacons": st["beacons"],
                            "timed_records": st["records"] - state["n0"], "timed_beacons": st["beacons"] - state["b0"],
                            "windows": st["windows"], "dead_letters": st["dead_letters"],
                            "seconds": time.perf_counter() - state["t0"], "first_wall": state["t0_wall"]})

            rt.stage1.process = process  # the agent looks it up on the instance at each batch
        else:  # latency: the unmodified worker; say when the partitions are ours

            @app.on_partitions_assigned.connect
            async def ready(sender, assigned, **kwargs):
                if any(tp.topic == settings.topics.beacons for tp in assigned):
                    Path(spec["ready"]).touch()

    started = time.monotonic()
    crashes: list[str] = []

    class CrashWatch(logging.Handler):
        """Faust restarts a crashed agent and carries on; a benchmark must not."""

        def emit(self, record: logging.LogRecord) -> None:
            if "Crashed reason=" in record.getMessage():
                crashes.append(record.getMessage().split("Crashed reason=", 1)[1][:500])

    logging.getLogger("faust").addHandler(CrashWatch(logging.ERROR))

    @app.timer(0.5)
    async def watchdog():
        if crashes and not state["done"] and spec["kind"] != "latency":
            finish({"ok": False, "crashed": True, "error": f"agent crashed: {crashes[0]} "
                                                           f"({state['progress']()})"})
        if not state["done"] and time.monotonic() - started > spec["timeout_s"]:
            finish({"ok": False, "error": f"not finished after {spec['timeout_s']:g} s "
                                          f"(clock {'started' if state['t0'] else 'never started'}; "
                                          f"{state['progress']()})"})

    worker = Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    return 0


def child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    if spec["kind"] == "aiokafka":
        try:
            result = asyncio.run(_child_aiokafka(spec))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            result = {"ok": False, "error": repr(exc)}
        _write(spec["result"], result)
        return 0
    return _child_faust(spec)


# ================================================================================================
# Parent: data, runs, statistics
# ================================================================================================


@dataclass
class DataSet:
    per_record: int
    topic: str
    records: int
    beacons: int

    @property
    def label(self) -> str:
        return "1 beacon/record" if self.per_record == 1 else f"{self.per_record} beacons/record"


@dataclass
class Run:
    kind: str
    data: DataSet
    repeat: int
    seconds: float  # timed interval
    timed_records: int  # records handled in it
    startup_s: float  # spawn → clock start (not timed)
    timed_beacons: int | None = None  # stage 1 counts them; the baselines do not decode
    extra: dict = field(default_factory=dict)
    failed: str | None = None  # why the contender did not finish (then no rate)

    @property
    def records_per_s(self) -> float:
        return self.timed_records / self.seconds if not self.failed else float("nan")

    @property
    def beacons_per_s(self) -> float:
        if self.failed:
            return float("nan")
        if self.timed_beacons is not None:
            return self.timed_beacons / self.seconds
        return self.records_per_s * self.data.beacons / self.data.records


class Bench:
    def __init__(self, args: argparse.Namespace, broker, tmp: Path) -> None:
        self.args = args
        self.broker = broker
        self.tmp = tmp
        self.serial = 0

    def spec(self, kind: str, prefix: str, data_topic: str, **extra) -> dict:
        self.serial += 1
        a = self.args
        return {"kind": kind, "broker": self.broker.url, "servers": self.broker.servers,
                "app_id": f"bench-{kind}-{self.serial}", "prefix": prefix, "data_topic": data_topic,
                "partitions": a.partitions, "window_ms": a.window_ms, "lateness_ms": a.lateness_ms,
                "batch_max": a.batch_max, "batch_within_s": a.batch_within_s,
                "group_timeout_s": a.group_timeout, "timeout_s": a.timeout,
                "fetch_max_wait_ms": getattr(a, "fetch_max_wait_ms", None),
                "result": str(self.tmp / f"result-{self.serial}.json"),
                "ready": str(self.tmp / f"ready-{self.serial}"), **extra}

    def spawn(self, spec: dict) -> tuple[subprocess.Popen, Path]:
        logfile = self.tmp / f"child-{spec['kind']}-{self.serial}.log"
        with open(logfile, "wb") as out:
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return proc, logfile

    def wait(self, proc: subprocess.Popen, timeout: float) -> None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def throughput(self, kind: str, data: DataSet, repeat: int) -> Run:
        prefix = f"r{repeat}{kind}{data.per_record}."
        spec = self.spec(kind, prefix, data.topic, records=data.records)
        if kind == "stage1":  # as `rumgate worker` does before running the app
            from streams.live.topics import ensure_topics

            asyncio.run(ensure_topics(_contender_settings(spec)))
        spawned = time.time()
        proc, logfile = self.spawn(spec)
        self.wait(proc, self.args.timeout + 60)
        try:
            result = json.loads(Path(spec["result"]).read_text())
        except (OSError, ValueError):
            result = {"ok": False, "error": f"no result (exit code {proc.returncode})"}
        if result.get("crashed"):
            return Run(kind, data, repeat, float("nan"), 0, float("nan"), failed=result["error"])
        if not result.get("ok"):
            tail = logfile.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{LABELS[kind]} on {data.label}: {result.get('error')}\n--- child log ---\n{tail}")
        extra = {k: result[k] for k in ("beacons", "windows", "dead_letters") if k in result}
        if kind == "stage1" and result["beacons"] != data.beacons:
            raise RuntimeError(f"stage 1 counted {result['beacons']} beacons, {data.beacons} were produced")
        if kind == "stage1" and not result["windows"]:
            log("  WARNING: stage 1 closed no window: the data spans too little event time (raise --beacons "
                "or lower --rate); window publication and checkpoints are not in this measurement")
        return Run(kind, data, repeat, result["seconds"], result["timed_records"], result["first_wall"] - spawned,
                   result.get("timed_beacons"), extra)

    def latency(self, repeat: int) -> dict:
        from detectors.policy import parse_policy
        from detectors.rollout import Rollout
        from streams.live.settings import Settings
        from streams.offline.simulate import SCENARIOS, generate_beacons
        from streams.live.topics import ensure_topics, read_to_end

        a = self.args
        window_ms, lateness_ms = a.latency_window_ms, a.latency_lateness_ms
        spec = self.spec("latency", f"r{repeat}lat.", f"r{repeat}lat.rum.beacons",
                         window_ms=window_ms, lateness_ms=lateness_ms)
        settings = Settings(broker=self.broker.url, app_id=spec["app_id"], topic_prefix=spec["prefix"],
                            beacons_partitions=a.partitions, window_ms=window_ms, lateness_ms=lateness_ms)
        asyncio.run(ensure_topics(settings))
        base = SCENARIOS["stationary"]
        now = int(time.time() * 1000)
        rollout = Rollout(id=f"bench-latency-{repeat}", app=base.app, canary=base.canary, baseline=base.baseline,
                          started_at=now - now % window_ms, policy=parse_policy(BENCH_POLICY),
                          expected_share=base.canary_share)
        asyncio.run(_produce_one(self.broker.servers, settings.topics.rollouts, rollout.id.encode(),
                                 orjson.dumps(rollout.to_dict())))
        proc, logfile = self.spawn(spec)
        try:
            deadline = time.monotonic() + 120
            while not Path(spec["ready"]).exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("latency worker did not get its partitions\n--- child log ---\n"
                                       + logfile.read_text(errors="replace")[-3000:])
                time.sleep(0.1)
            time.sleep(2.0)  # table recovery and agent start after the assignment
            # The first window starts on a 5-s boundary (the generator's grid) at least 1 s ahead,
            # so the beacons can be generated before their time comes.
            start_ms = (int(time.time() * 1000) + 1000) // 5000 * 5000 + 5000
            scenario = replace(base, start_ms=start_ms, duration_s=float(a.latency_seconds), rate=a.latency_rate)
            beacons = list(generate_beacons(scenario, seed=100 + repeat))
            log(f"  latency: {len(beacons):,} beacons over {a.latency_seconds} s at {a.latency_rate:g}/s, "
                f"paced to the wall clock")
            lags = asyncio.run(_paced(self.broker.servers, settings.topics.beacons, beacons, a.partitions))
            time.sleep((window_ms + lateness_ms) / 1000 + 3.0)  # the last windows closed by traffic
        finally:
            proc.terminate()  # our child: a graceful Faust shutdown
            self.wait(proc, 30)
        last_ts = beacons[-1]["ts"] if beacons else start_ms
        warmup_end = start_ms + a.latency_warmup * 1000

        async def verdicts() -> list[dict]:
            out = []
            async for batch in read_to_end(self.broker.servers, settings.topics.verdicts):
                out += [orjson.loads(r.value) for r in batch]
            return out

        events = [v for v in asyncio.run(verdicts()) if v.get("rollout") == rollout.id]
        kept = [v for v in events if v["at"] - window_ms >= warmup_end and v["at"] + lateness_ms <= last_ts]
        lat = sorted(v["emitted_at"] - (v["at"] + lateness_ms) for v in kept)
        # Split: when did the last source partition publish progress past the window (the Kafka
        # CreateTime of its rum.windows record, stamped by stage 1's producer)?
        progress = asyncio.run(_windows_progress(self.broker.servers, settings.topics.windows))
        stage1, stage2 = [], []
        for v in kept:
            start = v["at"] - window_ms
            times = [next((t for cb, t in progress.get(p, ()) if cb > start), None) for p in range(a.partitions)]
            if None not in times:
                stage1.append(max(times) - (v["at"] + lateness_ms))
                stage2.append(v["emitted_at"] - max(times))
        if not lat:
            raise RuntimeError(f"no verdicts to time ({len(events)} on {settings.topics.verdicts})\n"
                               "--- child log ---\n" + logfile.read_text(errors="replace")[-3000:])
        decided = [v["verdict"] for v in events if v["verdict"] != "continue"]
        return {"samples": lat, "verdicts": len(events), "kept": len(kept), "send_lag": lags,
                "other_verdicts": decided, "stage1": sorted(stage1), "stage2": sorted(stage2)}


async def _windows_progress(servers: str, topic: str) -> dict[int, list[tuple[int, int]]]:
    """Per source partition: ``(closed_before, CreateTime ms)`` of its rum.windows records, in order."""
    from streams.live.topics import read_to_end

    out: dict[int, list[tuple[int, int]]] = {}
    async for batch in read_to_end(servers, topic):
        for r in batch:
            d = orjson.loads(r.value)
            if d.get("closed_before") is not None:
                out.setdefault(int(d["source"]), []).append((int(d["closed_before"]), r.timestamp))
    for v in out.values():
        v.sort(key=lambda x: x[1])
    return out


async def _produce_one(servers: str, topic: str, key: bytes, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _paced(servers: str, topic: str, beacons: list[dict], partitions: int) -> list[float]:
    """Send each beacon once the wall clock reaches its ``ts`` (its Kafka timestamp).

    ``streams.offline.feed.produce_beacons(speed=1.0)`` paces per ``window_ms`` group and from its own
    start, so its beacons can leave before their ``ts``; here none leaves early. Returns the
    send lag (wall clock at send − ts, ms) of the oldest beacon of each send group.
    """
    from aiokafka import AIOKafkaProducer

    from streams.offline.feed import partition_of

    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    lags: list[float] = []
    try:
        i, n = 0, len(beacons)
        while i < n:
            now = time.time() * 1000
            ts = beacons[i]["ts"]
            if ts > now:
                await asyncio.sleep((ts - now) / 1000)
                continue
            lags.append(now - ts)
            while i < n and beacons[i]["ts"] <= now:
                b = beacons[i]
                await producer.send(topic, orjson.dumps(b), partition=partition_of(b, partitions),
                                    timestamp_ms=b["ts"])
                i += 1
        await producer.flush()
    finally:
        await producer.stop()
    return lags


def prepare_data(args: argparse.Namespace, broker) -> list[DataSet]:
    from streams.offline.feed import produce_beacons
    from streams.live.settings import Settings
    from streams.offline.simulate import SCENARIOS, generate_beacons
    from streams.live.topics import ensure_topics, read_to_end

    async def count(topic: str) -> int:
        n = 0
        async for batch in read_to_end(broker.servers, topic):
            n += len(batch)
        return n

    out = []
    for per_record, n, rate in ((1, args.beacons, args.rate), (100, args.batch_beacons, args.batch_rate)):
        # The stationary scenario, seed 1, at each data set's event-time rate.
        scenario = replace(SCENARIOS["stationary"], duration_s=max(10.0, math.ceil(n / rate * 1.05)), rate=rate)
        settings = Settings(broker=broker.url, topic_prefix=f"data{per_record}.", beacons_partitions=args.partitions)
        asyncio.run(ensure_topics(settings))
        t0 = time.perf_counter()
        produced = asyncio.run(produce_beacons(broker.servers, settings.topics.beacons,
                                               islice(generate_beacons(scenario, seed=1), n), args.partitions,
                                               per_record=per_record))
        records = asyncio.run(count(settings.topics.beacons))
        out.append(DataSet(per_record, settings.topics.beacons, records, produced))
        log(f"generated and produced {produced:,} beacons ({produced / rate:.0f} s of event time) as "
            f"{records:,} records to {settings.topics.beacons} ({args.partitions} partitions) "
            f"in {time.perf_counter() - t0:.1f} s")
    return out


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "-"


def report(args, data: list[DataSet], runs: list[Run], lat: list[dict], setup: str) -> None:
    out = []
    w = out.append
    w("")
    w("Pipeline throughput and latency (rumgate, embedded broker)")
    w(setup)
    w("Timing: the clock starts once the contender's code has handled its first batch and stops when the")
    w("last record is handled; rate = records handled in between / that time. Process start, connection,")
    w("group join, assignment and the first fetch are thus excluded for every contender alike (shown as")
    w("'start-up'). Each contender: its own process, consumer group and output topics; same topic data.")
    w("Baselines do not decode: their beacons/s = records/s x beacons per record of the data set.")
    w("'windows': window summaries stage 1 closed and published to rum.windows in the run.")
    w("")
    w(f"{'repeat':>6}  {'contender':<20} {'data':<18} {'records/s':>11} {'beacons/s':>11} "
      f"{'timed s':>8} {'start-up s':>10} {'windows':>8}")
    for r in runs:
        if r.failed:
            w(f"{r.repeat + 1:>6}  {LABELS[r.kind]:<20} {r.data.label:<18} FAILED: {r.failed[:200]}")
            continue
        w(f"{r.repeat + 1:>6}  {LABELS[r.kind]:<20} {r.data.label:<18} {fmt_rate(r.records_per_s):>11} "
          f"{fmt_rate(r.beacons_per_s):>11} {r.seconds:>8.2f} {r.startup_s:>10.1f} "
          f"{r.extra.get('windows', '-'):>8}")
    w("")
    w(f"Medians over {args.repeat} repeat(s) (failed runs left out and counted):")
    w(f"  {'contender':<20} {'data':<18} {'records/s':>11} {'beacons/s':>11}")
    med: dict[tuple[str, int], float] = {}
    for d in data:
        for kind in CONTENDERS:
            rs = [r for r in runs if r.kind == kind and r.data is d and not r.failed]
            failed = sum(1 for r in runs if r.kind == kind and r.data is d and r.failed)
            med[(kind, d.per_record)] = median([r.beacons_per_s for r in rs])
            w(f"  {LABELS[kind]:<20} {d.label:<18} {fmt_rate(median([r.records_per_s for r in rs])):>11} "
              f"{fmt_rate(med[(kind, d.per_record)]):>11}" + (f"   ({failed} run(s) FAILED)" if failed else ""))

    def paired(num: str, den: str, per_record: int) -> float:
        ratios = []
        for rep in range(args.repeat):
            a = [r for r in runs if r.kind == num and r.data.per_record == per_record and r.repeat == rep]
            b = [r for r in runs if r.kind == den and r.data.per_record == per_record and r.repeat == rep]
            if a and b and not a[0].failed and not b[0].failed:
                ratios.append(a[0].beacons_per_s / b[0].beacons_per_s)
        return median(ratios)

    ratio = paired("stage1", "faust", 1)
    w("")
    w("Ratios (median over repeats of each repeat's ratio; ratio of the medians in brackets):")
    for num, den, pr in (("stage1", "faust", 1), ("faust", "aiokafka", 1), ("stage1", "aiokafka", 1),
                         ("stage1", "faust", 100), ("faust", "aiokafka", 100)):
        dl = "1 beacon/record" if pr == 1 else f"{pr} beacons/record"
        w(f"  {LABELS[num] + ' / ' + LABELS[den]:<42} {dl:<18} {paired(num, den, pr):>7.1%} "
          f"[{med[(num, pr)] / med[(den, pr)]:.1%}]")
    batch = med[("stage1", 100)]
    w("")
    w("Targets:")
    w(f"  stage 1 / bare Faust, 1 beacon/record    {ratio:>10.1%}   target >= {TARGET_RATIO:.0%}: "
      f"{'MET' if ratio >= TARGET_RATIO else 'NOT MET'}")
    w(f"  stage 1, 100 beacons/record (beacons/s)  {batch:>10,.0f}   target >= {TARGET_BATCH:,.0f}: "
      f"{'MET' if batch >= TARGET_BATCH else 'NOT MET'}")
    if lat:
        p50s = [pct(x["samples"], 50) for x in lat]
        p99s = [pct(x["samples"], 99) for x in lat]
        maxs = [x["samples"][-1] for x in lat]
        pooled = sorted(s for x in lat for s in x["samples"])
        p99 = median(p99s)
        w(f"  latency p99, window close -> verdict     {p99:>8.0f} ms   target <= {TARGET_P99_MS:.0f} ms: "
          f"{'MET' if p99 <= TARGET_P99_MS else 'NOT MET'}")
        w("")
        w(f"Latency: {args.latency_window_ms} ms windows, {args.latency_lateness_ms} ms lateness, "
          f"{args.latency_rate:g} beacons/s for {args.latency_seconds} s per repeat (first "
          f"{args.latency_warmup} s not counted), full worker (stage 1 + stage 2), one rollout.")
        w("  latency = emitted_at - (at + lateness_ms): verdict publication (wall clock) minus the moment")
        w("  the window could close (window end + allowed lateness; beacon ts = wall clock at sending).")
        w(f"  {'repeat':>6} {'verdicts':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'send lag p99 ms':>16}")
        for i, x in enumerate(lat):
            lags = sorted(x["send_lag"])
            w(f"  {i + 1:>6} {x['kept']:>9} {p50s[i]:>8.0f} {p99s[i]:>8.0f} {maxs[i]:>8.0f} "
              f"{pct(lags, 99) if lags else float('nan'):>16.1f}")
            if x["other_verdicts"]:
                w(f"         (non-continue verdicts: {', '.join(sorted(set(x['other_verdicts'])))})")
        w(f"  {'median':>6} {'':>9} {median(p50s):>8.0f} {p99:>8.0f} {median(maxs):>8.0f}")
        w(f"  {'pooled':>6} {len(pooled):>9} {pct(pooled, 50):>8.0f} {pct(pooled, 99):>8.0f} {pooled[-1]:>8.0f}")
        s1 = sorted(v for x in lat for v in x["stage1"])
        s2 = sorted(v for x in lat for v in x["stage2"])
        if s1:
            w("  Split (pooled), by the CreateTime of the rum.windows record with which the last source")
            w("  partition reported the window closed:")
            w(f"    window could close -> last source's progress on rum.windows (stage 1): p50 {pct(s1, 50):.0f} ms, "
              f"p99 {pct(s1, 99):.0f} ms, max {s1[-1]:.0f} ms")
            w(f"    that record -> verdict published (stage 2):                          p50 {pct(s2, 50):.0f} ms, "
              f"p99 {pct(s2, 99):.0f} ms, max {s2[-1]:.0f} ms")
    else:
        w("  latency                                  (skipped)")
    print("\n".join(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beacons", type=int, default=200_000,
                    help="beacons in the one-beacon-per-record data set (default 200000)")
    ap.add_argument("--batch-beacons", type=int, default=1_000_000,
                    help="beacons in the 100-beacons-per-record data set (default 1000000: more, because "
                         "stage 1 takes up to 2000 records = 200,000 beacons per batch)")
    ap.add_argument("--repeat", type=int, default=1, help="repeats of every measurement; medians are reported "
                                                          "(default 1)")
    ap.add_argument("--rate", type=float, default=2000.0,
                    help="event-time rate of the one-beacon data, beacons/s: how many windows it spans "
                         "(default 2000: 200,000 beacons = 100 s = 20 five-second windows per partition)")
    ap.add_argument("--batch-rate", type=float, default=20_000.0,
                    help="event-time rate of the 100-beacon data (default 20000, a busy site: 1,000,000 "
                         "beacons = 50 s). Higher rates make larger window records: with 4 partitions, 80000 "
                         "puts one window of one partition over 1 MB, which rum.windows and the worker's "
                         "producer take (up to 16 MB)")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of rum.beacons (default 4)")
    ap.add_argument("--window-ms", type=int, default=5000, help="stage-1 window for throughput (default 5000)")
    ap.add_argument("--lateness-ms", type=int, default=5000, help="allowed lateness for throughput (default 5000)")
    ap.add_argument("--batch-max", type=int, default=2000, help="stage-1 take_events size (default 2000, "
                                                                "the worker's)")
    ap.add_argument("--batch-within-s", type=float, default=0.1, help="take_events timeout (default 0.1)")
    ap.add_argument("--group-timeout", type=float, default=3.0,
                    help="rebalance and session timeout of the Faust groups, s (default 3)")
    ap.add_argument("--timeout", type=float, default=300.0, help="give up on one contender after this, s")
    ap.add_argument("--latency-seconds", type=int, default=60, help="paced traffic per latency run (default 60)")
    ap.add_argument("--latency-rate", type=float, default=1000.0, help="paced beacons/s (default 1000)")
    ap.add_argument("--latency-window-ms", type=int, default=1000)
    ap.add_argument("--latency-lateness-ms", type=int, default=500)
    ap.add_argument("--latency-warmup", type=int, default=5, help="first seconds of windows not counted")
    ap.add_argument("--fetch-max-wait-ms", type=int, default=None,
                    help="WHAT-IF, not the shipped worker: run the Faust processes with this "
                         "fetch_max_wait_ms setting instead of the worker's default (Settings, 100 ms; "
                         "Faust's own is 1500, which Tansu holds a fetch for about half of under "
                         "steady traffic)")
    ap.add_argument("--skip-latency", action="store_true", help="throughput only")
    ap.add_argument("--skip-throughput", action="store_true", help="latency only")
    ap.add_argument("--only", choices=CONTENDERS, action="append", help="run only these contenders "
                    "(repeatable; the ratios need all three)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if min(args.beacons, args.batch_beacons) < 1000 or args.repeat < 1 or args.partitions < 1:
        ap.error("--beacons and --batch-beacons must be >= 1000, --repeat and --partitions >= 1")

    from streams.live.broker import EmbeddedBroker
    from streams.live.settings import Settings

    kinds = [k for k in CONTENDERS if not args.only or k in args.only]
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import aiokafka
    import faust

    setup = (f"Machine: {os.cpu_count()} CPUs ({affinity} usable), Python {sys.version.split()[0]}, "
             f"faust-streaming {faust.__version__}, aiokafka {aiokafka.__version__}; broker: Tansu (memory), "
             f"same host.\nData: stationary traffic: {args.beacons:,} beacons one per record at {args.rate:g} "
             f"beacons/s of event time, {args.batch_beacons:,} 100 per record at {args.batch_rate:g}/s; "
             f"{args.partitions} partitions; stage 1 "
             f"with {args.window_ms} ms windows, {args.lateness_ms} ms lateness, take_events({args.batch_max}, "
             f"within={args.batch_within_s:g} s); group timeouts {args.group_timeout:g} s."
             + (f"\nWHAT-IF: Faust processes run with fetch_max_wait_ms={args.fetch_max_wait_ms} "
                f"(the shipped worker's setting is {Settings().fetch_max_wait_ms})." if args.fetch_max_wait_ms else ""))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rumgate-pipe-") as tmpdir, \
            EmbeddedBroker(log_path=Path(tmpdir) / "broker.log") as broker:
        tmp = Path(tmpdir)
        log(f"embedded broker at {broker.url}")
        bench = Bench(args, broker, tmp)
        data = [] if args.skip_throughput else prepare_data(args, broker)
        runs: list[Run] = []
        lat: list[dict] = []
        for rep in range(args.repeat):
            for d in data:
                order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
                for kind in order:
                    log(f"repeat {rep + 1}/{args.repeat}: {LABELS[kind]} on {d.label} ...")
                    run = bench.throughput(kind, d, rep)
                    runs.append(run)
                    if run.failed:
                        log(f"  FAILED: {run.failed}")
                    else:
                        log(f"  {run.records_per_s:,.0f} records/s, {run.beacons_per_s:,.0f} beacons/s "
                            f"({run.seconds:.2f} s timed, start-up {run.startup_s:.1f} s)")
            if not args.skip_latency:
                log(f"repeat {rep + 1}/{args.repeat}: latency ...")
                x = bench.latency(rep)
                lat.append(x)
                log(f"  {x['kept']} verdicts timed: p50 {pct(x['samples'], 50):.0f} ms, "
                    f"p99 {pct(x['samples'], 99):.0f} ms, max {x['samples'][-1]:.0f} ms")
    log(f"done in {time.monotonic() - began:.0f} s")
    if runs and set(kinds) == set(CONTENDERS):
        report(args, data, runs, lat, setup)
    elif lat or runs:
        report_partial(args, runs, lat, setup)
    return 0


def report_partial(args, runs: list[Run], lat: list[dict], setup: str) -> None:
    print(setup)
    for r in runs:
        if r.failed:
            print(f"{r.repeat + 1:>3} {LABELS[r.kind]:<20} {r.data.label:<18} FAILED: {r.failed[:300]}")
            continue
        print(f"{r.repeat + 1:>3} {LABELS[r.kind]:<20} {r.data.label:<18} {r.records_per_s:>11,.0f} records/s "
              f"{r.beacons_per_s:>11,.0f} beacons/s")
    for i, x in enumerate(lat):
        print(f"latency repeat {i + 1}: {x['kept']} verdicts, p50 {pct(x['samples'], 50):.0f} ms, "
              f"p99 {pct(x['samples'], 99):.0f} ms, max {x['samples'][-1]:.0f} ms "
              "(latency = emitted_at - (at + lateness_ms))")
        if x["stage1"]:
            print(f"    stage 1 part p50 {pct(x['stage1'], 50):.0f} ms p99 {pct(x['stage1'], 99):.0f} ms; "
                  f"stage 2 part p50 {pct(x['stage2'], 50):.0f} ms p99 {pct(x['stage2'], 99):.0f} ms")
    if lat:
        p99 = median([pct(x["samples"], 99) for x in lat])
        print(f"latency median over {len(lat)} repeat(s): p50 {median([pct(x['samples'], 50) for x in lat]):.0f} ms, "
              f"p99 {p99:.0f} ms, max {median([x['samples'][-1] for x in lat]):.0f} ms; target p99 <= "
              f"{TARGET_P99_MS:.0f} ms: {'MET' if p99 <= TARGET_P99_MS else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(main())
