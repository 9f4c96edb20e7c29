"""Properties: parse_body raises FormatError or nothing; to_canonical never raises and every
beacon it returns is valid, whatever the items, including damaged real payloads."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from pathlib import Path
from urllib.parse import urlencode

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.beacon import validate_beacon
from streams.ingest.formats import Context, FormatError, parse_body, to_canonical
from tests.ingest.formats.helpers import RECEIVED_AT, load, query, raw

CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "application/x-ndjson", "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded", "", "application/octet-stream", "application/vnd.api+json", "image/png",
    "application/x-sentry-envelope",
]

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.floats(
    allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
# Python values a caller could hand over: huge ints, NaN, infinities, bytes, tuples
python_values = st.recursive(
    json_scalars | st.integers() | st.floats() | st.binary(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.tuples(children)
    | st.dictionaries(st.text(max_size=10) | st.integers(), children, max_size=4),
    max_leaves=20,
)

# Every item of every fixture: real shapes, so damage reaches deep into the adapters.
REAL_ITEMS = (
    load("webvitals_v5_batch.json") + load("webvitals_v4_batch.json") + load("webvitals_v6_softnav.json")
    + [load(name) for name in ("webvitals_envelope.json", "snippet_envelope.json", "webvitals_v5_single.json",
                               "otel_logs.json", "otel_semconv_body.json")]
    + [query("boomerang_get.query")]
    + parse_body(raw("datadog_batch.ndjson"), "")
    + parse_body(raw("boomerang_pageload.form"), "application/x-www-form-urlencoded")
    + load("canonical.json")
)

CAPTURES = Path(__file__).resolve().parents[2] / "sdks" / "captures"


def _captured_bodies(config):
    """A recorded SDK's request bodies as the endpoint reads them (inflated), with their content types."""
    for request in json.loads((CAPTURES / f"{config}.json").read_text()):
        body = base64.b64decode(request["body_b64"])
        if request["headers"].get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        yield body, request["headers"].get("content-type", "")


SDK_BODIES = [pair for config in ("faro", "sentry", "elastic") for pair in _captured_bodies(config)]
# Every item the Faro, Sentry and Elastic SDKs sent (Elastic's in body order, metadata first).
SDK_ITEMS = [item for body, content_type in SDK_BODIES for item in parse_body(body, content_type)]


def _paths(obj, prefix=()):
    """Every place in a JSON value, as a path of keys and indexes."""
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, prefix + (i,))


@st.composite
def damaged_items(draw, pool=REAL_ITEMS):
    """A real item with a few of its values replaced by arbitrary ones (strings for params)."""
    item = copy.deepcopy(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(item) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = item
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and all(type(v) is str for v in parent.values()) and draw(st.booleans()):
            parent[path[-1]] = draw(st.text(max_size=12) | st.sampled_from(["", "-1", "1e999", "NaN", "~(~(n~2))"]))
        else:
            parent[path[-1]] = draw(json_values | python_values)
    return item


contexts = st.builds(
    Context,
    received_at=st.integers(1_000_000_000_000, 9_999_999_999_999),
    app=st.none() | st.text(max_size=8),
    release=st.none() | st.text(max_size=8),
    country=st.none() | st.sampled_from(["DE", "US"]),
)


def check(items, ctx):
    beacons, rejects = to_canonical(items, ctx)
    for beacon in beacons:
        assert validate_beacon(beacon)[1] is None, beacon
        assert beacon["ts"] == ctx.received_at
        page = beacon.get("page")
        assert page is None or ("?" not in page and "#" not in page)
    for index, reason in rejects:
        assert 0 <= index < len(items) and type(reason) is str and reason
        assert "internal error" not in reason, reason
    return beacons, rejects


@SETTINGS
@given(body=st.binary(max_size=300), content_type=st.sampled_from(CONTENT_TYPES))
def test_parse_body_on_any_bytes_returns_items_or_raises_format_error(body, content_type):
    try:
        items = parse_body(body, content_type)
    except FormatError as exc:
        assert str(exc)
    else:
        assert isinstance(items, list)


@SETTINGS
@given(values=st.lists(json_values, max_size=4), content_type=st.sampled_from(CONTENT_TYPES),
       joiner=st.sampled_from([b"\n", b"\r\n", b" ", b"", b"\n\n"]), noise=st.binary(max_size=3))
def test_parse_body_on_json_like_bodies_returns_items_or_raises_format_error(values, content_type, joiner, noise):
    body = joiner.join(orjson.dumps(v) for v in values) + noise
    try:
        items = parse_body(body, content_type)
    except FormatError:
        return
    assert isinstance(items, list)
    check(items, Context(RECEIVED_AT, app="a", release="r"))


@SETTINGS
@given(value=json_values.filter(lambda v: isinstance(v, (dict, list))))
def test_a_json_document_round_trips(value):
    assert parse_body(orjson.dumps(value), "application/json") == (value if isinstance(value, list) else [value])


@SETTINGS
@given(objects=st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), min_size=1, max_size=5))
def test_ndjson_round_trips(objects):
    body = b"\n".join(orjson.dumps(o) for o in objects) + b"\n"
    assert parse_body(body, "application/x-ndjson") == objects


@SETTINGS
@given(params=st.dictionaries(st.text(max_size=8), st.text(max_size=12), min_size=1, max_size=6))
def test_form_params_round_trip(params):
    assert parse_body(urlencode(params).encode(), "application/x-www-form-urlencoded") == [params]


@SETTINGS
@given(items=st.lists(json_values | python_values, max_size=6), ctx=contexts)
def test_to_canonical_never_raises_and_returns_only_valid_beacons(items, ctx):
    check(items, ctx)


@SETTINGS
@given(items=st.lists(damaged_items() | st.sampled_from(REAL_ITEMS), min_size=1, max_size=6), ctx=contexts)
def test_damaged_real_payloads_never_raise_and_give_only_valid_beacons(items, ctx):
    check(items, ctx)


@SETTINGS
@given(items=st.lists(st.sampled_from(REAL_ITEMS), min_size=1, max_size=8))
def test_undamaged_real_payloads_only_lose_what_is_not_a_page_view(items):
    beacons, rejects = check(copy.deepcopy(items), Context(RECEIVED_AT, app="a", release="r"))
    allowed = ("Datadog RUM: type: 'action'", "Datadog RUM: session.type: 'synthetics'")
    assert all(reason.startswith(allowed) for _, reason in rejects), rejects
    page_views = [item for item in items if not _datadog_non_user_or_action(item)]
    assert bool(beacons) == bool(page_views)


def _datadog_non_user_or_action(item):
    session = item.get("session")
    return "_dd" in item and (item["type"] == "action" or isinstance(session, dict) and session["type"] == "synthetics")


@SETTINGS
@given(items=st.lists(damaged_items(SDK_ITEMS) | st.sampled_from(SDK_ITEMS), min_size=1, max_size=8), ctx=contexts)
def test_damaged_sdk_payloads_never_raise_and_give_only_valid_beacons(items, ctx):
    check(items, ctx)


@SETTINGS
@given(index=st.integers(0, len(SDK_BODIES) - 1), cut=st.integers(0, 2000), noise=st.binary(max_size=6),
       at=st.integers(0, 50_000), content_type=st.sampled_from(CONTENT_TYPES))
def test_damaged_sdk_bodies_parse_or_raise_format_error_and_convert_safely(index, cut, noise, at, content_type):
    """A recorded body cut short, or with bytes spliced in (an envelope's framing broken)."""
    body, _ = SDK_BODIES[index]
    at %= len(body) + 1
    body = body[: len(body) - cut % (len(body) + 1)] if cut % 2 else body[:at] + noise + body[at:]
    try:
        items = parse_body(body, content_type)
    except FormatError as exc:
        assert str(exc)
        return
    assert isinstance(items, list)
    check(items, Context(RECEIVED_AT, app="a", release="r"))


envelope_payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@SETTINGS
@given(header=st.fixed_dictionaries({"sent_at": st.text(max_size=12)}, optional={"dsn": st.text(max_size=12)}),
       parts=st.lists(st.tuples(st.sampled_from(["event", "span", "session", "client_report"]), envelope_payloads,
                                st.booleans(), st.booleans()), max_size=5),
       content_type=st.sampled_from(["application/x-sentry-envelope", "text/plain;charset=UTF-8", ""]))
def test_an_envelope_round_trips(header, parts, content_type):
    """Items framed with a length (their payload pretty-printed, newlines in it) or without."""
    lines = [orjson.dumps(header)]
    for kind, payload, with_length, crlf in parts:
        raw_payload = orjson.dumps(payload, option=orjson.OPT_INDENT_2 if with_length else 0)
        item_header = {"type": kind, **({"length": len(raw_payload)} if with_length else {})}
        lines += [orjson.dumps(item_header) + (b"\r" if crlf else b""), raw_payload]
    body = b"\n".join(lines)
    if not parts and content_type != "application/x-sentry-envelope":
        return  # a lone header line is sniffed as JSON, not as an envelope
    items = parse_body(body, content_type)
    assert [(i["sentry_envelope"], i["sentry_item"]["type"], i["payload"]) for i in items] == [
        (header, kind, payload) for kind, payload, _, _ in parts]
    check(items, Context(RECEIVED_AT, app="a", release="r"))


# Arbitrary values in the places the three SDK adapters read, so each path meets odd shapes.
sdk_shaped_items = (
    st.builds(lambda kind, payload, header: {"sentry_envelope": header, "sentry_item": {"type": kind}, "payload": payload},
              st.sampled_from(["event", "span", "transaction", "session"]), json_values | python_values,
              json_values)
    | st.builds(lambda key, event: {key: event}, st.sampled_from(["metadata", "transaction", "error", "span", "m", "x", "e"]),
                st.dictionaries(st.sampled_from(["id", "type", "t", "marks", "k", "experience", "transaction_id", "xid",
                                                 "transaction", "x", "service", "se", "context", "session"]),
                                json_values | python_values, max_size=6))
    | st.builds(lambda meta, measurements, exceptions: {"meta": meta, "measurements": measurements, "exceptions": exceptions},
                st.dictionaries(st.sampled_from(["app", "session", "page", "browser"]), json_values, max_size=4),
                json_values | st.lists(st.fixed_dictionaries({"type": st.just("web-vitals"), "values": json_values,
                                                              "context": json_values})),
                json_values)
)


@SETTINGS
@given(items=st.lists(sdk_shaped_items, min_size=1, max_size=6), ctx=contexts)
def test_sdk_shaped_items_never_raise_and_give_only_valid_beacons(items, ctx):
    check(items, ctx)
