"""GoogleChrome ``web-vitals`` Metric objects (v4, v5, v6), bare or in the snippet's envelope.

A Metric is ``{name, value, rating, delta, id, navigationType, entries[, attribution]}``
(v5 and v6 also ``navigationId``, ``navigationURL``, ``navigationStartTime``). It has no time,
URL, session, release or page-view id: senders add their own fields, and these are read
from the metric itself: ``app``, ``release``, ``cohort``, ``session`` (or ``session_id``),
``page``, ``device``, ``browser``, ``user_agent``, ``view`` (a page-view id of the sender's)
and ``ts`` (the client's clock, kept as ``client_ts``). ``value`` is used (the latest
total); ``delta`` and ``rating`` are not.

* The project's snippet sends an **envelope**, ``{"id", "view", "app", "release", "session",
  "page", "device", "errors", "metrics": [<Metric>...]}``: one beacon per envelope. ``view``
  (the page-view id) is the beacon's ``view``; ``id`` (new for each send, kept for a retry
  of the same send) is the beacon id.
* **Bare metrics** in one request (the README's batching pattern, ``JSON.stringify([...queue])``)
  are one page's metrics and make one beacon. They are split only on evidence of a second
  page view: another context (app, release, cohort, session, page, device, browser, view),
  another ``navigationId`` or ``navigationType`` (a bfcache restore), or a second id for the
  same metric name. A metric reported again under the same id joins its first report's page
  view, wherever it comes in the request, and keeps its largest value (CLS and INP only grow).

**Nothing ties bare metrics of different requests.** The README's ``sendToAnalytics``
(``navigator.sendBeacon`` per metric, ``{name, value, id}``) sends each metric alone, and a
Metric's ``id`` is its own (``v6-<Date.now() when that metric's observer started>-<13 random
digits>``: one page's metrics share no part of it, the captured CLS id even has another
time). ``navigationId`` is Chrome's ``PerformanceEntry.navigationId``, a small per-document
counter (258 in the captured page load), not unique across page loads. So the page view is
the beacon with **TTFB**, which web-vitals reports once per page load (and once per bfcache
restore, a page view too), as soon as the page has loaded; a beacon without TTFB and without
a ``view`` is a ``part``: its metrics count, in the window it arrives in, but it is no page
view of its own (and joins its session's latest page view when it names a session). A
sender that gives every metric a ``view`` of its own is joined by it instead.

Without an envelope id the beacon id is the LCP metric's id, else the first metric's, so a
re-sent batch gets the same id and is deduplicated downstream. ``FID`` (v4) is read but not
kept: it is not a canonical metric.

>>> from streams.ingest.formats.base import Context
>>> ctx = Context(received_at=1763856000123, app="shop-web", release="r2")
>>> out = convert([
...     (0, {"name": "TTFB", "value": 412.6, "id": "v5-1-1", "navigationType": "navigate"}),
...     (1, {"name": "LCP", "value": 2140.3, "id": "v5-1-2", "navigationType": "navigate"}),
...     (2, {"name": "CLS", "value": "0.04", "id": "v5-1-3"})], ctx)
>>> out.beacons
[([0, 1], {'id': 'v5-1-2', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'metrics': {'TTFB': 412.6, 'LCP': 2140.3}})]
>>> out.rejects
[(2, 'value: must be a number, got str')]
>>> convert([(0, {"name": "CLS", "value": 0.02, "id": "v5-1-3"})], ctx).beacons   # no TTFB: a part
[([0], {'id': 'v5-1-3', 'part': True, 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'metrics': {'CLS': 0.02}})]
>>> convert([(0, {"id": "7c41", "view": "3f1c", "metrics": [{"name": "CLS", "value": 0.02}]})], ctx).beacons
[([0], {'id': '7c41', 'view': '3f1c', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'metrics': {'CLS': 0.02}})]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from detectors.beacon import METRIC_LIMITS
from streams.ingest.formats.base import (
    Context,
    Converted,
    FormatError,
    device_class,
    epoch_ms,
    make_beacon,
    number,
    page_path,
    text,
    ua_browser,
    ua_device,
)

__all__ = [
    "NAME",
    "Metric",
    "detect",
    "is_metric",
    "is_envelope",
    "read_metric",
    "group_metrics",
    "group_beacon",
    "convert",
]

NAME = "web-vitals"

#: Metric names web-vitals reports (FID: v4 only). Read case-insensitively.
NAMES: frozenset[str] = frozenset({"LCP", "INP", "CLS", "FCP", "TTFB", "FID"})

_CONTEXT_FIELDS = ("app", "release", "cohort", "session", "page", "device", "browser", "view")


# A NamedTuple, not a frozen dataclass: five per snippet envelope, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs about 0.6 µs more each.
class Metric(NamedTuple):
    """One web-vitals measurement, normalised; ``context`` is its sorted (field, value) pairs."""

    name: str
    value: float
    id: str | None = None
    navigation_type: str | None = None
    navigation_id: int | str | None = None
    client_ts: int | None = None
    context: tuple[tuple[str, str], ...] = ()


def is_metric(obj: Any) -> bool:
    """A dict with a web-vitals ``name`` and a ``value`` key."""
    if not isinstance(obj, dict):
        return False
    name = obj.get("name")
    return type(name) is str and name.upper() in NAMES and "value" in obj


def is_envelope(obj: Any) -> bool:
    """A dict whose ``metrics`` is a list (a canonical beacon's ``metrics`` is an object)."""
    return isinstance(obj, dict) and isinstance(obj.get("metrics"), list)


def detect(item: Any) -> bool:
    return is_envelope(item) or is_metric(item)


def _kind(x: Any) -> str:
    return "null" if x is None else type(x).__name__


def _string(obj: dict, key: str, where: str) -> str | None:
    """``obj[key]`` when a non-blank string; None when absent; FormatError when not a string."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise FormatError(f"{where}{key}: must be a string, got {_kind(value)}")
    return value if value.strip() else None


#: Every key :func:`read_context` reads.
_CONTEXT_KEYS = frozenset(("app", "release", "cohort", "page", "browser", "session", "session_id", "user_agent",
                           "device", "view"))


def read_context(obj: dict, where: str = "") -> dict[str, str]:
    """The context fields a sender added to a metric or an envelope (absent ones left out)."""
    ctx = {key: _string(obj, key, where) for key in ("app", "release", "cohort", "page", "browser", "view")}
    ctx["page"] = page_path(ctx["page"])
    ctx["session"] = _string(obj, "session", where) or _string(obj, "session_id", where)
    ua = _string(obj, "user_agent", where)
    ctx["device"] = device_class(_string(obj, "device", where)) or ua_device(ua)
    ctx["browser"] = ctx["browser"] or ua_browser(ua)
    return {k: v for k, v in ctx.items() if v is not None}


def read_metric(obj: dict, where: str = "") -> Metric:
    """Normalise one Metric object (see :func:`is_metric`); FormatError names the bad field."""
    name = obj["name"].upper()
    raw = obj.get("value")
    value = number(raw)
    if value is None:
        raise FormatError(f"{where}value: must be a number, got {_kind(raw)}")
    if value < 0:
        raise FormatError(f"{where}value: must be >= 0, got {raw!r}")
    if name in METRIC_LIMITS and value > METRIC_LIMITS[name]:
        raise FormatError(f"{where}value: {raw!r} is above the {name} limit {METRIC_LIMITS[name]:g}")
    # Most metric objects carry no context of their own (the envelope, or the sender's
    # relay, has it): reading none of the fields gives {} without the work.
    context = {} if _CONTEXT_KEYS.isdisjoint(obj) else read_context(obj, where)
    soft_url = page_path(obj.get("navigationURL"))  # v6 soft navigation: the URL it belongs to
    if "page" not in context and soft_url:
        context["page"] = soft_url
    navigation_id = obj.get("navigationId")
    return Metric(
        name=name,
        value=value,
        id=text(obj.get("id")),
        navigation_type=text(obj.get("navigationType")),
        navigation_id=navigation_id if type(navigation_id) in (int, str) else None,
        client_ts=epoch_ms(obj.get("ts")),
        context=tuple(sorted(context.items())) if context else (),
    )


@dataclass
class _Group:
    """An open page view while grouping: its members and what a newcomer must agree with."""

    members: list[tuple[int, Metric]] = field(default_factory=list)
    ids: dict[str, str | None] = field(default_factory=dict)  # metric name → instance id
    navigation_id: int | str | None = None
    navigation_type: str | None = None

    def fits(self, m: Metric) -> bool:
        if m.navigation_id is not None and self.navigation_id not in (None, m.navigation_id):
            return False
        if m.navigation_type is not None and self.navigation_type not in (None, m.navigation_type):
            return False
        return m.name not in self.ids or self.ids[m.name] == m.id

    def add(self, source: int, m: Metric) -> None:
        self.members.append((source, m))
        self.ids.setdefault(m.name, m.id)
        self.navigation_id = self.navigation_id if m.navigation_id is None else m.navigation_id
        self.navigation_type = self.navigation_type or m.navigation_type


def group_metrics(metrics: list[tuple[int, Metric]]) -> list[list[tuple[int, Metric]]]:
    """Split ``(source, metric)`` pairs into page views (see the module docstring), in order."""
    groups: list[_Group] = []
    open_group: dict[tuple[tuple[str, str], ...], _Group] = {}
    instance: dict[tuple[Any, ...], _Group] = {}  # (context, name, id) → its page view
    for source, m in metrics:
        key = (m.context, m.name, m.id)
        group = instance.get(key) if m.id is not None else None
        if group is None:
            group = open_group.get(m.context)
            if group is None or not group.fits(m):
                group = open_group[m.context] = _Group()
                groups.append(group)
        group.add(source, m)
        instance.setdefault(key, group)
    return [g.members for g in groups]


def group_beacon(
    ctx: Context,
    metrics: list[Metric],
    context: dict[str, Any] | None = None,
    beacon_id: str | None = None,
    client_ts: int | None = None,
    errors: Any = None,
) -> dict[str, Any]:
    """One beacon from one page view's metrics.

    ``context`` defaults to the first metric's. Per name the kept value is the largest of
    one instance (same id), else the last reported.
    """
    best: dict[str, Metric] = {}
    for m in metrics:
        kept = best.get(m.name)
        if kept is None or kept.id != m.id or m.value > kept.value:
            best[m.name] = m
    if beacon_id is None:
        lcp = best.get("LCP")
        ids = [m.id for m in ([lcp] if lcp else []) + metrics if m.id]
        beacon_id = ids[0] if ids else None
    stamps = [m.client_ts for m in metrics if m.client_ts is not None]
    if context is None:
        context = dict(metrics[0].context) if metrics else {}
    values = {name: m.value for name, m in best.items() if name in METRIC_LIMITS}
    return make_beacon(
        ctx,
        id=beacon_id,
        part=True if context.get("view") is None and "TTFB" not in values else None,
        client_ts=client_ts if client_ts is not None else max(stamps, default=None),
        metrics=values,
        errors=errors,
        **{k: context.get(k) for k in _CONTEXT_FIELDS},
    )


def _envelope_beacon(item: dict, ctx: Context) -> dict[str, Any]:
    metrics = []
    for k, obj in enumerate(item["metrics"]):
        if not is_metric(obj):
            raise FormatError(
                f"metrics[{k}]: not a web-vitals metric (needs a name among "
                f"{', '.join(sorted(NAMES))} and a value)"
            )
        metrics.append(read_metric(obj, f"metrics[{k}]."))
    return group_beacon(
        ctx,
        metrics,
        context=read_context(item),
        beacon_id=text(item.get("id")),
        client_ts=epoch_ms(item.get("ts")),
        errors=item.get("errors"),
    )


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Envelopes one by one, then all bare metrics grouped into page views."""
    out = Converted()
    bare: list[tuple[int, Metric]] = []
    for index, item in items:
        try:
            if is_envelope(item):
                out.beacons.append(([index], _envelope_beacon(item, ctx)))
            else:
                bare.append((index, read_metric(item)))
        except FormatError as exc:
            out.rejects.append((index, str(exc)))
    for group in group_metrics(bare):
        out.beacons.append(([i for i, _ in group], group_beacon(ctx, [m for _, m in group])))
    return out
