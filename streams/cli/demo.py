"""``rumgate demo``: a simulated rollout judged live by the real pipeline.

With nothing configured: start the embedded broker, start a worker (``rumgate worker``
in a child process), start a rollout on ``rum.rollouts``, stream simulated beacons into
``rum.beacons`` (simulated time runs ``--speed`` times faster than the wall clock), and
show the verdicts arriving on ``rum.verdicts`` as they come. Ends with the final verdict
and its explanation, and exits like ``rumgate backtest``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import click
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from detectors.rollout import Rollout
from detectors.verdict import Verdict
from detectors.windows import DEFAULT_WINDOW_MS
from streams.cli.common import describe, duration_ms, echo_outcome, evidence_line, exit_code, load_policy_file
from streams.cli.simulate import SCENARIO_NOTES
from streams.live.broker import BrokerError, EmbeddedBroker, broker_servers, free_port
from streams.live.settings import Settings
from streams.live.topics import ensure_topics
from streams.offline.feed import produce_beacons
from streams.offline.simulate import SCENARIOS, generate_beacons

__all__ = ["demo"]

DEMO_SCENARIOS = {name: SCENARIO_NOTES[name] for name in ("lcp-regression", "inp-mobile", "errors", "clean")}
WORKER_START_S = 90.0
QUIET_AFTER_S = 30.0  # after the traffic ends: give up waiting for more verdicts

DEMO_HELP = """Watch rumgate judge a simulated canary rollout, live, on a real broker.

Starts the embedded broker (or uses --broker) and a worker, starts a rollout, and streams
100 beacons/s of realistic traffic, 5 % of it on the canary, into rum.beacons. Shows the
evidence as verdicts arrive on rum.verdicts, ends with the verdict and its explanation,
and exits like `rumgate backtest`: 0 promote, 1 rollback, 2 hold or no decision, 3 error.

\b
Scenarios:""" + "".join(f"\n  {k:<15} {v}" for k, v in DEMO_SCENARIOS.items())


@click.command(help=DEMO_HELP)
@click.option("--scenario", type=click.Choice(sorted(DEMO_SCENARIOS)), default="lcp-regression",
              show_default=True, help="What the canary does.")
@click.option("--seed", type=int, default=1, show_default=True, help="Simulation seed.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Simulated seconds per wall-clock second.")
@click.option("--duration", "duration_ms", default="30m", show_default=True, callback=duration_ms,
              help="Longest simulated rollout.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), help="Policy file (YAML).")
@click.option("--broker", envvar="RUMGATE_BROKER",
              help="Use this Kafka instead of the embedded broker (topics get a demo- prefix).")
def demo(scenario: str, seed: int, speed: float, duration_ms: int, policy_path: str | None,
         broker: str | None) -> None:
    policy = load_policy_file(policy_path)
    start_ms = int(time.time() * 1000) // DEFAULT_WINDOW_MS * DEFAULT_WINDOW_MS
    sim = replace(SCENARIOS[scenario], duration_s=duration_ms / 1000, start_ms=start_ms)
    click.echo(f"rumgate demo: {scenario} ({DEMO_SCENARIOS[scenario]})")
    click.echo(f"  app {sim.app}: canary {sim.canary} vs baseline {sim.baseline}, "
               f"{sim.rate:g} beacons/s, {sim.canary_share:.0%} canary; policy {policy.name}; "
               f"simulated time ×{speed:g}")
    embedded = None
    logdir = Path(tempfile.mkdtemp(prefix="rumgate-demo-"))
    worker = None
    try:
        if broker is None:
            embedded = EmbeddedBroker(log_path=logdir / "broker.log").start()
            broker = embedded.url
            click.echo(f"  embedded broker at {broker}")
        settings = Settings.from_env(broker=broker, app_id=f"rumgate-demo-{uuid.uuid4().hex[:6]}",
                                     topic_prefix=f"demo-{start_ms}.")
        asyncio.run(ensure_topics(settings))
        worker, api = _start_worker(settings, logdir / "worker.log")
        click.echo(f"  worker started (log: {logdir / 'worker.log'}); waiting for it to join…")
        _wait_for_worker(worker, api, logdir / "worker.log")
        rollout = Rollout(f"{sim.app}:{sim.canary}", sim.app, sim.canary, sim.baseline, sim.start_ms,
                          policy, sim.canary_share)
        click.echo(f"  live page (while the demo runs): {api}/rollouts/{quote(rollout.id, safe=':@')}")
        click.echo(f"  verdicts also at {api}/v1/rollouts/{rollout.id}/verdict")
        final, beacons, wall = asyncio.run(_run(settings, rollout, sim, seed, speed, worker))
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        if embedded is not None:
            embedded.stop()
    _finish(final, wall, beacons)


def _start_worker(settings: Settings, log: Path) -> tuple[subprocess.Popen, str]:
    """The worker process and the base URL of its HTTP API."""
    http = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, RUMGATE_BROKER=settings.broker, RUMGATE_APP_ID=settings.app_id,
               RUMGATE_TOPIC_PREFIX=settings.topic_prefix,
               RUMGATE_REBALANCE_TIMEOUT_S="4", RUMGATE_SESSION_TIMEOUT_S="4",
               RUMGATE_HTTP=http, RUMGATE_API_READ_OPEN="true")
    process = subprocess.Popen([sys.executable, "-m", "streams", "worker", "--loglevel", "warning"],
                               env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    return process, f"http://{http}"


def _wait_for_worker(worker: subprocess.Popen, api: str, log: Path) -> None:
    """Wait until the worker's ``/healthz`` says it is ready (it owns its partitions)."""
    deadline = time.monotonic() + WORKER_START_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise click.ClickException(f"the worker exited with code {worker.returncode}:\n"
                                       + log.read_text(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(f"{api}/healthz", timeout=2) as answer:
                if orjson.loads(answer.read()).get("ready"):
                    return
        except (OSError, ValueError):
            pass  # not serving yet
        time.sleep(0.2)
    raise click.ClickException(f"the worker did not join within {WORKER_START_S:g} s; see {log}")


async def _run(settings: Settings, rollout: Rollout, sim, seed: int, speed: float,
               worker: subprocess.Popen) -> tuple[Verdict | None, int, float]:
    servers = broker_servers(settings.broker)
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.rollouts, orjson.dumps(rollout.to_dict()),
                                     key=rollout.id.encode())
    finally:
        await producer.stop()
    began = time.monotonic()
    sent = {"beacons": 0, "done": False}

    async def feed() -> None:
        def count(_start: int, produced: int) -> None:
            sent["beacons"] = produced

        await produce_beacons(servers, settings.topics.beacons, generate_beacons(sim, seed, DEFAULT_WINDOW_MS),
                              settings.beacons_partitions, per_record=10, speed=speed, on_window=count)
        sent["done"] = True

    feeding = asyncio.create_task(feed())
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    tp = TopicPartition(settings.topics.verdicts, 0)
    consumer.assign([tp])
    last: Verdict | None = None
    shown = {"slot": -1, "verdict": None}
    quiet_since = None
    try:
        while True:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for record in batch.get(tp, ()):
                v = Verdict.from_dict(orjson.loads(record.value))
                if v.rollout != rollout.id:
                    continue
                last = v
                slot = v.inputs.get("elapsed_ms", 0) // 30_000
                if slot != shown["slot"] or v.verdict != shown["verdict"] or v.decided:
                    shown.update(slot=slot, verdict=v.verdict)
                    click.echo(f"{describe(v)}   [{sent['beacons']:,} beacons, "
                               f"{time.monotonic() - began:.0f} s]")
                quiet_since = None
            if last is not None and last.decided:
                break
            if feeding.done() and feeding.exception() is not None:
                raise feeding.exception()
            if worker.poll() is not None:
                raise click.ClickException(f"the worker exited with code {worker.returncode}")
            if sent["done"]:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > QUIET_AFTER_S:
                    break
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await consumer.stop()
    return last, sent["beacons"], time.monotonic() - began


def _finish(verdict: Verdict | None, wall_s: float, beacons: int) -> None:
    if verdict is None:
        click.echo("no verdict: no window was judged (see the worker log)")
        sys.exit(exit_code(None))
    click.echo("")
    echo_outcome(f"final verdict after {verdict.inputs.get('elapsed_ms', 0) / 60_000:.1f} simulated min "
                 f"({wall_s:.0f} s, {beacons:,} beacons through rum.beacons): ", verdict)
    click.echo("evidence:")
    for m in verdict.metrics:
        click.echo(evidence_line(m))
    sys.exit(exit_code(verdict.verdict))
