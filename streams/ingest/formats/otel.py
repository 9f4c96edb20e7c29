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

>>> from streams.ingest.formats.base import Context
>>> attr = lambda k, v: {"key": k, "value": {"doubleValue" if isinstance(v, float) else "stringValue": v}}
>>> export = {"resourceLogs": [{"resource": {"attributes": [attr("service.name", "shop-web"),
...     attr("service.version", "r2")]}, "scopeLogs": [{"logRecords": [{"eventName": "browser.web_vital",
...     "timeUnixNano": "1732300014485000000", "attributes": [attr("browser.web_vital.name", "lcp"),
...     attr("browser.web_vital.value", 2140.3), attr("url.full", "https://shop.example/p/42?x=1")]}]}]}]}
>>> convert([(0, export)], Context(received_at=1763856000123)).beacons
[([0], {'ts': 1763856000123, 'client_ts': 1732300014485, 'app': 'shop-web', 'release': 'r2', 'page': '/p/42', 'metrics': {'LCP': 2140.3}})]
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


def _metric(record: dict, resource: dict[str, Any], where: str) -> webvitals.Metric | None:
    """The web vital of one log record, None for another kind of record."""
    attrs = attributes(record.get("attributes"))
    event = record.get("eventName") if type(record.get("eventName")) is str else attrs.get("event.name")
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
    merged = {**resource, **attrs}
    ua = _string(merged, "user_agent.original")
    mobile = merged.get("browser.mobile")
    device = "mobile" if mobile is True else ua_device(ua) or ("desktop" if mobile is False else None)
    vital = {
        "name": name,
        "value": fields.get("value"),
        "id": fields.get("id"),
        "navigationType": fields.get("navigation_type"),
        "ts": _time_ms(record),
        "app": _string(resource, "service.name"),
        "release": _string(resource, "service.version"),
        "session": _string(merged, "session.id"),
        "page": _string(merged, "url.full"),
        "device": device,
        "browser": brands_browser(merged.get("browser.brands")) or ua_browser(ua),
    }
    return webvitals.read_metric(vital, where)


def _convert_export(index: int, export: dict, ctx: Context, out: Converted) -> None:
    metrics: list[tuple[int, webvitals.Metric]] = []
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
                try:
                    metric = _metric(record, resource_attrs, where)
                except FormatError as exc:
                    out.rejects.append((index, str(exc)))
                    continue
                if metric is not None:
                    metrics.append((index, metric))
    for group in webvitals.group_metrics(metrics):
        out.beacons.append(([index], webvitals.group_beacon(ctx, [m for _, m in group])))
    if not metrics and len(out.rejects) == reasons:
        out.rejects.append((index, "resourceLogs: no browser.web_vital log record"))


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Each export on its own: its web-vital records grouped into page views."""
    out = Converted()
    for index, export in items:
        _convert_export(index, export, ctx, out)
    return out
