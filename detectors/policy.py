"""Gate policies: which metrics, which statistic, what tolerances, how sure.

A policy is a small YAML (or JSON) document. Everything has a default from
``docs/statistics.md`` §6, so the shortest policy is ``name: my-policy``. A policy that
is wrong is refused with the line, the field and the reason, never half-applied:

>>> parse_policy("name: strict\\nalpha: 1.5\\n", source="strict.yaml")
Traceback (most recent call last):
...
detectors.policy.PolicyError: strict.yaml:2:8: alpha: must be in (0, 1), got 1.5

>>> p = parse_policy("name: web\\nmetrics:\\n  - metric: LCP\\n    rollback_tolerance: 0.1\\n")
>>> [(m.metric, m.statistic, m.rollback_tolerance, m.promote_tolerance) for m in p.metrics]
[('LCP', 'p75', 0.1, 0.1)]

A policy comes from whoever may start a rollout, so it is read as data only: plain YAML
types (no ``!!python/...`` or other tags), nested no deeper than :data:`MAX_DEPTH`, at most
:data:`MAX_POLICY_CHARS` long; anything else is a :class:`PolicyError` with its place:

>>> parse_policy("name: !!python/name:os.system x\\n", source="evil.yaml")
Traceback (most recent call last):
...
detectors.policy.PolicyError: evil.yaml:1:7: tag !!python/name:os.system: not allowed in a policy (plain YAML values only)

Every verdict carries ``policy.name`` and ``policy.hash``: a SHA-256 of the policy as
resolved (defaults filled in), so two files that mean the same thing share a hash.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson
import yaml

from detectors.beacon import METRICS, SEGMENTS

__all__ = [
    "PolicyError",
    "MetricPolicy",
    "Policy",
    "DEFAULT_METRICS",
    "DEFAULT_POLICY",
    "parse_policy",
    "parse_duration",
    "MAX_DEPTH",
    "MAX_NAME",
    "MAX_POLICY_CHARS",
    "NAME_CHARS",
    "name_problem",
]

#: How long an app, release or policy name may be (see detectors.rollout for why).
MAX_NAME = 63
#: The characters of ids and names after the first (a letter or digit): none needs quoting in
#: a record key or a log line, none is whitespace, a control or a bidirectional character.
NAME_CHARS = "A-Za-z0-9._:/@+-"
_FIRST = re.compile(r"[A-Za-z0-9]")
_REST = re.compile(f"[{NAME_CHARS}]")
_ALPHABET = "letters, digits and . _ : / @ + - (starting with a letter or digit)"


def name_problem(value: Any, max_len: int = MAX_NAME) -> str | None:
    """What is wrong with ``value`` as a rollout id, an app, release or policy name (None:
    nothing). A refused character is shown by its code point unless it is printable ASCII,
    and a long value is never repeated, so the message is safe to log and to answer with.

    >>> name_problem("shop-web:2026.11.23-abc"), name_problem("a\u202eb")
    (None, 'U+202E (at 1) is not allowed: use letters, digits and . _ : / @ + - (starting with a letter or digit)')
    """
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"{len(value)} characters, at most {max_len}"
    for i, ch in enumerate(value):
        if not (_FIRST if i == 0 else _REST).fullmatch(ch):
            shown = repr(ch) if ch.isprintable() and ch.isascii() else f"U+{ord(ch):04X}"
            hint = " (in a query string + means a space: write it %2B)" if ch == " " else ""
            return f"{shown} (at {i}) is not allowed: use {_ALPHABET}{hint}"
    return None

#: Longer than any real policy (every field set is under 2 KB), short enough that a rollout
#: with its dry-run policies stays far below the API's body limit.
MAX_POLICY_CHARS = 32 * 1024
#: A policy nests three deep (the document, ``metrics``, one metric); a few more levels leave
#: room for a mistake to be reported as such, far below what PyYAML's composer can recurse.
MAX_DEPTH = 8
_CORE = "tag:yaml.org,2002:"
#: The explicit tags a policy may carry: YAML's own types, which are what a policy holds anyway.
SAFE_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map")) | {"!"}

RATE_METRICS = ("errors",)
STATISTICS = ("p50", "p75", "p90", "p95", "rate")
_QUANTILE = {"p50": 0.50, "p75": 0.75, "p90": 0.90, "p95": 0.95}

# statistics.md §6: (rollback δ_R, promote δ_P) per kind of test.
_DEFAULT_TOLERANCES = {
    "quantile": (0.05, 0.10),
    "CLS": (0.10, 0.20),  # share of page views with CLS > 0.1
    "errors": (0.20, 0.30),  # share of page views with >= 1 JS error
    "rate": (0.10, 0.20),  # share of page views over the web-vitals "good" limit
}


class PolicyError(ValueError):
    """A policy was refused. The message starts with ``source:line:column:``."""


@dataclass(frozen=True)
class MetricPolicy:
    """One guarded metric.

    ``statistic`` is a quantile (``p75``...) compared with the conditional-exceedance
    test, or ``rate``: for ``errors`` the share of page views with at least one JS error,
    for a web vital the share of page views above its "good" limit (CLS > 0.1...).
    """

    metric: str
    statistic: str
    rollback_tolerance: float
    promote_tolerance: float
    min_canary: int = 1000  # beacons with the metric (quantiles) / page views (rates)
    min_canary_events: int = 30  # rates: or this many canary events
    alpha_weight: float = 1.0  # share of the rollback α (Bonferroni weights)

    @property
    def quantile(self) -> float | None:
        return _QUANTILE.get(self.statistic)

    @property
    def label(self) -> str:
        if self.statistic == "rate":
            return "JS-error page views" if self.metric == "errors" else f"{self.metric} not-good share"
        return f"{self.metric} {self.statistic}"


def _default_metric(metric: str, statistic: str | None = None) -> MetricPolicy:
    statistic = statistic or ("rate" if metric in ("errors", "CLS") else "p75")
    kind = "quantile" if statistic != "rate" else metric if metric in ("CLS", "errors") else "rate"
    rb, pr = _DEFAULT_TOLERANCES[kind]
    min_canary = 1000 if statistic != "rate" else 5000
    return MetricPolicy(metric, statistic, rb, pr, min_canary)


#: What the default policy guards: every web vital a beacon carries (the snippet collects
#: them all: LCP, INP, CLS, FCP, TTFB) and JS errors, each with its §6 test and tolerances.
#: Each more metric is one more hypothesis over which the rollback α is split (Bonferroni,
#: :meth:`Policy.rollback_alpha`): six, so e ≥ 6/α = 120 for a rollback.
DEFAULT_METRICS: tuple[str, ...] = (*METRICS, "errors")


@dataclass(frozen=True)
class Policy:
    """A resolved policy (durations in milliseconds)."""

    name: str = "default"
    metrics: tuple[MetricPolicy, ...] = field(
        default_factory=lambda: tuple(_default_metric(m) for m in DEFAULT_METRICS)
    )
    segments: tuple[str, ...] = ("all",)
    alpha: float = 0.05  # family-wise false-rollback budget over metrics × segments × looks
    alpha_promote: float = 0.05  # per metric; promote is intersection-union, no correction
    alpha_srm: float = 0.001
    warmup_ms: int = 60_000
    min_duration_ms: int = 600_000
    max_duration_ms: int = 7_200_000
    max_silence_ms: int = 120_000
    min_baseline_for_threshold: int = 200
    fast_path: bool = True
    dry_run: bool = False
    #: Hold decisions on windows where the baseline itself is anomalous (a global incident).
    global_incident: bool = False
    #: After a promote, watch the release against the pre-promotion history this long (0: off).
    post_promotion_watch_ms: int = 0
    anomaly_detector: str = ""  # a name in detectors.anomaly.DETECTORS; "" = detectors.incident.INCIDENT_DETECTOR
    anomaly_threshold: float = 0.75  # detector score (in [0, 1]) at which a window is anomalous
    anomaly_metric: str = "LCP"  # its p75, per window, is the watched series

    @property
    def hash(self) -> str:
        body = orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    @property
    def tests(self) -> list[tuple[MetricPolicy, str]]:
        """Every (metric, segment) hypothesis the rollback α is split over."""
        return [(m, s) for m in self.metrics for s in self.segments]

    def rollback_alpha(self, metric: MetricPolicy) -> float:
        """Bonferroni share of α for one (metric, segment) test."""
        total = sum(m.alpha_weight for m in self.metrics) * len(self.segments)
        return self.alpha * metric.alpha_weight / total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        """Inverse of :meth:`to_dict` (how a rollout record carries its resolved policy).

        >>> Policy.from_dict(orjson.loads(orjson.dumps(DEFAULT_POLICY.to_dict()))).hash == DEFAULT_POLICY.hash
        True
        """
        try:
            values = dict(d)
            values["metrics"] = tuple(MetricPolicy(**m) for m in d["metrics"])
            values["segments"] = tuple(d["segments"])
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise PolicyError(f"<rollout>:1:1: not a resolved policy: {exc}") from None


DEFAULT_POLICY = Policy()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}


def parse_duration(text: str | int | float) -> int:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"250ms"`` or plain seconds → milliseconds.

    >>> parse_duration("10m"), parse_duration(90), parse_duration("1.5h")
    (600000, 90000, 5400000)
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        if not math.isfinite(text):
            raise ValueError(f"duration must be finite, got {text!r}")
        if text < 0:
            raise ValueError(f"duration must be >= 0, got {text!r}")
        return int(round(text * 1000))
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration (use e.g. 90s, 10m, 2h): {text!r}")
    return int(round(float(match.group(1)) * _UNIT_MS[match.group(2)]))


# -- parsing with positions ------------------------------------------------------------------


class _Reader:
    """Walks a YAML node tree, turning every problem into a PolicyError with its place."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node, where: str, reason: str) -> PolicyError:
        mark = node.start_mark
        return PolicyError(f"{self.source}:{mark.line + 1}:{mark.column + 1}: {where}: {reason}")

    def mapping(self, node: yaml.Node, where: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, where or "policy", "must be a mapping of keys to values")
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            label = f"{where}.{name}" if where else str(name)
            if name not in allowed:
                raise self.fail(key, label, f"unknown key (known: {', '.join(allowed)})")
            if name in out:
                raise self.fail(key, label, "given twice")
            out[name] = value
        return out

    def scalar(self, node: yaml.Node, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, where, "must be a single value")
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        try:
            return yaml.safe_load(yaml.serialize(node))
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # e.g. 2026-13-45 resolves as a timestamp that is no date; !!int x; 5,000 digits.
            raise self.fail(node, where, f"not a valid value ({type(exc).__name__})") from None

    def number(self, node: yaml.Node, where: str, lo: float, hi: float, *, lo_open: bool = True,
               hi_open: bool = True, integer: bool = False) -> float:
        value = self.scalar(node, where)
        if isinstance(value, str) and node.style is None and not integer:
            # YAML 1.1 reads 1e-3 (no dot) as text; JSON policies write numbers that way.
            try:
                value = float(value)
            except ValueError:
                pass
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, where, f"must be a finite number, got {value!r}")
        if isinstance(value, bool) or not ok_type:
            kind = "an integer" if integer else "a number"
            raise self.fail(node, where, f"must be {kind}, got {value!r}")
        below = value <= lo if lo_open else value < lo
        above = value >= hi if hi_open else value > hi
        if below or above:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            hi_text = "∞" if hi == float("inf") else f"{hi:g}"
            raise self.fail(node, where, f"must be in {left}{lo:g}, {hi_text}{right}, got {value!r}")
        return value

    def choice(self, node: yaml.Node, where: str, options: tuple[str, ...]) -> str:
        value = self.scalar(node, where)
        if value not in options:
            raise self.fail(node, where, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def boolean(self, node: yaml.Node, where: str) -> bool:
        value = self.scalar(node, where)
        if not isinstance(value, bool):
            raise self.fail(node, where, f"must be true or false, got {value!r}")
        return value

    def duration(self, node: yaml.Node, where: str) -> int:
        try:
            return parse_duration(self.scalar(node, where))
        except (ValueError, OverflowError) as exc:
            raise self.fail(node, where, str(exc)) from None

    def string(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, where, f"must be a non-empty string, got {value!r}")
        return value


_TOP_KEYS = ("name", "metrics", "segments", "alpha", "alpha_promote", "alpha_srm", "warmup",
             "min_duration", "max_duration", "max_silence", "min_baseline_for_threshold",
             "fast_path", "dry_run", "global_incident", "post_promotion_watch", "anomaly_detector",
             "anomaly_threshold", "anomaly_metric")
_METRIC_KEYS = ("metric", "statistic", "rollback_tolerance", "promote_tolerance", "min_canary",
                "min_canary_events", "alpha_weight")


def _yaml_error(source: str, exc: yaml.YAMLError) -> PolicyError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
    problem = getattr(exc, "problem", None) or str(exc)
    return PolicyError(f"{source}:{where}: not valid YAML: {problem}")


def _event_problem(event: yaml.Event, depth: int) -> str | None:
    """Why ``event`` may not be in a policy, or None (``depth``: collections open around it)."""
    tag = getattr(event, "tag", None)
    if tag is not None and tag not in SAFE_TAGS:
        shown = "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag
        return f"tag {shown[:80]}: not allowed in a policy (plain YAML values only)"
    if depth > MAX_DEPTH:
        return f"policy: nested {depth} deep, at most {MAX_DEPTH}"
    return None


def _screen(text: str, source: str) -> None:
    """Refuse a document with an unsafe tag or nested too deep, before it is composed.

    PyYAML's composer recurses once per level of nesting, so a 5,000-deep ``[[[...]]]``
    raises RecursionError inside :func:`yaml.compose`, before any depth could be checked on
    its nodes. Its parser is a state machine that does not recurse: the event stream says
    how deep every collection opens, and which tag every value carries, at bounded cost.
    """
    depth = 0
    try:
        for event in yaml.parse(text):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            problem = _event_problem(event, depth)
            if problem:
                mark = event.start_mark
                raise PolicyError(f"{source}:{mark.line + 1}:{mark.column + 1}: {problem}")
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None


def _compose(text: Any, source: str) -> yaml.Node | None:
    """The document's node tree, once it is known to be text of bounded size, depth and tags."""
    if not isinstance(text, str):
        raise PolicyError(f"{source}:1:1: policy: must be the policy's YAML text, got {type(text).__name__}")
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyError(f"{source}:1:1: policy: {len(text)} characters, at most {MAX_POLICY_CHARS}")
    _screen(text, source)
    try:
        return yaml.compose(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None


def _name(read: _Reader, node: yaml.Node) -> str:
    """The policy's name: it is in every verdict and in the key ``ID~dry-run:NAME``, so it
    has the alphabet of rollout ids (:func:`name_problem`)."""
    name = read.string(node, "name")
    problem = name_problem(name)
    if problem:
        raise read.fail(node, "name", problem)
    return name


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and check a policy document; raise :class:`PolicyError` naming the place."""
    read = _Reader(source)
    root = _compose(text, source)
    if root is None:
        raise PolicyError(f"{source}:1:1: policy: empty document (at least `name:` is needed)")
    top = read.mapping(root, "", _TOP_KEYS)
    if "name" not in top:
        raise read.fail(root, "name", "missing (every verdict carries the policy's name)")
    values: dict[str, Any] = {"name": _name(read, top["name"])}
    for key in ("alpha", "alpha_promote", "alpha_srm"):
        if key in top:
            values[key] = float(read.number(top[key], key, 0, 1))
    for key in ("warmup", "min_duration", "max_duration", "max_silence"):
        if key in top:
            values[f"{key}_ms"] = read.duration(top[key], key)
    if "min_baseline_for_threshold" in top:
        values["min_baseline_for_threshold"] = int(read.number(
            top["min_baseline_for_threshold"], "min_baseline_for_threshold", 1, float("inf"),
            lo_open=False, integer=True))
    for key in ("fast_path", "dry_run", "global_incident"):
        if key in top:
            values[key] = read.boolean(top[key], key)
    if "post_promotion_watch" in top:
        values["post_promotion_watch_ms"] = read.duration(top["post_promotion_watch"], "post_promotion_watch")
    if "anomaly_threshold" in top:
        values["anomaly_threshold"] = float(read.number(top["anomaly_threshold"], "anomaly_threshold", 0, 1))
    if "anomaly_metric" in top:
        values["anomaly_metric"] = read.choice(top["anomaly_metric"], "anomaly_metric", ("LCP", "INP", "FCP", "TTFB"))
    if "anomaly_detector" in top:
        from detectors.anomaly import DETECTORS

        values["anomaly_detector"] = read.choice(top["anomaly_detector"], "anomaly_detector", tuple(DETECTORS))
    if "segments" in top:
        node = top["segments"]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise read.fail(node, "segments", "must be a non-empty list, e.g. [all] or [mobile, desktop]")
        segments = []
        for i, item in enumerate(node.value):
            segment = read.choice(item, f"segments[{i}]", ("all", *SEGMENTS))
            if segment in segments:
                raise read.fail(item, f"segments[{i}]", f"{segment!r} given twice")
            segments.append(segment)
        values["segments"] = tuple(segments)
    if "metrics" in top:
        values["metrics"] = _parse_metrics(read, top["metrics"])
    policy = Policy(**values)
    if policy.max_duration_ms <= policy.warmup_ms + policy.min_duration_ms:
        node = top.get("max_duration") or top.get("min_duration") or top.get("warmup") or root
        raise read.fail(node, "max_duration", "must be longer than warmup + min_duration")
    return policy


def _parse_metrics(read: _Reader, node: yaml.Node) -> tuple[MetricPolicy, ...]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise read.fail(node, "metrics", "must be a non-empty list of metrics")
    out: list[MetricPolicy] = []
    for i, item in enumerate(node.value):
        where = f"metrics[{i}]"
        fields = read.mapping(item, where, _METRIC_KEYS)
        if "metric" not in fields:
            raise read.fail(item, f"{where}.metric", "missing")
        metric = read.choice(fields["metric"], f"{where}.metric", (*METRICS, *RATE_METRICS))
        statistic = None
        if "statistic" in fields:
            statistic = read.choice(fields["statistic"], f"{where}.statistic", STATISTICS)
            if metric in RATE_METRICS and statistic != "rate":
                raise read.fail(fields["statistic"], f"{where}.statistic",
                                f"{metric} is a rate: the statistic must be rate, got {statistic!r}")
        m = _default_metric(metric, statistic)
        changes: dict[str, Any] = {}
        for key in ("rollback_tolerance", "promote_tolerance"):
            if key in fields:
                changes[key] = float(read.number(fields[key], f"{where}.{key}", 0, 10, lo_open=False))
        for key in ("min_canary", "min_canary_events"):
            if key in fields:
                changes[key] = int(read.number(fields[key], f"{where}.{key}", 0, float("inf"),
                                               lo_open=False, integer=True))
        if "alpha_weight" in fields:
            changes["alpha_weight"] = float(read.number(fields["alpha_weight"], f"{where}.alpha_weight",
                                                        0, float("inf")))
        m = replace(m, **changes)
        if m.promote_tolerance < m.rollback_tolerance:
            raise read.fail(item, where, "promote_tolerance must be >= rollback_tolerance "
                            f"(got {m.promote_tolerance} < {m.rollback_tolerance})")
        if any((o.metric, o.statistic) == (m.metric, m.statistic) for o in out):
            raise read.fail(item, where, f"{m.metric} {m.statistic} is listed twice")
        out.append(m)
    return tuple(out)
