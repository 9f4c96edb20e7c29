"""Prometheus metrics of a worker, served at ``GET /metrics`` (``rumgate ingest`` serves
the ingestion ones). deploy/grafana/ and deploy/prometheus/ are built on them.

One registry per worker (not the library's global one), so tests can run several.
"""

from __future__ import annotations

import re
from collections import Counter as Tally
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from streams.ingest.formats.canonical import FIELDS

__all__ = ["INGEST_OUTCOMES", "Metrics", "reason_kind"]

#: What became of the items the ingestion endpoint received (its ``/healthz`` counts).
INGEST_OUTCOMES = ("accepted", "rejected", "duplicates", "ignored", "capped")
_NOT_JSON = frozenset({"record", "line"})


def reason_kind(reason: str) -> str:
    """The ``reason`` label of a dead letter: the canonical field its reason names first,
    else a few fixed kinds, so the label's values stay a small set whatever the data says.

    >>> reason_kind("ts: -5 is not epoch milliseconds"), reason_kind("metrics.LCP: must be a finite number")
    ('ts', 'metrics')
    >>> reason_kind("line 3: not valid JSON (unexpected end)"), reason_kind("beacon: must be a JSON object, got int")
    ('not_json', 'not_an_object')
    >>> reason_kind("cohort: app 'a' already has 1000 cohorts"), reason_kind("anything else")
    ('cohort_cap', 'other')
    """
    head = re.match(r"[A-Za-z_]*", reason).group()  # "metrics.LCP: ...", "line 3: ...", "views[0]: ..."
    if head == "cohort" and "already has" in reason:
        return "cohort_cap"
    if head in FIELDS:
        return head
    if head in _NOT_JSON:
        return "not_json"
    return {"beacon": "not_an_object", "cohort": "cohort_cap"}.get(head, "other")


class _IngestCounts(Collector):
    """The ingestion endpoint's counts (a live mapping), as a counter by outcome."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = counts

    def collect(self):
        family = CounterMetricFamily("rumgate_ingest_items", "Items POSTed to /v1/beacons, by what became of them "
                                     "(rejected ones go to the DLQ; capped: over RUMGATE_INGEST_CLIENT_VIEWS)",
                                     labels=["outcome"])
        for outcome in INGEST_OUTCOMES:
            family.add_metric([outcome], self.counts.get(outcome, 0))
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.beacons = Counter("rumgate_beacons", "Beacons counted into windows", registry=r)
        self.records = Counter("rumgate_records", "Records read from rum.beacons", registry=r)
        self.dead_letters = Counter("rumgate_dead_letters", "Invalid items stage 1 sent to the DLQ, by the kind of "
                                    "their reason (reason_kind)", ["reason"], registry=r)
        self.windows = Counter("rumgate_windows_closed", "Window summaries published by stage 1", registry=r)
        self.verdicts = Counter("rumgate_verdicts", "Verdicts published", ["verdict", "dry_run"], registry=r)
        self.late_summaries = Counter("rumgate_late_summaries",
                                      "Summaries the judge dropped (republished or after their window)",
                                      registry=r)
        self.lag = Gauge("rumgate_consumer_lag", "Records of rum.beacons not yet read, per partition",
                         ["partition"], registry=r)
        self.latency = Histogram(
            "rumgate_window_close_to_verdict_seconds",
            "From the moment a window could close (its end plus the allowed lateness) to its verdict",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r)
        self.webhook_failures = Counter("rumgate_webhook_failures", "Webhook deliveries given up", registry=r)
        self.stage1_send_failures = Counter(
            "rumgate_stage1_send_failures",
            "Stage-1 sends (windows, DLQ, checkpoint) or checkpoint reads that failed; each rebuilds the "
            "partition from its checkpoint",
            registry=r)
        self.stage1_failing = Gauge(
            "rumgate_stage1_failing_partitions",
            "rum.beacons partitions whose last stage-1 send failed, waiting to be rebuilt from their checkpoint "
            "(/readyz is 503 meanwhile)", registry=r)
        self.capped = Counter(
            "rumgate_capped_page_views",
            "Page views left out of the windows published by stage 1, their session being over "
            "MAX_VIEWS_PER_SESSION in that window (a window published again after a rebuild counts again)",
            registry=r)
        self.views_forgotten_early = Gauge(
            "rumgate_page_views_forgotten_early",
            "Page views stage 1 forgot before RUMGATE_VIEW_HORIZON_S because RUMGATE_VIEW_SLOTS was full (their "
            "later beacons count as new page views), since each partition's aggregator was built", registry=r)
        self.agent_crashes = Counter(
            "rumgate_agent_crashes",
            "Exceptions that ended an agent's run; Faust's supervisor then restarts the agent on the same stream",
            ["agent"], registry=r)

        self.ready = Gauge("rumgate_ready", "1 while /readyz answers 200, else 0 (its body says why)", registry=r)

    def watch_ingest(self, counts: Mapping[str, int]) -> None:
        """Serve the ingestion endpoint's counts (``Ingestor.counts``) as ``rumgate_ingest_items``."""
        self.registry.register(_IngestCounts(counts))

    def watch_readiness(self, problems: Callable[[], list[str]]) -> None:
        """``rumgate_ready`` from what keeps the worker from being ready, read at each scrape."""
        self.ready.set_function(lambda: 0.0 if problems() else 1.0)

    def count_dead_letters(self, reasons) -> None:
        for kind, n in Tally(map(reason_kind, reasons)).items():
            self.dead_letters.labels(reason=kind).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
