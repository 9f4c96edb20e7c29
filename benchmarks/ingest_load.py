"""Ingestion load: the beacon endpoint under HTTP load, next to a bare aiohttp handler.

One run starts the embedded broker (Tansu, memory storage) and measures the servers, each in
its own fresh process, with the same load, alternating (the order flips every repeat):

bare      a bare aiohttp handler for ``POST /v1/beacons`` that reads the body and returns 204:
          same aiohttp, same server set-up as ``rumgate ingest`` (``web.Application()``,
          ``AppRunner(access_log=None)``, ``TCPSite``, the GC settings of ``settle_gc``), the
          default asyncio loop. The ceiling of any aiohttp endpoint on this machine.
parse     a reference (skip it with ``--no-parse``): the bare handler plus the least any
          endpoint that looks at its beacons does, ``orjson.loads`` of every NDJSON line and
          ``orjson.dumps`` of every beacon, answering 202 with a JSON body. No checks, no Kafka.
          It shows how much of the bare rate is left once every beacon is touched in Python.
          With ``--body datadog-deflate`` it ``zlib.decompress``-es the body first (when the
          query names ``dd-evp-encoding``) and touches every RUM event the same way.
endpoint  the real endpoint, ``python -m streams ingest --broker URL --http 127.0.0.1:PORT``,
          producing to the embedded broker, with ``RUMGATE_INGEST_RATE_LIMIT`` set very high
          (every request comes from 127.0.0.1) and a fresh ``RUMGATE_TOPIC_PREFIX`` per process.

``--breakdown`` adds two references that take parts away from the endpoint, to show what
each costs (both serve the endpoint's own ``Ingestor.handle``):

no-kafka   the endpoint with a sink that acks every record at once: nothing is produced.
no-dedupe  no-kafka, and the dedupe table answers "new" for every id without looking.

Load: sent over ``--connections`` keep-alive connections, closed loop (each connection sends
its next request when the previous response is in), for ``--duration`` seconds after a
``--warmup`` that is not counted. The body of every request (``--body``):

ndjson           (the default, the canonical fast path) ``POST /v1/beacons`` with
                 ``Content-Type: application/x-ndjson`` and ``--beacons-per-request`` (10)
                 canonical beacons with unique ids (so dedupe drops none).
envelope         one page view in the browser snippet's ``text/plain`` envelope, five
                 web-vitals metrics (the general path; wrk only).
datadog-deflate  one real Datadog browser-SDK batch, as ``@datadog/browser-rum`` 7.16.2 sends
                 it through a ``proxy`` with ``compressIntakeRequests: true``: the single POST
                 recorded in ``tests/sdks/captures/datadog.json`` (7 RUM events: 3 resource,
                 an error, a long_task, an action and the view), its NDJSON zlib-compressed
                 (``zlib.compress``, the ``78 9c`` header) per request, posted as
                 ``POST /v1/beacons?ddforward=...`` with the capture's ``ddforward`` and
                 ``dd-evp-encoding=deflate`` inside it where the SDK puts it (before
                 ``batch_time``), ``Content-Type: text/plain;charset=UTF-8`` and no
                 ``Content-Encoding``: only ``dd-evp-encoding`` says it is compressed. Each
                 request is a new page view: the capture's ``view.id`` and ``session.id`` are
                 replaced (in every event) by ids unique per run, connection and request. One
                 page view per request; the asyncio client only (``--client python``: wrk's
                 Lua cannot deflate a body).

The load generator is its own process: ``wrk`` with a Lua script that builds each body
(``--client wrk``, the default when ``wrk`` is on the PATH), or an asyncio aiohttp client
(``--client python``). ``--client compare`` runs both against the bare handler, to show which
one loads the server harder.

Correctness of every measured run (endpoint): the ``/healthz`` counters before and after, once
they stop moving: accepted must equal the beacons sent (requests sent × beacons per request),
with nothing rejected or duplicated, and no non-2xx responses or socket errors. Nothing may be
ignored either, except with ``--body datadog-deflate``: a Datadog batch carries events that
are not page views (resource, long_task, action), which the endpoint counts as ignored. How
many per request is found at start by one conversion of the (compressed) template the way the
endpoint does it (``datadog_coding`` + ``inflate``, ``parse_body``, ``convert_items``); that
conversion must give one beacon and no rejects, and every measured run must then show accepted
= requests × 1 and ignored = requests × that count.

Memory (``--soak``, 60 s): a fresh endpoint process under the same load; its RSS (``VmRSS`` in
``/proc/PID/status``) is sampled every second. Reported: first, max, last, the value at 10 s,
and the least-squares slope over the second half (MB/min). Flat = slope under
``FLAT_SLOPE_MB_MIN`` and the last value within 10 % of the value at 10 s. The endpoint's
dedupe table is allocated at start (``RUMGATE_INGEST_DEDUPE_SLOTS``, 1,048,576 ids, 16 MiB);
at full load it holds fewer ids than 30 minutes bring, and the ids it forgets early are
reported (``dedupe_evicted_early`` on ``/healthz``).

Targets: endpoint requests/s ≥ 50 % of the bare handler's (median of the per-repeat ratios);
memory flat during the soak. The machine has 2 shared cores: the load generator, the server
and the broker compete for them, so the CPU each used during the measured interval is
reported too (% of one core).

    python benchmarks/ingest_load.py                          # 3 repeats of 10 s + 60 s soak, ~3 min
    python benchmarks/ingest_load.py --repeat 5 --connections 64
    python benchmarks/ingest_load.py --client compare --soak 0 --repeat 1
    python benchmarks/ingest_load.py --skip-throughput --soak 60
    python benchmarks/ingest_load.py --client python --body datadog-deflate --repeat 3 --soak 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 0.50  # endpoint requests/s / bare handler requests/s
FLAT_SLOPE_MB_MIN = 3.0  # second-half RSS slope under this ...
FLAT_LAST_VS_10S = 0.10  # ... and last RSS within 10 % of the RSS at 10 s
CLK_TCK = os.sysconf("SC_CLK_TCK")
APP, RELEASE = "shop-web", "r2"
KINDS = ("bare", "parse", "no-dedupe", "no-kafka", "endpoint")
BREAKDOWN = ("no-dedupe", "no-kafka")
DATADOG_CAPTURE = ROOT / "tests" / "sdks" / "captures" / "datadog.json"
DATADOG_CONTENT_TYPE = "text/plain;charset=UTF-8"

WRK_SCRIPT = r"""
-- Each request: N canonical beacons as NDJSON (kind "ndjson"), or one page view in the
-- envelope the browser snippet sends with sendBeacon (kind "envelope", text/plain); ids
-- unique per run, thread and request.
local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

function init(args)
  run, ts, n, kind = args[1], args[2], tonumber(args[3]), args[4]
  sent = 0
  pre = '{"id":"' .. run .. '-' .. tid .. '-'
  if kind == "envelope" then
    headers = { ["Content-Type"] = "text/plain;charset=UTF-8" }
    post = '","app":"shop-web","release":"r2","session":"s-' .. tid .. '","page":"/p","device":"mobile",' ..
           '"errors":0,"metrics":[' ..
           '{"name":"TTFB","value":350.2,"rating":"good","delta":350.2,"id":"v6-1","navigationType":"navigate"},' ..
           '{"name":"FCP","value":1100.4,"rating":"good","delta":1100.4,"id":"v6-2","navigationType":"navigate"},' ..
           '{"name":"LCP","value":2480,"rating":"good","delta":2480,"id":"v6-3","navigationType":"navigate"},' ..
           '{"name":"INP","value":120,"rating":"good","delta":40,"id":"v6-4","navigationType":"navigate"},' ..
           '{"name":"CLS","value":0.02,"rating":"good","delta":0.02,"id":"v6-5","navigationType":"navigate"}]}'
  else
    headers = { ["Content-Type"] = "application/x-ndjson" }
    post = '","ts":' .. ts .. ',"app":"shop-web","release":"r2","session":"s-' .. tid ..
           '","page":"/p","device":"mobile","metrics":{"LCP":2400.0,"CLS":0.01,"INP":120.0},"errors":0}'
  end
end

function request()
  sent = sent + 1
  local lines = {}
  for k = 1, n do
    lines[k] = pre .. sent .. '-' .. k .. post
  end
  return wrk.format("POST", "/v1/beacons", headers, table.concat(lines, "\n"))
end

function done(summary, latency, requests)
  -- wrk calls request() once on the first thread before the run, to check it (never sent)
  local total = -1
  for _, t in ipairs(threads) do total = total + t:get("sent") end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"sent": %d, "responses": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"non2xx": %d, "timeouts": %d}\n',
    total, summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ================================================================================================
# The Datadog deflate body
# ================================================================================================


def datadog_template() -> dict:
    """The recorded Datadog batch as a template: its NDJSON ``body``, the ``query`` to post it
    with (the capture's ``ddforward``, ``dd-evp-encoding=deflate`` put inside it where the SDK
    puts it when it compresses), and the ``view_id`` and ``session_id`` to replace per request."""
    import base64

    posts = [r for r in json.loads(DATADOG_CAPTURE.read_text()) if r["method"] == "POST"]
    if len(posts) != 1:
        raise SystemExit(f"{DATADOG_CAPTURE}: expected one POST, found {len(posts)}")
    post = posts[0]
    body = base64.b64decode(post["body_b64"])
    events = [json.loads(line) for line in body.split(b"\n") if line.strip()]
    views = [e for e in events if e.get("type") == "view"]
    if len(views) != 1:
        raise SystemExit(f"{DATADOG_CAPTURE}: expected one view event, found {len(views)}")
    view_id, session_id = views[0]["view"]["id"], views[0]["session"]["id"]
    query = post["query"]
    # The SDK adds dd-evp-encoding after dd-request-id, before batch_time (as in
    # tests/sdks/captures/datadog-compressed.json); ddforward's own query is percent-encoded.
    anchor = "%26batch_time%3D"
    if not query.startswith("ddforward=") or query.count(anchor) != 1 or "dd-evp-encoding" in query:
        raise SystemExit(f"{DATADOG_CAPTURE}: unexpected query {query[:120]!r}")
    query = query.replace(anchor, "%26dd-evp-encoding%3Ddeflate" + anchor)
    types: dict[str, int] = {}
    for e in events:
        types[e["type"]] = types.get(e["type"], 0) + 1
    return {"body": body, "query": query, "view_id": view_id, "session_id": session_id, "types": types,
            "compressed_bytes": len(zlib.compress(body))}


def datadog_body(template: dict, view_id: str, session_id: str) -> bytes:
    """One request's body: the template with its own view and session ids, zlib-compressed."""
    body = template["body"].replace(template["view_id"].encode(), view_id.encode())
    return zlib.compress(body.replace(template["session_id"].encode(), session_id.encode()))


def datadog_expected(template: dict) -> dict:
    """What the endpoint makes of one template request, found the way it does: the coding from
    ``ddforward``, the body inflated, parsed and converted by ``streams.ingest.formats``."""
    from streams.ingest.formats import Context, convert_items, parse_body
    from streams.ingest.inflate import datadog_coding, inflate

    query = dict(urllib.parse.parse_qsl(template["query"], keep_blank_values=True))
    coding = datadog_coding(query)
    if coding != "deflate":
        raise SystemExit(f"the Datadog query does not say dd-evp-encoding=deflate: {template['query'][:160]!r}")
    compressed = datadog_body(template, template["view_id"], template["session_id"])
    if compressed[:2] != b"\x78\x9c":
        raise SystemExit(f"zlib.compress gave a body starting {compressed[:2].hex()}, not 789c")
    body = inflate(compressed, coding, limit=1 << 20, source="dd-evp-encoding")
    media = DATADOG_CONTENT_TYPE.split(";", 1)[0].strip().lower()
    items = parse_body(body, media, query)
    beacons, rejects, ignored = convert_items(items, Context(received_at=int(time.time() * 1000)))
    if len(beacons) != 1 or rejects:
        raise SystemExit(f"the Datadog template gives {len(beacons)} beacons and rejects {rejects}: "
                         "expected one page view and no rejects")
    return {"beacons": len(beacons), "ignored": len(ignored), "items": len(items),
            "ignored_reasons": sorted({reason for _, reason, _ in ignored})}


# ================================================================================================
# Children: the bare server and the Python load generator
# ================================================================================================


def _serve(address: str, beacons, counts: dict | None = None) -> None:
    """Serve ``POST /v1/beacons`` with ``beacons`` (and ``/healthz``, with ``counts``) the way
    ``rumgate ingest`` does, its garbage-collector settings included (they make the bare
    handler itself about 5 % faster, so the comparison stays like for like)."""
    from aiohttp import web

    host, _, port = address.rpartition(":")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **(counts or {})})

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("POST", "/v1/beacons", beacons)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, int(port)).start()
        from streams.cli.ingest import settle_gc

        settle_gc()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


def run_bare_server(address: str) -> None:
    """Read the body, answer 204: the ceiling of any aiohttp endpoint."""
    from aiohttp import web

    async def beacons(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    _serve(address, beacons)


def run_parse_server(address: str) -> None:
    """The bare handler plus one ``orjson.loads`` and ``orjson.dumps`` per beacon: a reference."""
    import orjson
    from aiohttp import web

    async def beacons(request: web.Request) -> web.Response:
        body = await request.read()
        if "dd-evp-encoding" in request.query_string:  # --body datadog-deflate
            body = zlib.decompress(body)
        out = [orjson.dumps(orjson.loads(line)) for line in body.split(b"\n") if line.strip()]
        record = b"[" + b",".join(out) + b"]"
        return web.Response(status=202, body=orjson.dumps({"accepted": len(out), "bytes": len(record)}),
                            content_type="application/json")

    _serve(address, beacons)


def run_ingestor_server(address: str, dedupe: bool) -> None:
    """The endpoint's ``Ingestor`` with a sink that acks at once; ``dedupe=False``: every id is new."""
    import numpy as np

    from streams.ingest.endpoint import IngestConfig, Ingestor

    async def sink(topic: str, key: bytes, value: bytes, headers: list) -> None:
        return None

    ingestor = Ingestor(IngestConfig(rate_per_s=1e9, burst=10**9), sink)
    if not dedupe:  # every id is new, on both paths
        table = ingestor.dedupe
        table.fresh_mask = lambda keys, now_ms: np.ones(len(keys), dtype=bool)
        table.first_times = lambda keys, now_ms: [True] * len(keys)
        table.first_time = lambda key, now_ms: True
    _serve(address, ingestor.handle, ingestor.counts)


def run_python_load(spec: dict) -> None:
    """The asyncio aiohttp load generator: prints one ``RESULT {json}`` line like the wrk script."""
    import aiohttp
    import yarl

    async def load() -> dict:
        n, run, ts = spec["beacons"], spec["run"], spec["ts"]
        posts = [(f'","ts":{ts},"app":"{APP}","release":"{RELEASE}","session":"s-{c}","page":"/p",'
                  '"device":"mobile","metrics":{"LCP":2400.0,"CLS":0.01,"INP":120.0},"errors":0}').encode()
                 for c in range(spec["connections"])]
        headers = {"Content-Type": "application/x-ndjson"}
        url = spec["url"]
        datadog = spec.get("body") == "datadog-deflate"
        if datadog:  # one recorded SDK batch per request, a new page view each, deflated here
            template = datadog_template()
            headers = {"Content-Type": DATADOG_CONTENT_TYPE}
            url = yarl.URL(url + "?" + template["query"], encoded=True)  # ddforward as the SDK encodes it
        latencies: list[float] = []
        stats = {"sent": 0, "non2xx": 0, "errors": 0}
        connector = aiohttp.TCPConnector(limit=spec["connections"])
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = time.perf_counter() + spec["duration"]

            async def worker(c: int) -> None:
                pre, post, i = f'{{"id":"{run}-{c}-'.encode(), posts[c], 0
                while time.perf_counter() < deadline:
                    i += 1
                    if datadog:
                        body = datadog_body(template, f"{run}-v{c}-{i}", f"{run}-s{c}-{i}")
                    else:
                        body = b"\n".join(pre + f"{i}-{k}".encode() + post for k in range(n))
                    stats["sent"] += 1
                    t0 = time.perf_counter()
                    try:
                        async with session.post(url, data=body, headers=headers) as resp:
                            await resp.read()
                            if not 200 <= resp.status < 300:
                                stats["non2xx"] += 1
                    except aiohttp.ClientError:
                        stats["errors"] += 1
                        continue
                    latencies.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(c) for c in range(spec["connections"])))
            elapsed = time.perf_counter() - t0
        latencies.sort()
        q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0  # noqa: E731
        return {"sent": stats["sent"], "responses": len(latencies), "duration_us": int(elapsed * 1e6),
                "p50_us": int(q(0.50) * 1e6), "p99_us": int(q(0.99) * 1e6),
                "max_us": int((latencies[-1] if latencies else 0) * 1e6), "connect_errors": 0,
                "read_errors": stats["errors"], "write_errors": 0, "non2xx": stats["non2xx"], "timeouts": 0}

    print("RESULT " + json.dumps(asyncio.run(load())), flush=True)


# ================================================================================================
# The orchestrator
# ================================================================================================


def get_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Server:
    """One server process (bare or endpoint) on a free port; stopped on exit."""

    def __init__(self, kind: str, broker_url: str, log_dir: Path, rate_limit: float,
                 extra_env: dict[str, str] | None = None) -> None:
        from streams.live.broker import free_port

        self.kind, self.port = kind, free_port()
        self.prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}."
        self.log_path = log_dir / f"{kind}-{self.port}.log"
        if kind != "endpoint":
            cmd = [sys.executable, str(Path(__file__).resolve()), f"--{kind}-server", f"127.0.0.1:{self.port}"]
            env = dict(os.environ)
        else:
            cmd = [sys.executable, "-m", "streams", "ingest", "--broker", broker_url,
                   "--http", f"127.0.0.1:{self.port}"]
            env = dict(os.environ, RUMGATE_INGEST_RATE_LIMIT=f"{rate_limit:g}", RUMGATE_TOPIC_PREFIX=self.prefix,
                       **(extra_env or {}))
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.process.returncode}; see {self.log_path}")
            try:
                get_json(self.url + "/healthz", 0.5)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} server not ready within {timeout_s:g} s; see {self.log_path}")

    def counts(self) -> dict:
        return get_json(self.url + "/healthz")

    def settled_counts(self, quiet_s: float = 0.5, timeout_s: float = 15.0) -> dict:
        """The /healthz counters once they have not moved for ``quiet_s``."""
        last, since, deadline = self.counts(), time.monotonic(), time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.counts()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
        return last

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Load:
    """One load-generator process against ``url`` for ``duration`` seconds."""

    def __init__(self, args: argparse.Namespace, client: str, url: str, duration: float, tmp: Path) -> None:
        self.run_id = uuid.uuid4().hex[:10]
        ts = int(time.time() * 1000)
        self.out_path = tmp / f"load-{self.run_id}.out"
        self.out = open(self.out_path, "wb")  # noqa: SIM115
        if client == "wrk":
            script = tmp / "beacons.lua"
            if not script.exists():
                script.write_text(WRK_SCRIPT)
            cmd = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{max(1, round(duration))}s",
                   "--timeout", "30s", "-s", str(script), url + "/v1/beacons", "--",
                   self.run_id, str(ts), str(args.beacons_per_request), args.body]
        else:
            spec = {"url": url + "/v1/beacons", "connections": args.connections, "duration": duration,
                    "beacons": args.beacons_per_request, "run": self.run_id, "ts": ts, "body": args.body}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--load-child", json.dumps(spec)]
        self.started = time.monotonic()
        self.process = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def finished(self) -> bool:
        """Whether the generator has exited (without reaping it: wait() collects its CPU time)."""
        info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None

    def wait(self) -> dict:
        """Wait for the generator (collecting its CPU time from wait4) and parse its result."""
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.out.close()
        text = self.out_path.read_text(errors="replace")
        line = next((ln for ln in text.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"load generator failed ({self.process.returncode}):\n{text[-2000:]}")
        result = json.loads(line[len("RESULT "):])
        result["cpu_s"] = usage.ru_utime + usage.ru_stime
        return result


def measure(args: argparse.Namespace, client: str, server: Server, broker_pid: int, tmp: Path,
            duration: float) -> dict:
    """Warm up, then one measured load run with counters and CPU for server and broker."""
    if args.warmup > 0:
        Load(args, client, server.url, args.warmup, tmp).wait()
    before = server.settled_counts() if server.kind == "endpoint" else {}
    ticks0 = (cpu_ticks(server.pid), cpu_ticks(broker_pid))
    t0 = time.monotonic()
    res = Load(args, client, server.url, duration, tmp).wait()
    wall = time.monotonic() - t0
    ticks1 = (cpu_ticks(server.pid), cpu_ticks(broker_pid))
    res["wall_s"] = wall
    res["cpu_server"] = (ticks1[0] - ticks0[0]) / CLK_TCK / wall
    res["cpu_broker"] = (ticks1[1] - ticks0[1]) / CLK_TCK / wall
    res["cpu_load"] = res["cpu_s"] / wall
    res["rps"] = res["responses"] / (res["duration_us"] / 1e6)
    if server.kind == "endpoint":
        after = server.settled_counts()
        res["check"] = check(args, before, after, res)
    return res


def check(args: argparse.Namespace, before: dict, after: dict, res: dict) -> dict:
    delta = {k: after[k] - before.get(k, 0) for k in ("accepted", "rejected", "duplicates", "ignored", "requests")}
    sent_beacons = res["sent"] * args.beacons_per_request
    # a Datadog batch's resource/long_task/action events: ignored, per the template's conversion
    expected_ignored = res["sent"] * args.ignored_per_request
    errors = res["connect_errors"] + res["read_errors"] + res["write_errors"] + res["timeouts"]
    ok = (delta["accepted"] == sent_beacons and delta["requests"] == res["sent"] and res["non2xx"] == 0
          and errors == 0 and delta["rejected"] == delta["duplicates"] == 0
          and delta["ignored"] == expected_ignored)
    return {"ok": ok, "sent_beacons": sent_beacons, "expected_ignored": expected_ignored,
            "socket_errors": errors, "non2xx": res["non2xx"], **delta}


def check_text(c: dict) -> str:
    verdict = "OK" if c["ok"] else "MISMATCH"
    return (f"{verdict}: sent {c['sent_beacons']:,} beacons, accepted {c['accepted']:,} "
            f"(rejected {c['rejected']}, duplicates {c['duplicates']}, ignored {c['ignored']:,} of "
            f"{c.get('expected_ignored', 0):,} expected, non-2xx {c.get('non2xx', 0)}, "
            f"socket errors {c['socket_errors']})")


def soak(args: argparse.Namespace, client: str, broker, tmp: Path) -> dict:
    extra = {"RUMGATE_INGEST_DEDUPE_TTL_S": f"{args.soak_dedupe_ttl:g}"} if args.soak_dedupe_ttl else None
    with Server("endpoint", broker.url, tmp, args.rate_limit, extra) as server:
        server.wait_ready()
        before = server.settled_counts()
        idle = rss_mb(server.pid)
        log(f"soak: endpoint pid {server.pid}, {args.soak:g} s of load, RSS every second")
        samples: list[tuple[float, float]] = []
        load = Load(args, client, server.url, args.soak, tmp)
        t0 = load.started
        tick = 0
        while not load.finished():
            value = rss_mb(server.pid)
            if value is not None:
                samples.append((time.monotonic() - t0, value))
                if tick % 10 == 0:
                    log(f"soak: t={samples[-1][0]:4.0f} s RSS {value:.1f} MB")
            tick += 1
            time.sleep(max(0.0, tick - (time.monotonic() - t0)))
        res = load.wait()
        res["rps"] = res["responses"] / (res["duration_us"] / 1e6)
        after = server.settled_counts()
        res["check"] = check(args, before, after, res)
        res["rss_after_load"] = rss_mb(server.pid)
        res["dedupe_evicted_early"] = server.counts().get("dedupe_evicted_early")
    samples = [(t, v) for t, v in samples if t <= args.soak]
    half = [(t, v) for t, v in samples if t >= args.soak / 2]
    slope = _slope(half) * 60 if len(half) >= 2 else float("nan")
    at10 = min(samples, key=lambda s: abs(s[0] - 10.0))[1]
    first, last, peak = samples[0][1], samples[-1][1], max(v for _, v in samples)
    flat = slope < FLAT_SLOPE_MB_MIN and abs(last - at10) <= FLAT_LAST_VS_10S * at10
    return {"samples": samples, "idle": idle, "first": first, "at10": at10, "max": peak, "last": last,
            "slope_mb_min": slope, "flat": flat, "load": res}


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0


def ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def body_label(args: argparse.Namespace) -> str:
    """What each request's body is, for the report."""
    if args.body == "envelope":
        return "snippet envelopes (text/plain), 1 page view"
    if args.body == "datadog-deflate":
        t = args.datadog
        events = ", ".join(f"{n} {kind}" for kind, n in t["types"].items())
        return (f"one Datadog browser-SDK 7.16.2 batch (the recorded POST of tests/sdks/captures/datadog.json: "
                f"NDJSON of {sum(t['types'].values())} RUM events, {events}; {len(t['body']):,} bytes "
                f"zlib-compressed to {t['compressed_bytes']:,} by the client, {DATADOG_CONTENT_TYPE}, dd-evp-encoding=deflate in ddforward, "
                f"new view.id and session.id per request; {args.ignored_per_request} events ignored as not "
                f"page views), 1 page view")
    return f"canonical NDJSON, {args.beacons_per_request} beacons"


def report_throughput(args: argparse.Namespace, client: str, runs: list[dict]) -> list[str]:
    body = body_label(args)
    out = [f"Load: {client_label(args, client)}, {args.connections} connections, "
           f"{body} per request, {args.duration:g} s measured after "
           f"{args.warmup:g} s warm-up, {args.repeat} repeat(s). CPU in % of one core (2 shared cores).", "",
           "| repeat | server | requests/s | beacons/s | p50 ms | p99 ms | CPU server | CPU broker | CPU load gen | / bare |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    kinds = [k for k in KINDS if any(x["kind"] == k for x in runs)]
    ratios: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.repeat):
        group = {x["kind"]: x for x in runs if x["repeat"] == r}
        for kind in kinds:
            x = group[kind]
            ratio = x["rps"] / group["bare"]["rps"] if group["bare"]["rps"] else float("nan")
            ratios[kind].append(ratio)
            out.append(f"| {r + 1} | {kind} | {x['rps']:,.0f} | {x['rps'] * args.beacons_per_request:,.0f} | "
                       f"{ms(x['p50_us'])} | {ms(x['p99_us'])} | {pct(x['cpu_server'])} | {pct(x['cpu_broker'])} | "
                       f"{pct(x['cpu_load'])} | {pct(ratio) if kind != 'bare' else ''} |")
    med = {}
    for kind in kinds:
        xs = [x for x in runs if x["kind"] == kind]
        med[kind] = {k: statistics.median(x[k] for x in xs)
                     for k in ("rps", "p50_us", "p99_us", "cpu_server", "cpu_broker", "cpu_load")}
    ratio_med = statistics.median(ratios["endpoint"])
    for kind in kinds:
        m = med[kind]
        shown = "" if kind == "bare" else "**" + pct(ratio_med) + "**" if kind == "endpoint" else \
            pct(statistics.median(ratios[kind]))
        out.append(f"| median | {kind} | {m['rps']:,.0f} | {m['rps'] * args.beacons_per_request:,.0f} | "
                   f"{ms(m['p50_us'])} | {ms(m['p99_us'])} | {pct(m['cpu_server'])} | {pct(m['cpu_broker'])} | "
                   f"{pct(m['cpu_load'])} | {shown} |")
    met = ratio_med >= TARGET_RATIO
    out += ["", f"Target endpoint / bare ≥ {pct(TARGET_RATIO)}: **{'met' if met else 'not met'}** "
                f"(median of the per-repeat ratios {pct(ratio_med)}; ratio of the medians "
                f"{pct(med['endpoint']['rps'] / med['bare']['rps'])})."]
    cpu = {k: med[k]["cpu_server"] / med[k]["rps"] * 1e6 for k in kinds}
    parts = [f"the endpoint spends {cpu['endpoint'] - cpu['parse']:.0f} µs more than the parse reference"] \
        if "parse" in cpu else []
    if "no-kafka" in cpu:
        parts += [f"producing to Kafka and waiting for its ack {cpu['endpoint'] - cpu['no-kafka']:.0f} µs "
                  f"(endpoint − no-kafka), dedupe {cpu['no-kafka'] - cpu['no-dedupe']:.0f} µs "
                  "(no-kafka − no-dedupe)"]
    out.append("Server CPU per request (median CPU / median requests/s): "
               + ", ".join(f"{k} {cpu[k]:.0f} µs" for k in kinds) + "".join(f"; {p}" for p in parts) + ".")
    checks = [x["check"] for x in runs if x["kind"] == "endpoint"]
    all_ok = all(c["ok"] for c in checks)
    out.append(f"Correctness of the measured endpoint runs: **{'all OK' if all_ok else 'MISMATCH'}**")
    out += [f"  * repeat {x['repeat'] + 1}: {check_text(x['check'])}" for x in runs if x["kind"] == "endpoint"]
    return out


def report_soak(args: argparse.Namespace, client: str, s: dict) -> list[str]:
    ld = s["load"]
    ttl = (f"RUMGATE_INGEST_DEDUPE_TTL_S={args.soak_dedupe_ttl:g}" if args.soak_dedupe_ttl
           else "the default dedupe (ids kept 1800 s, a fixed table of 1,048,576)")
    out = [f"Soak: a fresh endpoint process with {ttl}, {args.soak:g} s of the same load ({client_label(args, client)}, "
           f"{args.connections} connections): {ld['rps']:,.0f} requests/s "
           f"({ld['rps'] * args.beacons_per_request:,.0f} beacons/s; {body_label(args)} per request), "
           f"p50 {ms(ld['p50_us'])} ms, "
           f"p99 {ms(ld['p99_us'])} ms.", "",
           "| RSS idle, before load | first | at 10 s | max | last | slope over the 2nd half | flat? |",
           "|---|---|---|---|---|---|---|",
           f"| {s['idle']:.1f} MB | {s['first']:.1f} MB | {s['at10']:.1f} MB | {s['max']:.1f} MB | {s['last']:.1f} MB | "
           f"{s['slope_mb_min']:+.1f} MB/min | **{'yes' if s['flat'] else 'no'}** |", "",
           f"Flat = slope < {FLAT_SLOPE_MB_MIN:g} MB/min and last within {pct(FLAT_LAST_VS_10S)} of the value "
           f"at 10 s (last / at 10 s = {pct(s['last'] / s['at10'])}).",
           f"Soak correctness: {check_text(ld['check'])}",
           f"Dedupe ids forgotten before their TTL (table full): {ld.get('dedupe_evicted_early')}",
           "RSS every 5 s: " + ", ".join(f"{t:.0f}s {v:.0f}" for t, v in s["samples"][::5])]
    return out


def client_label(args: argparse.Namespace, client: str) -> str:
    if client == "wrk":
        return f"wrk -t{args.wrk_threads} (Lua-built bodies)"
    return "asyncio aiohttp client (1 process)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="uncounted load before each run (default 2 s)")
    ap.add_argument("--repeat", type=int, default=3, help="bare/endpoint pairs, alternating (default 3)")
    ap.add_argument("--connections", type=int, default=256,
                    help="concurrent keep-alive connections (default 256: enough to keep the endpoint busy "
                         "while each request waits for the linger and the Kafka ack)")
    ap.add_argument("--beacons-per-request", type=int, default=10, help="NDJSON lines per body (default 10)")
    ap.add_argument("--body", choices=("ndjson", "envelope", "datadog-deflate"), default="ndjson",
                    help="ndjson: canonical beacons (the issue's load); envelope: one page view per request in "
                         "the browser snippet's text/plain envelope, which takes the general path (wrk only); "
                         "datadog-deflate: one recorded Datadog browser-SDK batch per request, zlib-deflated "
                         "with dd-evp-encoding=deflate in ddforward, a new page view each (--client python only)")
    ap.add_argument("--soak", type=float, default=60.0, help="memory soak seconds against the endpoint; 0: skip "
                                                              "(default 60)")
    ap.add_argument("--soak-dedupe-ttl", type=float, default=None, metavar="S",
                    help="RUMGATE_INGEST_DEDUPE_TTL_S for the soak endpoint (default: the endpoint's, 1800 s)")
    ap.add_argument("--skip-throughput", action="store_true", help="only the soak")
    ap.add_argument("--no-parse", action="store_true", help="skip the parse reference server")
    ap.add_argument("--breakdown", action="store_true",
                    help="also measure the endpoint without Kafka (no-kafka) and without Kafka and dedupe "
                         "(no-dedupe), to show what each costs")
    ap.add_argument("--client", choices=("auto", "wrk", "python", "compare"), default="auto",
                    help="load generator: wrk if on the PATH (auto), the asyncio client, or compare both "
                         "against the bare handler first")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: the cores are few)")
    ap.add_argument("--rate-limit", type=float, default=1e9, help="RUMGATE_INGEST_RATE_LIMIT for the endpoint")
    ap.add_argument("--json", help="also write every raw result to this file")
    ap.add_argument("--bare-server", metavar="HOST:PORT", help=argparse.SUPPRESS)
    ap.add_argument("--parse-server", metavar="HOST:PORT", help=argparse.SUPPRESS)
    ap.add_argument("--no-kafka-server", metavar="HOST:PORT", help=argparse.SUPPRESS)
    ap.add_argument("--no-dedupe-server", metavar="HOST:PORT", help=argparse.SUPPRESS)
    ap.add_argument("--load-child", metavar="SPEC", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.bare_server:
        run_bare_server(args.bare_server)
        return 0
    if args.parse_server:
        run_parse_server(args.parse_server)
        return 0
    if args.no_kafka_server or args.no_dedupe_server:
        run_ingestor_server(args.no_kafka_server or args.no_dedupe_server, dedupe=bool(args.no_kafka_server))
        return 0
    if args.load_child:
        run_python_load(json.loads(args.load_child))
        return 0

    from streams.live.broker import EmbeddedBroker

    has_wrk = shutil.which("wrk") is not None
    if args.client in ("wrk", "compare") and not has_wrk:
        ap.error("wrk is not on the PATH (apt-get install -y wrk), use --client python")
    client = "python" if args.client == "python" or not has_wrk else "wrk"
    args.ignored_per_request = 0
    if args.body == "envelope":
        if client != "wrk" or args.client == "compare":
            ap.error("--body envelope needs wrk")
        args.beacons_per_request = 1  # one page view per envelope
    results: dict = {"client": client, "cpus": os.cpu_count()}
    if args.body == "datadog-deflate":
        if args.client != "python":  # not even auto without wrk: the client is chosen, not fallen back to
            ap.error(f"--body datadog-deflate needs --client python (got --client {args.client}): each body is "
                     "built and zlib-compressed per request by the asyncio client, which wrk's Lua script cannot do")
        args.datadog = datadog_template()
        expected = datadog_expected(args.datadog)
        args.beacons_per_request = expected["beacons"]  # one page view per batch
        args.ignored_per_request = expected["ignored"]
        results["datadog"] = {"query": args.datadog["query"], "types": args.datadog["types"],
                              "bytes": len(args.datadog["body"]), "compressed_bytes": args.datadog["compressed_bytes"],
                              **expected}
        log(f"Datadog template: {expected['items']} events → {expected['beacons']} page view, "
            f"{expected['ignored']} ignored per request ({'; '.join(expected['ignored_reasons'])})")
    results["args"] = {k: v for k, v in vars(args).items() if k != "datadog"}
    lines: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ingest-load-") as tmpdir, EmbeddedBroker() as broker:
        tmp = Path(tmpdir)
        log(f"embedded broker {broker.url} (pid {broker.process.pid}); load generator: {client}")
        if args.client == "compare":
            rows = ["| load generator | requests/s (bare) | p50 ms | p99 ms | CPU server | CPU load gen |",
                    "|---|---|---|---|---|---|"]
            results["compare"] = {}
            for c in ("wrk", "python"):
                with Server("bare", broker.url, tmp, args.rate_limit) as server:
                    server.wait_ready()
                    res = measure(args, c, server, broker.process.pid, tmp, args.duration)
                results["compare"][c] = res
                log(f"compare: {c}: {res['rps']:,.0f} requests/s against the bare handler")
                rows.append(f"| {client_label(args, c)} | {res['rps']:,.0f} | {ms(res['p50_us'])} | "
                            f"{ms(res['p99_us'])} | {pct(res['cpu_server'])} | {pct(res['cpu_load'])} |")
            lines += ["## Load generators against the bare handler", ""] + rows + [""]
        if not args.skip_throughput:
            runs = []
            for r in range(args.repeat):
                kinds = [k for k in KINDS if not (k == "parse" and args.no_parse)
                         and not (k in BREAKDOWN and not args.breakdown)]
                order = kinds if r % 2 == 0 else kinds[::-1]
                for kind in order:
                    with Server(kind, broker.url, tmp, args.rate_limit) as server:
                        server.wait_ready()
                        log(f"repeat {r + 1}/{args.repeat}: {kind} (pid {server.pid}, port {server.port})")
                        res = measure(args, client, server, broker.process.pid, tmp, args.duration)
                    res.update(kind=kind, repeat=r)
                    runs.append(res)
                    log(f"  {res['rps']:,.0f} requests/s, p50 {ms(res['p50_us'])} ms, p99 {ms(res['p99_us'])} ms, "
                        f"CPU server {pct(res['cpu_server'])} broker {pct(res['cpu_broker'])} "
                        f"load {pct(res['cpu_load'])}" + (f"; {check_text(res['check'])}" if "check" in res else ""))
            results["runs"] = runs
            lines += ["## Throughput: bare aiohttp handler, parse reference, the endpoint", ""] + report_throughput(args, client, runs)
            lines.append("")
        if args.soak > 0:
            s = soak(args, client, broker, tmp)
            results["soak"] = s
            lines += ["## Memory soak", ""] + report_soak(args, client, s) + [""]
    log(f"done in {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print("\n".join(lines))
    ok = all(x["check"]["ok"] for x in results.get("runs", []) if "check" in x)
    ok = ok and ("soak" not in results or results["soak"]["load"]["check"]["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
