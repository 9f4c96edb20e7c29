"""web-vitals Metric objects (v4, v5, v6), bare and in the snippet's envelope."""

from __future__ import annotations

import copy
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.ingest.formats import Context, FormatError, to_canonical, webvitals
from streams.ingest.formats.webvitals import detect
from tests.ingest.formats import captures
from tests.ingest.formats.helpers import BARE, CTX, RECEIVED_AT, assert_valid, convert, load, raw

SENDBEACON = "text/plain;charset=UTF-8"  # what navigator.sendBeacon sends with a string


def test_v5_batch_from_sendbeacon_is_one_page_view_with_all_its_metrics():
    beacons, rejects = convert(raw("webvitals_v5_batch.json"), SENDBEACON)
    assert rejects == []
    assert beacons == [{
        "id": "v5-1732300012345-2222222222222",  # the LCP metric's id
        "ts": RECEIVED_AT,
        "app": "ctx-app",  # the metrics name no app or release: the request's
        "release": "ctx-release",
        "country": "DE",
        "metrics": {"TTFB": 412.6, "LCP": 2140.3, "INP": 232.0, "CLS": 0.043},
    }]


def test_v5_single_metric_with_the_senders_context_fields():
    beacons, rejects = convert(raw("webvitals_v5_single.json"), SENDBEACON)
    assert rejects == []
    assert beacons == [{
        "id": "v5-1732300012345-4821937465012",
        "part": True,  # one metric, not TTFB, no view: a part of the page view its TTFB counts
        "ts": RECEIVED_AT,  # the server's receive time, never the client's
        "client_ts": 1732300014512,
        "app": "ctx-app",
        "release": "web@2024.11.22-3f9c2a1",  # the payload's release wins over the request's
        "cohort": "canary",
        "session": "b1c6e2f0-7d1a-4a5e-9c3b-2f8e6d4a1b07",  # from session_id
        "page": "/product/:id",
        "country": "DE",
        "metrics": {"LCP": 2140.3},
    }]


def test_v4_batch_drops_fid_and_the_query_string_and_keeps_the_latest_client_time():
    beacons, rejects = convert(raw("webvitals_v4_batch.json"), "application/json")
    assert rejects == []
    [beacon] = beacons
    assert beacon["metrics"] == {"FCP": 1120.5, "LCP": 2480.0, "CLS": 0.0}  # no FID
    assert beacon["page"] == "/search"  # was https://shop.example/search?q=red+shoes#results
    assert beacon["id"] == "v4-1732300012345-7777777777777"
    assert beacon["client_ts"] == 1732300031000
    assert (beacon["session"], beacon["release"]) == ("5f0e8d7c", "web@2024.11.20-0aa1b2c")


def test_v6_soft_navigation_is_a_page_view_of_its_own_url():
    beacons, rejects = convert(raw("webvitals_v6_softnav.json"), "application/json")
    assert rejects == []
    assert [(b["id"], b.get("page"), b["metrics"]) for b in beacons] == [
        ("v6-1753100000000-1000000000002", None, {"TTFB": 380.2, "LCP": 1650.8, "INP": 64.0}),
        ("v6-1753100004000-2000000000002", "/cart", {"LCP": 310.4, "CLS": 0.002}),
    ]


def test_a_bfcache_restore_starts_a_new_page_view_and_a_repeated_id_keeps_its_largest_value():
    beacons, rejects = convert(raw("webvitals_bfcache.json"), "application/json")
    assert rejects == []
    assert [(b["id"], b["metrics"]) for b in beacons] == [
        ("v5-1732300100000-1000000000003", {"TTFB": 512.0, "FCP": 980.4, "LCP": 1890.0, "CLS": 0.05}),
        ("v5-1732300160000-2000000000003", {"TTFB": 0.0, "FCP": 16.7, "LCP": 16.7}),
    ]


def test_the_projects_snippet_envelope_exactly_as_it_sends_it():
    # streams/ingest/web/rumgate-snippet.js: {"id", ...JSON.stringify({view, app, release, session,
    # page, device, errors, metrics})} through navigator.sendBeacon, so text/plain
    beacons, rejects = convert(raw("snippet_envelope.json"), SENDBEACON, ctx=BARE)
    assert rejects == []
    assert beacons == [{
        "id": "c05e2b7a91d84f3e6a0b5c1d9e8f7a62",  # this send's: the endpoint drops only a retry of it
        "view": "3f1c9a0e5b7d42c8a6e1f0b9d2c4e8a7",  # the page view's: every send of it has it
        "ts": RECEIVED_AT,
        "app": "shop-web",
        "release": "2026.11.23-abc",
        "session": "9f2c4e1a7b3d45e6a8c0b1d2e3f4a5b6",
        "page": "/product/:id",
        "device": "tablet",
        "metrics": {"TTFB": 350.2, "FCP": 1100.4, "LCP": 2480.0, "INP": 120.0, "CLS": 0.02},
        "errors": 1,
    }]


def test_envelope_is_one_beacon_with_the_envelope_id_and_context():
    beacons, rejects = convert(raw("webvitals_envelope.json"), "application/json")
    assert rejects == []
    assert beacons == [{
        "id": "pv-0c9a7e51-2b3d",
        "ts": RECEIVED_AT,
        "client_ts": 1732300031000,
        "app": "shop-web",
        "release": "web@2024.11.22-3f9c2a1",
        "session": "b1c6e2f0-7d1a-4a5e-9c3b-2f8e6d4a1b07",
        "page": "/p/42",
        "device": "mobile",
        "country": "DE",
        "browser": "Safari",  # from user_agent
        # CLS was reported twice under one id: the larger (later) value
        "metrics": {"TTFB": 412.6, "FCP": 1120.5, "LCP": 2140.3, "CLS": 0.043, "INP": 232.0},
    }]


def test_envelope_without_id_takes_the_lcp_id_and_an_empty_one_is_a_page_view():
    envelope = load("webvitals_envelope.json")
    del envelope["id"]
    beacons, _ = to_canonical([envelope, {"app": "a", "release": "r", "metrics": []}], CTX)
    assert beacons[0]["id"] == "v5-1732300012345-2222222222222"
    assert beacons[1]["metrics"] == {} and "id" not in beacons[1]


def test_envelope_with_a_bad_metric_is_reported_whole():
    envelope = load("webvitals_envelope.json")
    envelope["metrics"][1]["value"] = "1120.5"
    envelope["metrics"].append({"name": "LCP"})
    assert to_canonical([envelope], CTX) == ([], [(0, "web-vitals: metrics[1].value: must be a number, got str")])
    envelope["metrics"][1]["value"] = 1120.5
    assert to_canonical([envelope], CTX)[1] == [
        (0, "web-vitals: metrics[6]: not a web-vitals metric (needs a name among CLS, FCP, FID, INP, LCP, TTFB and a value)")]


def test_id_is_stable_for_a_resent_or_reordered_batch():
    batch = load("webvitals_v5_batch.json")
    first, _ = to_canonical(batch, CTX)
    again, _ = to_canonical(list(reversed(copy.deepcopy(batch))), CTX)
    assert first[0]["id"] == again[0]["id"] == "v5-1732300012345-2222222222222"
    without_lcp = [m for m in batch if m["name"] != "LCP"]
    assert to_canonical(without_lcp, CTX)[0][0]["id"] == "v5-1732300012345-1111111111111"  # the first


def test_metrics_of_different_sessions_or_pages_are_different_page_views():
    lcp = {"name": "LCP", "value": 2000.0, "id": "v5-1-1", "session": "s1", "page": "/a"}
    cls = {"name": "CLS", "value": 0.1, "id": "v5-1-2", "session": "s1", "page": "/a?x=1"}
    other = {"name": "CLS", "value": 0.2, "id": "v5-2-2", "session": "s2", "page": "/a"}
    beacons, _ = to_canonical([lcp, other, cls], CTX)
    assert [(b["session"], b["metrics"]) for b in beacons] == [
        ("s1", {"LCP": 2000.0, "CLS": 0.1}),  # /a?x=1 is the page /a
        ("s2", {"CLS": 0.2}),
    ]


def test_a_second_instance_of_a_metric_name_is_another_page_view():
    metrics = [{"name": "LCP", "value": 1000, "id": "v5-1-1"}, {"name": "LCP", "value": 900, "id": "v5-9-1"}]
    beacons, _ = to_canonical(metrics, CTX)
    assert [b["metrics"] for b in beacons] == [{"LCP": 1000.0}, {"LCP": 900.0}]


def test_a_bad_bare_metric_is_reported_alone_and_its_page_still_counts():
    batch = load("webvitals_v5_batch.json")
    batch[2]["value"] = -5
    batch[3]["value"] = 101.0  # CLS above its limit
    batch.insert(1, {"name": "lcp", "value": None})
    beacons, rejects = to_canonical(batch, CTX)
    assert rejects == [
        (1, "web-vitals: value: must be a number, got null"),
        (3, "web-vitals: value: must be >= 0, got -5"),
        (4, "web-vitals: value: 101.0 is above the CLS limit 100"),
    ]
    assert beacons[0]["metrics"] == {"TTFB": 412.6, "LCP": 2140.3}


def test_context_fields_must_be_strings():
    metric = {"name": "LCP", "value": 1.0, "release": 7}
    assert to_canonical([metric], CTX)[1] == [(0, "web-vitals: release: must be a string, got int")]


def test_without_release_anywhere_every_metric_of_the_page_is_reported():
    beacons, rejects = to_canonical(load("webvitals_v5_batch.json"), BARE)
    assert beacons == []
    assert rejects == [(i, "web-vitals: app: missing") for i in range(4)]
    beacons, rejects = to_canonical(load("webvitals_v5_batch.json"), Context(RECEIVED_AT, app="a"))
    assert rejects == [(i, "web-vitals: release: missing") for i in range(4)]


def test_lower_case_names_and_device_words_are_read():
    metric = {"name": "inp", "value": 48, "device": "Phone", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    beacons, _ = to_canonical([metric], CTX)
    assert beacons[0]["metrics"] == {"INP": 48.0} and beacons[0]["device"] == "mobile"


@pytest.mark.parametrize("item, expected", [
    ({"name": "LCP", "value": 1}, True),
    ({"name": "ttfb", "value": None}, True),
    ({"metrics": []}, True),
    ({"name": "LCP"}, False),  # no value
    ({"name": "XYZ", "value": 1}, False),
    ({"name": ["LCP"], "value": 1}, False),
    ({"metrics": {"LCP": 1}}, False),  # canonical
    ("LCP", False),
], ids=repr)
def test_detect(item, expected):
    assert detect(item) is expected


def test_bare_metrics_group_even_when_other_formats_sit_between_them():
    batch = load("webvitals_v5_batch.json")
    canonical = {"app": "a", "release": "r", "metrics": {"LCP": 1.0}}
    items = batch[:2] + [canonical] + batch[2:]
    beacons, rejects = to_canonical(orjson.loads(orjson.dumps(items)), CTX)
    assert rejects == []
    assert [len(b["metrics"]) for b in beacons] == [4, 1]  # ordered by first item
    assert_valid(beacons)


_CONTEXT_VALUES = st.none() | st.text(max_size=12) | st.integers() | st.sampled_from(
    ["mobile", "Phone", "/p/1?q=x", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", " "])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["app", "release", "cohort", "page", "browser", "session", "session_id",
                                        "user_agent", "device", "rating", "delta", "navigationURL"]),
                       _CONTEXT_VALUES, max_size=4))
def test_a_metric_reads_its_context_only_when_it_has_one(extra: dict) -> None:
    """read_metric skips read_context for metrics without context keys: the same Metric, or
    the same error, as reading it always."""
    obj = {"name": "LCP", "value": 2480, "id": "v6-3", **extra}
    try:
        expected = webvitals.read_context(obj, "m.")
    except FormatError as exc:
        with pytest.raises(FormatError, match=re.escape(str(exc))):
            webvitals.read_metric(obj, "m.")
        return
    soft = webvitals.page_path(obj.get("navigationURL"))
    if "page" not in expected and soft:
        expected["page"] = soft
    assert webvitals.read_metric(obj, "m.").context == tuple(sorted(expected.items()))


@pytest.mark.parametrize("key, value", [
    ("app", "shop-web"), ("release", "r2"), ("cohort", "canary"), ("page", "/p/1?q=x"), ("browser", "Firefox"),
    ("session", "s-1"), ("session_id", "s-2"), ("device", "Phone"), ("view", "pv-1"),
    ("user_agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"),
])
def test_each_context_field_of_a_metric_is_read(key: str, value: str) -> None:
    metric = webvitals.read_metric({"name": "LCP", "value": 2480, key: value})
    assert metric.context and metric.context == tuple(sorted(webvitals.read_context({key: value}).items()))


def test_a_snippet_resend_is_another_beacon_of_the_same_view():
    """A later hide sends the page view again if it changed: a new id, the same view."""
    first = load("snippet_envelope.json")
    again = {**copy.deepcopy(first), "id": "5d9e0c3b2a714f68b1e0d2c3a4f5e6d7", "errors": 2}
    again["metrics"][4]["value"] = 0.3  # CLS grew after the first hide
    beacons, rejects = to_canonical([first, again], BARE)
    assert rejects == []
    assert [(b["id"], b["view"]) for b in beacons] == [
        ("c05e2b7a91d84f3e6a0b5c1d9e8f7a62", "3f1c9a0e5b7d42c8a6e1f0b9d2c4e8a7"),
        ("5d9e0c3b2a714f68b1e0d2c3a4f5e6d7", "3f1c9a0e5b7d42c8a6e1f0b9d2c4e8a7")]


def test_an_envelope_view_must_be_a_string():
    envelope = {**load("snippet_envelope.json"), "view": 42}
    assert to_canonical([envelope], BARE) == ([], [(0, "web-vitals: view: must be a string, got int")])


# The real library (web-vitals 6.2.3, tests/sdks/captures): one page load each.

def test_the_readmes_send_per_metric_gives_five_page_views_nothing_ties():
    """sendToAnalytics: {name, value, id, page_location}, one sendBeacon per metric. No field
    is shared by the page's metrics: each request is a page view of its own, without a view."""
    requests = captures.requests("web-vitals-each")
    bodies = [orjson.loads(r["body"]) for r in requests]
    assert [sorted(b) for b in bodies] == [["id", "name", "page_location", "value"]] * 5
    # Metric ids: v6-<when that metric's observer started>-<random>; even the time differs (CLS)
    assert len({b["id"].split("-")[1] for b in bodies}) == 2
    beacons = [b for per_request in captures.beacons("web-vitals-each") for b in per_request]
    assert [(sorted(b["metrics"]), "view" in b) for b in beacons] == [
        (["FCP"], False), (["TTFB"], False), (["LCP"], False), (["INP"], False), (["CLS"], False)]
    assert len({b["id"] for b in beacons}) == 5
    assert {(b["app"], b["release"]) for b in beacons} == {("shop-web", "2026.11.23-abc")}  # ?app=, ?release=


def test_the_readmes_batch_is_one_page_view_and_its_navigation_id_is_a_counter():
    [request] = captures.requests("web-vitals-batched")
    metrics = orjson.loads(request["body"])
    # Chrome's PerformanceEntry.navigationId: a small per-document number, not a page-view id
    assert {m["navigationId"] for m in metrics} == {258}
    [[beacon]] = captures.beacons("web-vitals-batched")
    assert "view" not in beacon and beacon["id"] == next(m["id"] for m in metrics if m["name"] == "LCP")
    assert sorted(beacon["metrics"]) == ["CLS", "FCP", "INP", "LCP", "TTFB"]


def test_with_a_view_of_the_senders_the_per_metric_stream_and_the_batch_are_the_same_view():
    """The tie a sender can add: its own page-view id as ``view`` on every metric. Then one
    sendBeacon per metric and the README's batch give the same metrics for the same view."""
    [request] = captures.requests("web-vitals-batched")
    metrics = [{**m, "view": "pv-1"} for m in orjson.loads(request["body"])]
    ctx = captures.context(request)
    [batched] = to_canonical(metrics, ctx)[0]
    each = [b for m in metrics for b in to_canonical([m], ctx)[0]]
    assert_valid([batched, *each])
    assert {b["view"] for b in each} == {batched["view"]} == {"pv-1"}
    first: dict[str, float] = {}  # stage 1: each metric's first value per view
    for beacon in each:
        for name, value in beacon["metrics"].items():
            first.setdefault(name, value)
    assert first == batched["metrics"]
    # without it the same five requests are five page views
    plain = orjson.loads(request["body"])
    assert [("view" in b) for m in plain for b in to_canonical([m], ctx)[0]] == [False] * 5
