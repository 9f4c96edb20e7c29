"""Boomerang beacons: form POST bodies and GET query strings."""

from __future__ import annotations

import pytest

from streams.ingest.formats import Context, to_canonical
from streams.ingest.formats.boomerang import detect, error_count
from tests.ingest.formats import captures
from tests.ingest.formats.helpers import BARE, CTX, RECEIVED_AT, convert, query, raw

FORM = "application/x-www-form-urlencoded"


def test_page_load_beacon_field_by_field():
    beacons, rejects = convert(raw("boomerang_pageload.form"), FORM)
    assert rejects == []
    assert beacons == [{
        "id": "boomr-kq3v9x1a-1",  # pid and beacon number n
        "view": "kq3v9x1a",  # pid: the page's other beacons have it too
        "ts": RECEIVED_AT,
        "client_ts": 1732300012345,  # rt.tstart
        "app": "ctx-app",  # no app var: the request's
        "release": "web@2024.11.22-3f9c2a1",  # the rel var
        "session": "8c7e1d2f-3b4a-4c5d-9e6f-0a1b2c3d4e5f-1732300000",  # rt.si
        "page": "/p/42",  # u without ?utm_source=mail#reviews
        "device": "mobile",  # ua.plt=iPhone
        "country": "DE",
        "metrics": {
            "LCP": 2140.3,  # pt.lcp
            "FCP": 1120.5,  # pt.fcp
            "CLS": 0.043,  # c.cls: the shifts until the page-load beacon
            "INP": 232.0,  # et.inp: the whole page's (normally on the unload beacon)
            "TTFB": 413.0,  # nt_res_st - nt_nav_st
        },
        "errors": 4,  # err: one error seen 3 times, one seen once
    }]


def test_unload_beacon_carries_the_final_inp_of_the_page_view():
    beacons, rejects = convert(raw("boomerang_unload.form"), FORM)
    assert rejects == []
    [beacon] = beacons
    assert (beacon["id"], beacon["view"]) == ("boomr-kq3v9x1a-2", "kq3v9x1a")
    assert beacon["metrics"] == {"INP": 232.0}  # c.cls=0.012 is the shifts since the last beacon only
    assert beacon["device"] == "desktop"  # Win32
    assert "client_ts" not in beacon and "errors" not in beacon


def test_get_beacon_from_the_query_string():
    beacons, rejects = convert(b"", "", query=query("boomerang_get.query"))
    assert rejects == []
    assert beacons == [{
        "id": "boomr-a81kd0qz-1",
        "view": "a81kd0qz",
        "ts": RECEIVED_AT,
        "client_ts": 1732300020000,
        "app": "ctx-app",  # the request's app wins over mPulse's h.key
        "release": "ctx-release",
        "session": "0d9e8f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a-1732299000",
        "page": "/checkout",
        "device": "desktop",  # MacIntel
        "country": "DE",
        "metrics": {"LCP": 1210.7, "FCP": 640.0, "CLS": 0.0, "TTFB": 280.0},  # TTFB: t_resp
    }]


def test_h_key_is_the_app_only_when_nothing_else_names_one():
    beacons, _ = convert(b"", "", ctx=Context(RECEIVED_AT, release="r1"), query=query("boomerang_get.query"))
    assert beacons[0]["app"] == "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
    assert to_canonical([query("boomerang_get.query")], BARE)[1] == [(0, "Boomerang: release: missing")]


def test_spa_navigation_is_a_view_of_its_own_with_the_incremental_inp_and_pgu():
    beacons, rejects = convert(raw("boomerang_spa.form"), FORM)
    assert rejects == []
    [beacon] = beacons
    assert (beacon["id"], beacon["view"]) == ("boomr-kq3v9x1a-4", "kq3v9x1a-4")  # the route, not the page
    assert (beacon["page"], beacon["metrics"]) == ("/cart", {"CLS": 0.002, "INP": 48.0})
    assert "device" not in beacon  # Linux armv8l: phone or tablet


def test_xhr_beacon_is_not_a_page_view():
    assert convert(raw("boomerang_xhr.form"), FORM) == ([], [(0, (
        "Boomerang: http.initiator: 'xhr' beacons are not page views "
        "(only page loads, SPA navigations, error and unload beacons are)"))])


@pytest.mark.parametrize("param, value, reason", [
    ("pt.lcp", "abc", "pt.lcp: must be a number, got 'abc'"),
    ("c.cls", "1e999", "c.cls: must be a number, got '1e999'"),
    ("nt_res_st", "0x10", "nt_res_st: must be a number, got '0x10'"),
])
def test_a_param_that_is_not_a_number_is_reported(param, value, reason):
    params = {"v": "1.815.1", "u": "https://shop.example/", param: value}
    assert to_canonical([params], CTX) == ([], [(0, f"Boomerang: {reason}")])


def test_empty_params_are_absent_and_the_rel_var_beats_the_request():
    params = {"v": "1.815.1", "u": "https://shop.example/", "pt.lcp": "", "c.cls": "0.1", "rel": "r9", "app": "a9"}
    beacons, _ = to_canonical([params], CTX)
    assert (beacons[0]["metrics"], beacons[0]["release"], beacons[0]["app"]) == ({"CLS": 0.1}, "r9", "a9")


@pytest.mark.parametrize("err, count", [
    ("~(~(m~'a~n~3)~(m~'b))", 4),
    ("~(~)", 0),
    ("~(~(n~2~f~(~(l~1~c~2))~m~'x*20y!))", 2),
    ("~(~(n~'two))", 1),  # an odd count is one error
    ("~'not*20an*20array", 1),
    ("not jsurl", 1),  # unreadable: the page still had an error
    ("~(" * 100, 1),  # too deep
])
def test_error_count(err, count):
    assert error_count(err) == count


@pytest.mark.parametrize("item, expected", [
    ({"v": "1.815.1", "u": "https://x/"}, True),
    ({"rt.si": "abc"}, True),
    ({"t_done": "100"}, True),
    ({"app": "a", "release": "r"}, False),  # strings, but no Boomerang names
    ({"v": "1", "u": "x", "n": 1}, False),  # not all strings: JSON, not params
    ({}, False),
], ids=repr)
def test_detect(item, expected):
    assert detect(item) is expected


# The real SDK (Boomerang 1.815.1, tests/sdks/captures/boomerang.json): one page load, its
# error beacon and its unload beacon.
PID = "xc70le9a"


def test_the_captured_page_load_error_and_unload_beacons_are_one_view():
    requests = captures.requests("boomerang")
    assert [captures.items(r)[0].get("http.initiator", "") for r in requests] == ["", "error", ""]
    load, error, unload = captures.beacons("boomerang")
    common = {"ts": RECEIVED_AT, "view": PID, "app": "shop-web", "release": "2026.11.23-abc",
              "session": "7f49b66d-308d-43b8-ab65-4e09453b44d7-tpoahg", "page": "/shop/running-shoes"}
    assert load == [{**common, "id": f"boomr-{PID}-1", "client_ts": 1796642835932,
                     "metrics": {"LCP": 348.0, "FCP": 220.0, "CLS": 0.0, "TTFB": 4.0}}]
    # err holds one error (no n: seen once); its c.cls=0.094 and et.inp.inc=88 are increments
    assert error == [{**common, "id": f"boomr-{PID}-2", "client_ts": 1796642836573, "metrics": {}, "errors": 1}]
    # rt.quit: et.inp is the page's final INP; its c.cls=0 is the shifts since the error beacon
    assert unload == [{**common, "id": f"boomr-{PID}-3", "client_ts": 1796642835932, "metrics": {"INP": 88.0}}]


def test_each_metric_comes_from_one_beacon_of_the_view():
    """Stage 1 keeps a view's first value per metric: no beacon offers a second, lesser one."""
    names = [name for [beacon] in captures.beacons("boomerang") for name in beacon["metrics"]]
    assert sorted(names) == ["CLS", "FCP", "INP", "LCP", "TTFB"]


def test_an_error_beacon_without_a_page_id_is_reported():
    [params] = captures.items(captures.requests("boomerang")[1])
    del params["pid"]
    assert to_canonical([params], CTX) == ([], [(0, "Boomerang: pid: missing, so the error beacon cannot be tied "
                                                    "to its page view")])


def test_a_bad_number_on_any_beacon_is_reported_even_if_not_kept():
    [params] = captures.items(captures.requests("boomerang")[2])
    params["c.cls"] = "lots"
    assert to_canonical([params], CTX)[1] == [(0, "Boomerang: c.cls: must be a number, got 'lots'")]
