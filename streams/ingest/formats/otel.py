"""OpenTelemetry web vitals: an OTLP/JSON logs export (``POST /v1/logs``), one item per request.

A web vital is a log record with ``eventName`` (or the attribute ``event.name``)
``browser.web_vital``, or with a ``browser.web_vital.name`` attribute. Its fields are read from
the attributes ``browser.web_vital.{name,value,id,navigation_type}``
(opentelemetry-browser ``instrumentation-web-vitals``), else from the body map
``{name, value, delta, id}`` (the semantic-conventions event). Names are lower case
(``lcp``); values are ms, CLS a score. Other log records are skipped.

=========  ==========================================================================
canonical  OTLP
=========  ==========================================================================
metrics    one per web-vital record (``fid`` is not kept)
app        resource ``service.name``, else the request's app
release    resource ``service.version``, else the request's release
session    ``session.id`` (record, else resource attribute)
page       path of ``url.full``
device     ``browser.mobile`` true → mobile; else from ``user_agent.original``; false → desktop
browser    ``browser.brands``, else from ``user_agent.original``
client_ts  the latest ``timeUnixNano`` (else ``observedTimeUnixNano``) of the page's records
id         the LCP record's ``browser.web_vital.id``, else the first record's
=========  ==========================================================================

The records of one request are grouped into page views exactly like bare web-vitals metrics
(:func:`streams.ingest.formats.webvitals.group_metrics`). A bad record is reported with its path;
the other records of the request are still used.

**Errors.** An exception record (``eventName`` ``exception``, opentelemetry-browser's errors
instrumentation, or a record with ``exception.type`` / ``exception.message`` attributes) is
one error, counted in the first page view of the web-vital records of the same resource in
the export (one export is one page's LoggerProvider); an export with exceptions and no web
vital of their resource makes a beacon of them alone (``errors``, no metrics).

**Nothing ties one page's exports.** The SDK exports in batches (here: FCP, TTFB and the
exception while the page is open, LCP and CLS when it is hidden), and no attribute names the
page view: the resource has ``service.*`` only, a web vital's ``browser.web_vital.id`` is its
own metric's (web-vitals ``v5-<ms>-<random>``), and ``session.id`` (when the session
processor adds it) is the session. So no beacon has a ``view``, and the page view is the
beacon with TTFB (the export after load); a beacon without it (the export on hide, or
exceptions alone) is a ``part``, as for bare web-vitals metrics: what it carries counts, in
its session's latest page view when it names a session, but no page view of its own.

>>> from streams.ingest.formats.base import Context
>>> attr = lambda k, v: {"key": k, "value": {"doubleValue" if isinstance(v, float) else "stringValue": v}}
>>> export = {"resourceLogs": [{"resource": {"attributes": [attr("service.name", "shop-web"),
...     attr("service.version", "r2")]}, "scopeLogs": [{"logRecords": [{"eventName": "browser.web_vital",
...     "timeUnixNano": "1732300014485000000", "attributes": [attr("browser.web_vital.name", "lcp"),
...     attr("browser.web_vital.value", 2140.3), attr("url.full", "https://shop.example/p/42?x=1")]}]}]}]}
>>> convert([(0, export)], Context(received_at=1763856000123)).beacons
[([0], {'part': True, 'ts': 1763856000123, 'client_ts': 1732300014485, 'app': 'shop-web', 'release': 'r2', 'page': '/p/42', 'metrics': {'LCP': 2140.3}})]
>>> records = export["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
>>> records.append({"eventName": "exception", "attributes": [attr("exception.message", "boom")]})
>>> convert([(0, export)], Context(received_at=1763856000123)).beacons[0][1]["errors"]
1
"""

from __future__ import annotations

import math
import re
from typing import Any

from streams.ingest.formats import webvitals
from streams.ingest.formats.base import (
    Context,
    Converted,
    FormatError,
    brands_browser,
    number,
    ua_browser,
    ua_device,
)

__all__ = ["NAME", "detect", "convert", "attributes", "any_value"]

NAME = "OTLP log"

_EVENT = "browser.web_vital"
_PREFIX = "browser.web_vital."
_MAX_DEPTH = 8
_INT = re.compile(r"-?\d{1,20}")


def detect(item: Any) -> bool:
    """An OTLP/JSON logs export: an object with a ``resourceLogs`` array."""
    return isinstance(item, dict) and isinstance(item.get("resourceLogs"), list)


def any_value(v: Any, depth: int = 0) -> Any:
    """An OTLP ``AnyValue`` as a Python value; None when absent or malformed.

    int64 arrive as strings in OTLP/JSON; doubles may be ``"NaN"`` or ``"Infinity"`` (→ None).
    """
    if not isinstance(v, dict) or depth > _MAX_DEPTH:
        return None
    if "stringValue" in v:
        return v["stringValue"] if type(v["stringValue"]) is str else None
    if "boolValue" in v:
        return v["boolValue"] if type(v["boolValue"]) is bool else None
    if "intValue" in v:
        i = v["intValue"]
        if type(i) is str and _INT.fullmatch(i):
            return int(i)
        return i if type(i) is int else None
    if "doubleValue" in v:
        d = v["doubleValue"]
        if type(d) is str:
            try:
                d = float(d)
            except ValueError:
                return None
            return d if math.isfinite(d) else None
        return number(d)
    if "arrayValue" in v:
        values = v["arrayValue"].get("values") if isinstance(v["arrayValue"], dict) else None
        return [any_value(x, depth + 1) for x in values] if isinstance(values, list) else None
    if "kvlistValue" in v:
        kvlist = v["kvlistValue"]
        return attributes(kvlist.get("values"), depth + 1) if isinstance(kvlist, dict) else None
    return None


def attributes(kvs: Any, depth: int = 0) -> dict[str, Any]:
    """OTLP ``[{"key", "value": AnyValue}]`` as a dict (malformed entries skipped)."""
    out: dict[str, Any] = {}
    if isinstance(kvs, list):
        for kv in kvs:
            if isinstance(kv, dict) and type(kv.get("key")) is str:
                out[kv["key"]] = any_value(kv.get("value"), depth)
    return out


def _time_ms(record: dict) -> int | None:
    for key in ("timeUnixNano", "observedTimeUnixNano"):
        ns = record.get(key)
        if type(ns) is str and _INT.fullmatch(ns):
            ns = int(ns)
        if type(ns) is int and ns > 0:
            return ns // 1_000_000
    return None


def _string(attrs: dict[str, Any], key: str) -> str | None:
    return attrs[key] if type(attrs.get(key)) is str else None


_EXCEPTION = "exception"
_EXCEPTION_ATTRS = ("exception.type", "exception.message")


def _event(record: dict, attrs: dict[str, Any]) -> Any:
    return record.get("eventName") if type(record.get("eventName")) is str else attrs.get("event.name")


def _is_exception(record: dict, attrs: dict[str, Any]) -> bool:
    """An exception record: the ``exception`` event, or ``exception.*`` attributes on a record
    that is no web vital."""
    event = _event(record, attrs)
    if event == _EXCEPTION:
        return True
    return event != _EVENT and not any(k.startswith(_PREFIX) for k in attrs) and any(
        k in attrs for k in _EXCEPTION_ATTRS)


def _context(record: dict, attrs: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """The web-vitals context fields of a record: the resource's, then the record's own."""
    merged = {**resource, **attrs}
    ua = _string(merged, "user_agent.original")
    mobile = merged.get("browser.mobile")
    return {
        "ts": _time_ms(record),
        "app": _string(resource, "service.name"),
        "release": _string(resource, "service.version"),
        "session": _string(merged, "session.id"),
        "page": _string(merged, "url.full"),
        "device": "mobile" if mobile is True else ua_device(ua) or ("desktop" if mobile is False else None),
        "browser": brands_browser(merged.get("browser.brands")) or ua_browser(ua),
    }


def _metric(record: dict, attrs: dict[str, Any], resource: dict[str, Any], where: str) -> webvitals.Metric | None:
    """The web vital of one log record, None for another kind of record."""
    event = _event(record, attrs)
    fields = {k[len(_PREFIX):]: v for k, v in attrs.items() if k.startswith(_PREFIX)}
    body = any_value(record.get("body"))
    if "name" not in fields and event == _EVENT and isinstance(body, dict):
        fields, where = body, f"{where}.body."
    else:
        where = f"{where}.attributes.{_PREFIX}"
    if event != _EVENT and "name" not in fields:
        return None
    name = fields.get("name")
    if type(name) is not str or name.upper() not in webvitals.NAMES:
        raise FormatError(
            f"{where}name: must be one of {', '.join(sorted(n.lower() for n in webvitals.NAMES))},"
            f" got {str(name)[:20]!r}"
        )
    vital = {
        "name": name,
        "value": fields.get("value"),
        "id": fields.get("id"),
        "navigationType": fields.get("navigation_type"),
        **_context(record, attrs, resource),
    }
    return webvitals.read_metric(vital, where)


def _convert_export(index: int, export: dict, ctx: Context, out: Converted) -> None:
    metrics: list[tuple[int, webvitals.Metric]] = []  # (resourceLogs index, metric)
    exceptions: dict[int, list[dict[str, Any]]] = {}  # resourceLogs index → the context of each
    reasons = len(out.rejects)
    for r, resource_logs in enumerate(export["resourceLogs"]):
        if not isinstance(resource_logs, dict):
            out.rejects.append((index, f"resourceLogs[{r}]: must be an object"))
            continue
        resource = resource_logs.get("resource")
        resource_attrs = attributes(resource.get("attributes")) if isinstance(resource, dict) else {}
        scope_logs = resource_logs.get("scopeLogs")
        for s, scope in enumerate(scope_logs if isinstance(scope_logs, list) else []):
            records = scope.get("logRecords") if isinstance(scope, dict) else None
            for n, record in enumerate(records if isinstance(records, list) else []):
                where = f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{n}]"
                if not isinstance(record, dict):
                    out.rejects.append((index, f"{where}: must be an object"))
                    continue
                attrs = attributes(record.get("attributes"))
                if _is_exception(record, attrs):
                    exceptions.setdefault(r, []).append(_context(record, attrs, resource_attrs))
                    continue
                try:
                    metric = _metric(record, attrs, resource_attrs, where)
                except FormatError as exc:
                    out.rejects.append((index, str(exc)))
                    continue
                if metric is not None:
                    metrics.append((r, metric))
    groups = webvitals.group_metrics(metrics)
    errors: dict[int, int] = {}  # group → the exceptions counted in it
    alone: list[list[dict[str, Any]]] = []  # the exceptions of a resource without a web vital here
    for r, contexts in exceptions.items():
        group = next((g for g, members in enumerate(groups) if any(m_r == r for m_r, _ in members)), None)
        if group is None:
            alone.append(contexts)
        else:
            errors[group] = errors.get(group, 0) + len(contexts)
    for g, group in enumerate(groups):
        out.beacons.append(([index], webvitals.group_beacon(ctx, [m for _, m in group], errors=errors.get(g))))
    for contexts in alone:
        try:
            context = webvitals.read_context(contexts[0])
        except FormatError as exc:
            out.rejects.append((index, str(exc)))
            continue
        stamps = [c["ts"] for c in contexts if c["ts"] is not None]
        out.beacons.append(([index], webvitals.group_beacon(
            ctx, [], context=context, client_ts=max(stamps, default=None), errors=len(contexts))))
    if not metrics and not exceptions and len(out.rejects) == reasons:
        out.rejects.append((index, "resourceLogs: no browser.web_vital log record"))


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Each export on its own: its web-vital records grouped into page views, its exception
    records counted in them."""
    out = Converted()
    for index, export in items:
        _convert_export(index, export, ctx, out)
    return out
