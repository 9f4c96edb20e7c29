"""Worker settings: the broker, topic names and partition counts, windows, timeouts.

Every setting has a default and an environment variable (``RUMGATE_<NAME>``); the command
line overrides both. With no broker configured, rumgate starts its embedded broker.

>>> s = Settings.from_env({"RUMGATE_BEACONS_PARTITIONS": "8"})
>>> s.beacons_partitions, s.topics.beacons
(8, 'rum.beacons')
>>> Settings.from_env({"RUMGATE_BEACONS_PARTITIONS": "eight"})
Traceback (most recent call last):
...
streams.live.settings.SettingsError: RUMGATE_BEACONS_PARTITIONS: must be a whole number >= 1, got 'eight'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from detectors.windows import DEFAULT_LATENESS_MS, DEFAULT_WINDOW_MS
from detectors.views import DEFAULT_VIEW_HORIZON_MS, DEFAULT_VIEW_SLOTS
from detectors.windows import DEFAULT_MAX_COHORTS, DEFAULT_MAX_VIEWS_PER_SESSION

__all__ = ["SettingsError", "Topics", "Settings"]


class SettingsError(ValueError):
    """A setting has a value rumgate cannot use."""


@dataclass(frozen=True)
class Topics:
    """Topic names (prefix them to run several rumgates on one cluster)."""

    beacons: str = "rum.beacons"
    dlq: str = "rum.beacons.dlq"
    windows: str = "rum.windows"
    rollouts: str = "rum.rollouts"
    verdicts: str = "rum.verdicts"  # full history, for audit
    verdicts_latest: str = "rum.verdicts.latest"  # compacted: the latest verdict per rollout
    overrides: str = "rum.overrides"
    checkpoints: str = "rum.checkpoints"  # compacted: stage-1 resume points per partition

    @classmethod
    def prefixed(cls, prefix: str) -> Topics:
        return cls(**{f.name: prefix + f.default for f in fields(cls)})


@dataclass(frozen=True)
class Settings:
    broker: str | None = None  # kafka://host:9092[,host2:9092]; None: the embedded broker
    app_id: str = "rumgate"  # consumer group and Faust app id
    topic_prefix: str = ""
    beacons_partitions: int = 4
    windows_partitions: int = 1
    replication: int = 1
    window_ms: int = DEFAULT_WINDOW_MS
    lateness_ms: int = DEFAULT_LATENESS_MS
    max_cohorts_per_window: int = DEFAULT_MAX_COHORTS  # cohort keys per app per window per partition; more: DLQ
    max_views_per_session: int = DEFAULT_MAX_VIEWS_PER_SESSION  # page views per session per window; more: capped
    view_horizon_s: float = DEFAULT_VIEW_HORIZON_MS / 1000  # a page view's later beacons join it this long
    view_slots: int = DEFAULT_VIEW_SLOTS  # page views (and sessions) remembered per partition: 40 bytes a slot
    judge_history_mb: int = 256  # encoded window summaries the judge keeps for rollouts known late
    # comma-separated apps (or *) whose new releases start a rollout when none is running
    auto_rollout_apps: str = ""
    idle_after_s: float = 10.0  # a partition without records this long is idle
    stage1_retry_s: float = 0.5  # first wait before a stage-1 partition whose send failed is rebuilt; doubles
    stage1_retry_max_s: float = 10.0  # ... up to this
    windows_record_bytes: int = 512 * 1024  # a rum.windows record at most (a window spans several); < the broker's 1 MB
    batch_max: int = 2000  # records per stage-1 batch
    batch_within_s: float = 0.1  # ... or what arrived in this long
    fetch_max_wait_ms: int = 100  # how long a fetch may wait for data (latency of verdicts)
    rebalance_timeout_s: float = 10.0
    session_timeout_s: float = 10.0
    http: str = "0.0.0.0:8080"  # the HTTP API (host:port), or "off"
    api_token: str = ""  # bearer token for mutations (and reads unless api_read_open); "" refuses them
    api_read_open: bool = False  # serve reads without a token
    hook_token: str = ""  # a second token that opens the Flagger hooks alone (the Canary object holds it)
    webhook_urls: str = ""  # comma-separated: POSTed the verdict when a rollout's verdict changes
    webhook_secret: str = ""  # HMAC-SHA256 key for the X-Rumgate-Signature header
    ingest_cors_origins: str = "*"  # comma-separated origins allowed to POST beacons
    # comma-separated request headers a preflight allows: by default what every SDK rumgate reads sends
    ingest_cors_headers: str = "Content-Type, Content-Encoding, X-Rumgate-App, X-Rumgate-Release, " \
                               "X-Faro-Session-Id, Idempotency-Key"
    ingest_max_body: int = 64 * 1024  # bytes (the browsers' keepalive cap)
    ingest_rate_limit: float = 20.0  # requests/s per client
    ingest_dedupe_ttl_s: float = 1800.0  # beacon ids remembered this long
    ingest_dedupe_slots: int = 1 << 20  # fixed dedupe table: 16 bytes per slot, allocated at start
    ingest_country_header: str = ""  # e.g. CF-IPCountry: the only use of where a client is
    ingest_session_salt: str = ""  # set: session ids are stored as keyed hashes
    ingest_routes: str = ""  # comma-separated route templates, e.g. /product/:id,/cart
    ingest_linger_ms: float = 5.0  # how long beacons wait to share a record (or 1,000 of them)
    ingest_max_apps: int = 16  # distinct apps one request (and one linger batch) may name
    ingest_max_batch_apps: int = 1000  # apps waiting for their record at once (one linger)
    ingest_ack_timeout_s: float = 5.0  # a request waits this long for Kafka's ack, then 503
    ingest_max_waiting: int = 2000  # requests waiting for acks at once; beyond: 503 at once
    # the worker's producer fails a record Kafka has not taken after this long (Faust's 1,200 s held
    # every record, and the memory of every request's beacons, through a 20-minute stall)
    producer_request_timeout_s: float = 30.0
    ingest_client_header: str = ""  # e.g. X-Forwarded-For: the client address behind the ingress
    ingest_trusted_hops: int = 1  # proxies of ours that append to ingest_client_header
    ingest_client_views: int = 0  # page views per client per ingest_client_window_s; 0: no cap
    ingest_client_window_s: float = 5.0
    ingest_releases: str = "any"  # releases an app may report: any, open (its rollouts') or list:<r1,r2>
    topics: Topics = field(default_factory=Topics)

    def __post_init__(self) -> None:
        if self.topic_prefix and self.topics == Topics():
            object.__setattr__(self, "topics", Topics.prefixed(self.topic_prefix))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then ``RUMGATE_*`` variables, then ``overrides`` (None values ignored)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.name == "topics":
                continue
            name = "RUMGATE_" + f.name.upper()
            if name in env:
                values[f.name] = _convert(name, env[name], f.default)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        return settings

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) of the HTTP API, None when it is off."""
        if self.http.strip().lower() in ("off", "", "none"):
            return None
        host, _, port = self.http.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"RUMGATE_HTTP: must be host:port or off, got {self.http!r}")
        return host or "0.0.0.0", int(port)

    @property
    def auto_rollout(self) -> frozenset[str]:
        """The apps of ``auto_rollout_apps`` (``*``: every app)."""
        return frozenset(a.strip() for a in self.auto_rollout_apps.split(",") if a.strip())

    def with_broker(self, url: str) -> Settings:
        return replace(self, broker=url)


def _convert(name: str, text: str, default: object) -> object:
    if isinstance(default, bool):
        if text.lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise SettingsError(f"{name}: must be true or false, got {text!r}")
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise SettingsError(f"{name}: must be a whole number >= 1, got {text!r}")
        return value
    if isinstance(default, float):
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise SettingsError(f"{name}: must be a number > 0, got {text!r}")
        return value
    return text
