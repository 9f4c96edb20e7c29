"""The canonical fast path gives exactly the general path's beacons, or declines.

The general path is ``parse_body`` then ``to_canonical``; the fast path
(:mod:`streams.ingest.formats.fast`) must never accept what it refuses, refuse what it accepts, or
stamp a field differently. Hypothesis builds canonical-looking bodies with every kind of
damage the general path knows about, and some it does not.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingest.formats import Context, FormatError, parse_body, to_canonical
from streams.ingest.formats import fast as fast_module
from streams.ingest.formats.fast import canonical_items, encode
from tests.ingest.formats.helpers import BARE, CTX, RECEIVED_AT

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def general(body: bytes, content_type: str, ctx: Context) -> tuple[list[dict], int] | None:
    """The general path's beacons and reject count (None: the body does not parse)."""
    try:
        items = parse_body(body, content_type)
    except FormatError:
        return None
    beacons, rejects = to_canonical(items, ctx)
    return beacons, len(rejects)


def fast(body: bytes, content_type: str, ctx: Context) -> list[dict] | None:
    items = canonical_items(body, content_type, ctx)
    return None if items is None else [orjson.loads(encode(item)) for item in items]


def agree(body: bytes, content_type: str, ctx: Context) -> bool:
    """Assert the paths agree; True when the fast path took the body."""
    taken = fast(body, content_type, ctx)
    if taken is None:
        return False
    expected = general(body, content_type, ctx)
    assert expected is not None, f"fast path took a body the general path cannot parse: {body[:200]!r}"
    beacons, rejects = expected
    assert rejects == 0, f"fast path took a body with refused items: {body[:200]!r}"
    assert taken == beacons
    return True


def valid_beacon(i: int = 0, **fields) -> dict:
    beacon = {"id": f"pv-{i}", "ts": 1_763_855_999_000, "app": "shop-web", "release": "r2", "session": "s-1",
              "page": "/p/42", "device": "mobile", "metrics": {"LCP": 2400.0, "CLS": 0.01, "INP": 120},
              "errors": 0}
    beacon.update(fields)
    return {k: v for k, v in beacon.items() if v is not ...}


def dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()  # orjson refuses ints beyond 64 bits


def ndjson(objs: list) -> bytes:
    return b"\n".join(dumps(o) for o in objs)


def test_valid_ndjson_takes_the_fast_path_and_matches() -> None:
    body = ndjson([valid_beacon(i) for i in range(10)])
    assert agree(body, "application/x-ndjson", BARE)
    assert agree(body.replace(b"\n", b"\r\n") + b"\n\n", "application/x-ndjson", CTX)


@pytest.mark.parametrize("body", [
    orjson.dumps([valid_beacon(0), valid_beacon(1, device="desktop", cohort="")]),
    orjson.dumps(valid_beacon(0, page="https://shop.example/p/1?coupon=X#top", country="FR")),
])
def test_valid_json_takes_the_fast_path_and_matches(body: bytes) -> None:
    assert agree(body, "application/json; charset=utf-8", CTX)
    assert agree(body, "application/json", BARE)


@pytest.mark.parametrize("item", [
    {"name": "LCP", "value": 2140.3, "id": "v5-1"},                      # web-vitals metric
    {"app": "a", "release": "r", "metrics": [{"name": "LCP", "value": 1}]},  # the snippet's envelope
    {"type": "view", "_dd": {}, "metrics": {}},                          # Datadog
    {"resourceLogs": [], "metrics": {}},                                 # OTLP
    {"app": "a", "release": "r"},                                        # canonical, no metrics: general path
    valid_beacon(metrics={"LCP": -1}),                                   # refused
    valid_beacon(metrics={"FID": 12}),                                   # unknown metric
    valid_beacon(metrics={"LCP": True}),
    valid_beacon(device="phone"),
    valid_beacon(app="  "),                                              # blank, and no app in the context
    valid_beacon(release=None),
    valid_beacon(errors=-1),
    valid_beacon(errors=True),
    valid_beacon(session=7),
    valid_beacon(cohort="x" * 513),
    # fields the general path drops when malformed: the general path does that
    valid_beacon(id=""),
    valid_beacon(id=7),
    valid_beacon(id="x" * 513),
    valid_beacon(browser="b" * 600),
    valid_beacon(country=""),
    valid_beacon(country="x" * 65),
    valid_beacon(part="yes"),  # the general path words the refusal
    valid_beacon(part=1),
])
def test_declines_what_is_not_plainly_valid_canonical(item: dict) -> None:
    assert fast(orjson.dumps(item), "application/json", BARE) is None
    assert fast(ndjson([valid_beacon(1), item]), "application/x-ndjson", BARE) is None


@pytest.mark.parametrize("body, content_type", [
    (b'{"app":"a","release":"r","metrics":{"LCP":1,"LCP":-1}}', "application/json"),  # a repeated key
    (b'{"app":"a","release":"r","metrics":{}} x', "application/x-ndjson"),
    (b'{"app":"a","release":"r","metrics":{}', "application/x-ndjson"),
    (b'{"a":"x\n y"},{"b":1}', "application/x-ndjson"),  # broken lines that would join into valid JSON
    (b'\xef\xbb\xbf{"app":"a","release":"r","metrics":{}}', "application/json"),  # BOM: the general path
    (b"", "application/x-ndjson"),
    (b"[]", "application/json"),
    (b'{"app":"a","release":"r","metrics":{}}', "text/plain"),  # sniffed types: the general path
    (b"app=a&release=r", "application/x-www-form-urlencoded"),
])
def test_declines_bodies_the_general_path_must_word(body: bytes, content_type: str) -> None:
    assert fast(body, content_type, BARE) is None


def test_stamps_like_the_general_path() -> None:
    """Receive time, client time, context fallbacks, privacy: field for field."""
    item = valid_beacon(ts=1_763_855_999_000.0, app="", release=None, page="//cdn.example/x?y#z",
                        id=..., browser="", country="ZZ", ip="203.0.113.9", extra={"x": 1})
    [beacon] = fast(orjson.dumps(item), "application/json", CTX)
    assert beacon["ts"] == RECEIVED_AT and beacon["client_ts"] == 1_763_855_999_000
    assert (beacon["app"], beacon["release"], beacon["country"]) == ("ctx-app", "ctx-release", "DE")
    assert beacon["page"] == "/x" and "id" not in beacon and beacon["browser"] == ""
    assert "ip" not in beacon and "extra" not in beacon
    assert agree(orjson.dumps(item), "application/json", CTX)


HEADERS_CTX = Context(received_at=RECEIVED_AT, app="ctx-app", release="ctx-release", device="tablet",
                      browser="Samsung Internet")


@pytest.mark.parametrize("fields, device, browser", [
    ({"device": ..., "browser": ...}, "tablet", "Samsung Internet"),  # the payload names neither
    ({"device": None, "browser": None}, "tablet", "Samsung Internet"),
    ({"device": "", "browser": ""}, "tablet", "Samsung Internet"),  # blank: none
    ({"browser": "  "}, "mobile", "Samsung Internet"),
    ({"device": "desktop", "browser": "Firefox"}, "desktop", "Firefox"),  # the payload's win
    ({"device": "unknown", "browser": "Chrome"}, "unknown", "Chrome"),
])
def test_the_requests_device_and_browser_fill_only_what_the_payload_lacks(fields, device, browser) -> None:
    body = ndjson([valid_beacon(0, **fields), valid_beacon(1)])
    first, second = fast(body, "application/x-ndjson", HEADERS_CTX)
    assert (first.get("device"), first.get("browser")) == (device, browser)
    assert (second["device"], second["browser"]) == ("mobile", "Samsung Internet")  # valid_beacon is a phone's
    assert agree(body, "application/x-ndjson", HEADERS_CTX)


def test_without_the_requests_device_and_browser_nothing_is_filled() -> None:
    [beacon] = fast(ndjson([valid_beacon(0, device="", browser=...)]), "application/x-ndjson", CTX)
    assert beacon["device"] == "" and "browser" not in beacon


PAGE_EDGES = ["/p", "/", "/a//b", "//h", "//h/p", "/p?", "/p?q=1", "/p#", "/p#f", "/p ", "/p\t", "/p\u3000",
              " /p", "/" + "x" * 511, "/" + "x" * 512, "https://a.example//b"]
TS_EDGES = [999_999_999_999, 1_000_000_000_000, 9_999_999_999_999, 10_000_000_000_000, 1_763_855_999_000.0,
            1_763_855_999_000.5, True, "1763855999000"]


@pytest.mark.parametrize("page", PAGE_EDGES)
def test_pages_at_the_edges_of_the_shortcut_agree(page: str) -> None:
    """_stamp keeps a bare path as it is without page_path(); at its edges it must not differ."""
    assert agree(orjson.dumps(valid_beacon(0, page=page)), "application/json", CTX)


def test_pages_seen_before_are_stamped_as_the_first_time(monkeypatch) -> None:
    """_stamp remembers the pages it found bare; seeing one again, or a full memory, changes
    no answer, and a page that had to be cut is never remembered."""
    bodies = [orjson.dumps(valid_beacon(0, page=page)) for page in PAGE_EDGES]
    monkeypatch.setattr(fast_module, "_BARE_PAGES", set())
    first = [fast(body, "application/json", CTX) for body in bodies]
    assert "/p" in fast_module._BARE_PAGES and "/a//b" in fast_module._BARE_PAGES
    assert not {"//h", "/p?", "/p ", " /p"} & fast_module._BARE_PAGES
    assert [fast(body, "application/json", CTX) for body in bodies] == first  # remembered
    monkeypatch.setattr(fast_module, "_BARE_PAGES", set())
    monkeypatch.setattr(fast_module, "_BARE_PAGES_MAX", 0)  # full: nothing is remembered
    assert [fast(body, "application/json", CTX) for body in bodies] == first
    assert not fast_module._BARE_PAGES


NAME_EDGES = ["shop-web", "", " ", "x" * 128, "x" * 129, "a\x07b", "a\u0085b", "caf\u00e9", None, ...]


def test_names_seen_before_are_stamped_as_the_first_time(monkeypatch) -> None:
    """_stamp remembers the app and release names it found good; seeing one again, or a
    full memory, changes no answer, and a blank or refused name is never remembered (nor is
    a request's name taken in place of a blank one anything but good)."""
    bodies = [orjson.dumps(valid_beacon(0, app=app, release=release)) for app in NAME_EDGES
              for release in NAME_EDGES]
    contexts = [CTX, Context(received_at=RECEIVED_AT), Context(received_at=RECEIVED_AT, app="a\x07b", release=" ")]
    monkeypatch.setattr(fast_module, "_GOOD_NAMES", set())
    first = [fast(body, "application/json", ctx) for ctx in contexts for body in bodies]
    assert sum(answer is not None for answer in first) > 10
    assert {"shop-web", "x" * 128, "caf\u00e9", "ctx-app", "ctx-release"} <= fast_module._GOOD_NAMES
    assert not {"", " ", "x" * 129, "a\x07b", "a\u0085b", None} & fast_module._GOOD_NAMES
    assert [fast(body, "application/json", ctx) for ctx in contexts for body in bodies] == first  # remembered
    for ctx in contexts:
        for body in bodies:
            agree(body, "application/json", ctx)
    monkeypatch.setattr(fast_module, "_GOOD_NAMES", set())
    monkeypatch.setattr(fast_module, "_GOOD_NAMES_MAX", 0)  # full: nothing is remembered
    assert [fast(body, "application/json", ctx) for ctx in contexts for body in bodies] == first
    assert not fast_module._GOOD_NAMES


@pytest.mark.parametrize("ts", TS_EDGES)
def test_client_times_at_the_edges_of_the_shortcut_agree(ts) -> None:
    """Plausible epoch ms are kept without epoch_ms(); anything else must become what it makes."""
    assert agree(orjson.dumps(valid_beacon(0, ts=ts)), "application/json", CTX)


# -- generated bodies ------------------------------------------------------------------------

strings = st.one_of(st.text(max_size=12), st.just(""), st.just("  "), st.text(min_size=510, max_size=515),
                    st.just("\U0001F600" * 512), st.just("\U0001F600" * 513))
anything = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False,
                                                                               allow_infinity=False) | strings
metric_values = st.none() | st.booleans() | st.integers(-5, 700_000) | st.floats(-1, 700_000, allow_nan=False) \
    | st.sampled_from([0, 0.0, -0.0, 100, 100.0001, 600_000, 600_000.5, 2**64]) | strings
metric_names = st.sampled_from(["LCP", "INP", "CLS", "FCP", "TTFB", "FID", "lcp"])
field_values = {
    "id": st.text(max_size=8) | anything,
    "ts": st.integers(10**12 - 2, 10**13 + 2) | st.floats(1e12, 1e13) | anything,
    "client_ts": st.integers(10**12, 10**13) | anything,
    "app": st.sampled_from(["shop-web", "x"]) | strings | anything,
    "release": st.sampled_from(["r1", "r2"]) | strings | anything,
    "cohort": strings | anything,
    "session": strings | anything,
    # the edges of _stamp's shortcut for pages page_path() keeps as they are
    "page": st.sampled_from(["/p", "https://a.example/b?c#d", "?q", "//h", "#f", "/", "/a//b", "/p?", "/p#",
                             "/p ", "/p\u3000", " /p", "/" + "x" * 511, "/" + "x" * 512]) | st.from_regex(r"\A/.{0,6}\Z")
            | anything,
    "device": st.sampled_from(["mobile", "desktop", "tablet", "unknown", "", "phone"]) | anything,
    "country": st.sampled_from(["FR", "", "x" * 65]) | anything,
    "browser": st.sampled_from(["Chrome", "", " ", "\t"]) | anything,
    "metrics": st.dictionaries(metric_names, metric_values, max_size=4) | anything,
    "errors": st.integers(-2, 1_000_002) | anything,
    "view": st.sampled_from(["v1", "x" * 128, "x" * 129, "v\n"]) | anything,
    "part": st.booleans() | anything,
    "name": anything, "type": anything, "value": anything, "ip": anything,
}


@st.composite
def items(draw) -> dict:
    """A valid beacon with some fields replaced, dropped or added."""
    item = valid_beacon(draw(st.integers(0, 5)))
    for name in draw(st.lists(st.sampled_from(sorted(field_values)), max_size=4, unique=True)):
        if draw(st.booleans()) and name in item:
            del item[name]
        else:
            item[name] = draw(field_values[name])
    return item


contexts = st.builds(Context, received_at=st.just(RECEIVED_AT),
                     app=st.none() | st.sampled_from(["ctx-app", "", " "]),
                     release=st.none() | st.just("ctx-release"),
                     country=st.none() | st.just("DE"),
                     # the request's User-Agent and client hints (streams/ingest/useragent.py)
                     device=st.none() | st.sampled_from(["mobile", "tablet", "desktop"]),
                     browser=st.none() | st.sampled_from(["Chrome", "Samsung Internet"]))


@SETTINGS
@given(st.lists(items(), min_size=1, max_size=6), contexts)
def test_ndjson_bodies_agree(objs: list, ctx: Context) -> None:
    agree(ndjson(objs), "application/x-ndjson", ctx)


@SETTINGS
@given(st.lists(items(), min_size=1, max_size=6), contexts)
def test_json_array_bodies_agree(objs: list, ctx: Context) -> None:
    agree(dumps(objs), "application/json", ctx)


@SETTINGS
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_agree_or_decline(body: bytes) -> None:
    agree(body, "application/x-ndjson", BARE)
    agree(body, "application/json", BARE)


def test_generated_bodies_do_take_the_fast_path() -> None:
    """The properties above are not vacuous: plenty of generated valid bodies go fast."""
    taken = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.lists(items(), min_size=1, max_size=3), contexts)
    def count(objs: list, ctx: Context) -> None:
        taken.append(agree(ndjson(objs), "application/x-ndjson", ctx))

    count()
    assert sum(taken) >= 20, f"only {sum(taken)} of {len(taken)} generated bodies took the fast path"
