"""Prometheus metrics of a worker, served at ``GET /metrics``.

One registry per worker (not the library's global one), so tests can run several.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.beacons = Counter("rumgate_beacons", "Beacons counted into windows", registry=r)
        self.records = Counter("rumgate_records", "Records read from rum.beacons", registry=r)
        self.dead_letters = Counter("rumgate_dead_letters", "Invalid items sent to the DLQ", registry=r)
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
