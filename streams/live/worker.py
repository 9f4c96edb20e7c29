"""Running a worker: find or start the broker, create the topics, run the Faust app."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from detectors.policy import DEFAULT_POLICY
from streams.live.broker import BrokerError, EmbeddedBroker
from streams.live.settings import Settings
from streams.live.topics import ensure_topics

__all__ = ["run_worker", "prepare"]


def prepare(settings: Settings) -> tuple[Settings, dict[str, int], EmbeddedBroker | None]:
    """Start the embedded broker if none is configured; create the topics."""
    broker = None
    if settings.broker is None:
        broker = EmbeddedBroker().start()
        settings = settings.with_broker(broker.url)
        click.echo(f"rumgate: no broker configured, started the embedded broker at {broker.url} "
                   "(memory only: for trying rumgate out; set --broker or RUMGATE_BROKER in production)")
    try:
        counts = asyncio.run(ensure_topics(settings))
    except BrokerError:
        if broker:
            broker.stop()
        raise
    return settings, counts, broker


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run stage 1 and stage 2 in this process until SIGINT/SIGTERM."""
    from faust.worker import Worker

    from streams.live.app import create_app

    settings, counts, broker = prepare(settings)
    t = settings.topics
    sources = counts[t.beacons]
    if sources != settings.beacons_partitions:
        click.echo(f"rumgate: {t.beacons} exists with {sources} partitions (setting: "
                   f"{settings.beacons_partitions}); using {sources}")
    click.echo(f"rumgate worker {settings.app_id}: broker {settings.broker}")
    click.echo("  topics: " + ", ".join(f"{name} ({counts[name]})" for name in
                                         (t.beacons, t.dlq, t.windows, t.rollouts, t.verdicts,
                                          t.verdicts_latest, t.overrides)))
    click.echo(f"  windows {settings.window_ms} ms, lateness {settings.lateness_ms} ms; "
               f"rollouts without a policy get {DEFAULT_POLICY.name} ({DEFAULT_POLICY.hash[:19]}…)")
    rt = create_app(settings, sources)
    logging.basicConfig(level=getattr(logging, loglevel.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("rumgate").setLevel(logging.INFO)
    worker = Worker(rt.app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                    override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        if broker:
            broker.stop()
