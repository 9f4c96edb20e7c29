"""Values a sender nests deeply or makes huge: refused with a short reason, never an exception.

Adapters pass ``metrics``, ``errors`` and ``device`` on unrepaired, and the beacon check
quotes a bad value in its reason. A value nested about a thousand levels deep (orjson and
msgspec decode up to 1,024) cannot be quoted: Python's repr raises RecursionError, which
escaped :func:`~streams.ingest.formats.convert_items` and took the request down with a 503.
"""

from __future__ import annotations

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streams.ingest.formats import MAX_REASON, TOO_DEEP, convert_items, parse_body, to_canonical
from tests.ingest.formats.helpers import CTX


def nested(depth: int, shape: str = "list") -> bytes:
    """A JSON value ``depth`` levels deep."""
    if shape == "list":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_a_metric_nested_a_thousand_levels_is_refused_with_a_reason() -> None:
    body = b'{"app":"shop-web","release":"r2","metrics":{"LCP":' + nested(1_000) + b"}}"
    beacons, rejects = to_canonical(parse_body(body, "application/json"), CTX)
    assert beacons == []
    assert rejects == [(0, f"canonical: {TOO_DEEP}")]


def test_deep_errors_of_a_datadog_view_and_of_a_snippet_envelope_are_refused() -> None:
    view = (b'{"type":"view","_dd":{},"service":"shop-web","view":{"id":"v1","error":{"count":'
            + nested(1_000, "object") + b"}}}")
    envelope = (b'{"id":"pv1","app":"shop-web","release":"r2","errors":' + nested(1_000)
                + b',"metrics":[{"name":"LCP","value":1200,"id":"v5-1"}]}')
    conversion = convert_items(parse_body(view + b"\n" + envelope, ""), CTX)
    assert conversion.beacons == []
    assert conversion.rejects == [(0, f"Datadog RUM: {TOO_DEEP}"), (1, f"web-vitals: {TOO_DEEP}")]


def test_a_huge_bad_value_gives_a_short_reason() -> None:
    item = {"app": "shop-web", "release": "r2", "metrics": {"LCP": list(range(10_000))}}
    _, rejects = to_canonical([item], CTX)
    [(index, reason)] = rejects
    assert index == 0 and reason.startswith("canonical: metrics.LCP: must be a finite number, got [0, 1, 2")
    assert len(reason) <= len("canonical: ") + MAX_REASON


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(["metrics.LCP", "metrics.CLS", "errors", "device"]),
       depth=st.integers(1, 1_020), shape=st.sampled_from(["list", "object"]))
@example(field="metrics.INP", depth=1_020, shape="list").via("the depth that raised")
@example(field="device", depth=1_000, shape="object").via("the depth that raised")
def test_any_nesting_of_a_checked_field_is_a_reject_never_an_exception(field: str, depth: int, shape: str) -> None:
    item = {"app": "shop-web", "release": "r2", "metrics": {}}
    value = orjson.loads(nested(depth, shape))
    if field.startswith("metrics."):
        item["metrics"][field.split(".")[1]] = value
    else:
        item[field] = value
    beacons, rejects = to_canonical([item], CTX)
    assert beacons == []
    [(index, reason)] = rejects
    assert index == 0 and len(reason) <= len("canonical: ") + MAX_REASON
    assert reason == f"canonical: {TOO_DEEP}" or reason.startswith(f"canonical: {field}")
