"""The canonical beacon, its validation, and the columnar batch the core works on.

A canonical beacon is one page view as the ingestion gateway stamps it (see
``docs/architecture.md``). ``ts`` (event time, epoch ms), ``app`` and ``release`` are
required; any subset of the metrics may be present.

Validation names the field and the reason, and never raises on data:

>>> beacon, reason = validate_beacon({"ts": 1763856000123, "app": "shop-web",
...     "release": "r2", "device": "mobile", "metrics": {"LCP": 2480.0, "CLS": 0.0}})
>>> beacon.metrics, reason
({'LCP': 2480.0, 'CLS': 0.0}, None)
>>> validate_beacon({"ts": 1763856000123, "app": "shop-web"})
(None, 'release: missing')
>>> validate_beacon({"ts": 1763856000123, "app": "a", "release": "r", "metrics": {"LCP": -3}})
(None, 'metrics.LCP: must be >= 0, got -3')

"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "METRICS",
    "METRIC_LIMITS",
    "GOOD_LIMITS",
    "MAX_NAME",
    "MAX_COHORT",
    "MAX_VIEW",
    "SEGMENTS",
    "Beacon",
    "BeaconBatch",
    "CohortKey",
    "beacon_reason",
    "part_column",
    "send_id",
    "validate_beacon",
]

#: Metrics a canonical beacon may carry. Milliseconds, except CLS (a unitless score).
METRICS: tuple[str, ...] = ("LCP", "INP", "CLS", "FCP", "TTFB")

#: Largest plausible value per metric. Anything above is a broken clock or a bug in a
#: sender, not a user experience, and would make the sketch grow without need.
METRIC_LIMITS: dict[str, float] = {
    "LCP": 600_000.0,
    "INP": 600_000.0,
    "FCP": 600_000.0,
    "TTFB": 600_000.0,
    "CLS": 100.0,
}

#: The web-vitals "good" limits (inclusive); page views above them count as not good.
GOOD_LIMITS: dict[str, float] = {
    "LCP": 2500.0,
    "INP": 200.0,
    "CLS": 0.1,
    "FCP": 1800.0,
    "TTFB": 800.0,
}

#: Device classes used as segments. A beacon without a device is ``unknown``.
SEGMENTS: tuple[str, ...] = ("mobile", "desktop", "tablet", "unknown")

# 2001-09-09 .. 2286-11-20 in epoch ms: rejects seconds, microseconds and garbage.
_TS_MIN, _TS_MAX = 1_000_000_000_000, 9_999_999_999_999
_MAX_ERRORS = 1_000_000
_MAX_STR = 512
#: Longest app and release name, and longest explicit cohort. Real names are short
#: (``shop-web``, ``2026.11.23-abc``, a 40-hex-digit commit, a semver with build tag);
#: every distinct name opens a cohort in every window, so a sender that invents long
#: names is refused here rather than costing memory in stage 1 and the judge.
MAX_NAME = 128
MAX_COHORT = 64
#: Longest page-view id (``view``): every SDK's fits (UUIDs, 32-hex trace ids, Boomerang's pid).
MAX_VIEW = 128
#: (field, required, longest, a name). Names (the fields of a cohort key) have no control
#: characters: they break logs, metrics labels and the explanation's text, and no real app,
#: release or flag name has them.
_STRING_FIELDS = (("app", True, MAX_NAME, True), ("release", True, MAX_NAME, True),
                  ("device", False, _MAX_STR, False), ("cohort", False, MAX_COHORT, True),
                  ("session", False, _MAX_STR, False), ("view", False, MAX_VIEW, True))
_NAME_FIELDS = frozenset(name for name, _, _, is_name in _STRING_FIELDS if is_name)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class CohortKey(NamedTuple):
    """What a window summary is kept per: app, release, explicit cohort, segment."""

    app: str
    release: str
    cohort: str | None
    segment: str


@dataclass(frozen=True)
class Beacon:
    """One validated canonical beacon: the fields the decision core uses.

    ``session`` (optional) lets the sample-ratio check count users, not page views: the
    split is per user, so page views of one user move together. ``view`` (optional) is the
    page view's id: beacons of one app with the same view are one page view, which stage 1
    counts once (:mod:`detectors.views`), however many beacons its SDK split it into. ``id``
    names the beacon (one send): a beacon without a view is a page view of its own, and
    copies of it with its id (a retry stored twice, by two ingestion replicas or after the
    producer gave up on a record that landed anyway) are that one page view. ``part`` marks a
    beacon without a view that is a part of a page view another beacon counts (an SDK that
    sends a page view's metrics in separate requests naming none: the one with TTFB is the
    page view): it adds its metrics and errors to its session's latest page view, or to the
    window when none is known, but is no page view of its own. Other
    descriptive fields (``page``, ``country``, ``browser``) are the ingestion gateway's
    business; the core neither reads nor checks them, so a sender may add any fields of its
    own.
    """

    ts: int
    app: str
    release: str
    metrics: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    device: str = "unknown"
    cohort: str | None = None
    session: str | None = None
    view: str | None = None
    id: str | None = None
    part: bool = False

    @property
    def key(self) -> CohortKey:
        return CohortKey(self.app, self.release, self.cohort, self.device)


def _is_number(x: Any) -> bool:
    # Python ints of any size compare fine against the limits (math.isfinite would overflow).
    return type(x) is int or (type(x) is float and math.isfinite(x))


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (C0, DEL or C1).

    ``str.isprintable`` answers the usual, printable name in one C call; only a name it
    refuses (which may just hold a non-ASCII space) is searched character by character.
    """
    return not value.isprintable() and _CONTROL.search(value) is not None


def _check_str(obj: dict, name: str, required: bool, limit: int = _MAX_STR) -> str | None:
    """Return a reason when ``obj[name]`` is not an acceptable string."""
    value = obj.get(name)
    if value is None:
        return f"{name}: missing" if required else None
    if type(value) is not str:
        return f"{name}: must be a string, got {type(value).__name__}"
    if required and not value.strip():
        return f"{name}: must not be empty"
    if len(value) > limit:
        return f"{name}: longer than {limit} characters"
    if name in _NAME_FIELDS and has_control(value):
        return f"{name}: must not contain control characters"
    return None


def beacon_reason(obj: Any) -> str | None:
    """Why ``obj`` is not a valid canonical beacon (the field first), or None when it is.

    :func:`validate_beacon` without building the :class:`Beacon`: what the ingestion
    gateway needs, per beacon, on its hot path.

    >>> beacon_reason({"ts": 1763856000123, "app": "a", "release": "r", "errors": -1})
    'errors: must be an integer in [0, 1000000], got -1'
    """
    if not isinstance(obj, dict):
        return f"beacon: must be a JSON object, got {type(obj).__name__}"
    ts = obj.get("ts")
    if ts is None:
        return "ts: missing"
    if type(ts) is not int:
        return f"ts: must be an integer (epoch ms), got {type(ts).__name__}"
    if not _TS_MIN <= ts <= _TS_MAX:
        return f"ts: {ts} is not epoch milliseconds"
    # Each check accepts the usual value in one test and leaves the wording of a refusal to
    # the slow path: this runs for every beacon the ingestion endpoint takes.
    for name, required, limit, is_name in _STRING_FIELDS:
        value = obj.get(name)
        if (type(value) is str and len(value) <= limit and (not required or value.strip())
                and (not is_name or value.isprintable())):
            continue
        if value is None and not required:
            continue
        reason = _check_str(obj, name, required, limit)
        if reason:
            return reason
    device = obj.get("device") or "unknown"
    if device not in SEGMENTS:
        return f"device: must be one of {', '.join(SEGMENTS)}, got {device!r}"
    metrics = obj.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, dict):
            return f"metrics: must be an object, got {type(metrics).__name__}"
        for name, value in metrics.items():
            limit = METRIC_LIMITS.get(name)
            if limit is not None and (type(value) is float or type(value) is int) and 0 <= value <= limit:
                continue  # NaN fails 0 <= value; inf fails value <= limit
            if name not in METRIC_LIMITS:
                return f"metrics.{name}: unknown metric (known: {', '.join(METRICS)})"
            if value is None:
                continue
            if not _is_number(value):
                return f"metrics.{name}: must be a finite number, got {value!r}"
            if value < 0:
                return f"metrics.{name}: must be >= 0, got {value!r}"
            if value > METRIC_LIMITS[name]:
                return f"metrics.{name}: {value!r} is above the limit {METRIC_LIMITS[name]:g}"
    errors = obj.get("errors", 0)
    if errors is None:
        errors = 0
    if type(errors) is not int or not 0 <= errors <= _MAX_ERRORS:
        return f"errors: must be an integer in [0, {_MAX_ERRORS}], got {errors!r}"
    part = obj.get("part")
    if part is not None and type(part) is not bool:
        return f"part: must be true or false, got {part!r}"
    return None


def send_id(value: Any) -> str | None:
    """A beacon's ``id`` as stage 1 uses it: a string of at most 512 characters, else none
    (an id is descriptive and never makes a beacon invalid).

    >>> send_id("v5-1-2"), send_id(42), send_id("")
    ('v5-1-2', None, None)
    """
    return value if type(value) is str and 0 < len(value) <= _MAX_STR else None


def validate_beacon(obj: Any) -> tuple[Beacon | None, str | None]:
    """Validate one decoded JSON value as a canonical beacon.

    Returns ``(beacon, None)`` or ``(None, reason)``; the reason (from
    :func:`beacon_reason`) names the field first. Fields the core does not use are ignored
    so that senders may add their own.
    """
    reason = beacon_reason(obj)
    if reason is not None:
        return None, reason
    metrics = obj.get("metrics") or {}
    return (
        Beacon(
            ts=obj["ts"],
            app=obj["app"],
            release=obj["release"],
            metrics={name: float(value) for name, value in metrics.items() if value is not None},
            errors=obj.get("errors") or 0,
            device=obj.get("device") or "unknown",
            cohort=obj.get("cohort"),
            session=obj.get("session"),
            view=obj.get("view") or None,
            id=send_id(obj.get("id")),
            part=obj.get("part") is True,
        ),
        None,
    )


@dataclass
class BeaconBatch:
    """Many valid beacons as columns: what windows and sketches consume.

    ``key[i]`` indexes ``keys``; ``metrics[name][i]`` is NaN where beacon ``i`` has no
    value for ``name``.
    """

    ts: np.ndarray  # int64, epoch ms
    key: np.ndarray  # int32, index into ``keys``
    keys: list[CohortKey]
    metrics: dict[str, np.ndarray]  # float64, NaN = absent
    errors: np.ndarray  # int64
    session: list | None = None  # per row, any hashable; None = no sessions known
    view: list | None = None  # per row, what stage 1 joins it by (its view, else its id) or None
    part: np.ndarray | None = None  # bool per row: a part of a page view, without a view; None = none are

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def empty(cls) -> BeaconBatch:
        return cls(
            ts=np.zeros(0, np.int64),
            key=np.zeros(0, np.int32),
            keys=[],
            metrics={m: np.zeros(0, np.float64) for m in METRICS},
            errors=np.zeros(0, np.int64),
        )

    @classmethod
    def from_beacons(cls, beacons: list[Beacon]) -> BeaconBatch:
        """Build a batch from validated beacons (the slow, obviously-correct path)."""
        codes: dict[CohortKey, int] = {}
        key = [codes.setdefault(b.key, len(codes)) for b in beacons]
        return cls(
            ts=np.array([b.ts for b in beacons], np.int64),
            key=np.array(key, np.int32),
            keys=list(codes),
            metrics={
                m: np.array([b.metrics.get(m, math.nan) for b in beacons], np.float64)
                for m in METRICS
            },
            errors=np.array([b.errors for b in beacons], np.int64),
            session=[b.session for b in beacons],
            view=[b.view or b.id for b in beacons],
            part=part_column([b.part and not b.view for b in beacons]),
        )


def part_column(flags: list[bool]) -> np.ndarray | None:
    """The ``part`` column of a batch: None when no row is one (the usual case)."""
    return np.array(flags, bool) if any(flags) else None
