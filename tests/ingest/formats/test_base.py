"""The shared helpers: context, pages, devices and browsers."""

from __future__ import annotations

import pytest

from streams.ingest.formats.base import Context, brands_browser, device_class, make_beacon, page_path, ua_browser, ua_device

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
IPAD = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1"
ANDROID = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36"
ANDROID_TABLET = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
SAMSUNG = "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36"
EDGE = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.68"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
MAC_SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"


@pytest.mark.parametrize("value, path", [
    ("/checkout", "/checkout"),
    ("/checkout?coupon=SECRET", "/checkout"),
    ("/checkout#pay", "/checkout"),
    ("https://shop.example/p/42?q=1#top", "/p/42"),
    ("https://user:pw@shop.example:8443/a/b", "/a/b"),
    ("//shop.example/x?y", "/x"),
    ("https://shop.example", "/"),
    ("https://shop.example?q=1", "/"),
    ("/product/:id", "/product/:id"),
    ("http://[::1", "/"),  # a broken host does not raise
    ("?q=1", None),
    ("", None),
    (42, None),
    ("/" + "a" * 600, "/" + "a" * 511),
])
def test_page_path_never_keeps_a_query_string_or_fragment(value, path):
    assert page_path(value) == path


@pytest.mark.parametrize("ua, device, browser", [
    (IPHONE, "mobile", "Safari"),
    (IPAD, "tablet", "Chrome"),
    (ANDROID, "mobile", "Chrome"),
    (ANDROID_TABLET, "tablet", "Chrome"),
    (SAMSUNG, "mobile", "Samsung Internet"),
    (EDGE, "desktop", "Edge"),
    (FIREFOX, "desktop", "Firefox"),
    (MAC_SAFARI, "desktop", "Safari"),
    ("curl/8.0", None, None),
    (None, None, None),
])
def test_user_agents(ua, device, browser):
    assert (ua_device(ua), ua_browser(ua)) == (device, browser)


@pytest.mark.parametrize("brands, browser", [
    (["Not?A_Brand 99", "Chromium 130", "Google Chrome 130"], "Chrome"),
    ([{"brand": "Microsoft Edge", "version": "130"}, {"brand": "Chromium", "version": "130"}], "Edge"),
    (["Chromium 130", "Not_A Brand 8"], "Chromium"),
    (["Not A(Brand 99"], None),
    ("Chrome", None),
])
def test_brands(brands, browser):
    assert brands_browser(brands) == browser


@pytest.mark.parametrize("word, device", [("Mobile", "mobile"), ("phone", "mobile"), ("desktop", "desktop"),
                                          ("TABLET", "tablet"), ("tv", "unknown"), ("", None), (3, None)])
def test_device_class(word, device):
    assert device_class(word) == device


@pytest.mark.parametrize("kwargs, message", [
    ({"received_at": 1763856000}, "received_at: must be epoch milliseconds, got 1763856000"),
    ({"received_at": 1763856000123.0}, "received_at: must be epoch milliseconds, got 1763856000123.0"),
    ({"received_at": 1763856000123, "app": 5}, "app: must be a string or None, got int"),
])
def test_context_is_checked_eagerly(kwargs, message):
    with pytest.raises(ValueError) as info:
        Context(**kwargs)
    assert str(info.value) == message


def test_make_beacon_falls_back_to_the_context_for_blank_values_only():
    ctx = Context(received_at=1763856000123, app="ctx-app", release="ctx-rel", country="DE")
    assert make_beacon(ctx, app="  ", release="r1") == {
        "ts": 1763856000123, "app": "ctx-app", "release": "r1", "country": "DE", "metrics": {}}
    assert make_beacon(ctx, client_ts=1763856000000.0)["client_ts"] == 1763856000000
    assert "client_ts" not in make_beacon(ctx, client_ts=17638560001230)  # not epoch ms
    assert "id" not in make_beacon(ctx, id="x" * 513)
    assert "client_ts" not in make_beacon(ctx, client_ts=True)


def test_the_requests_device_and_browser_fill_only_what_the_payload_lacks():
    """The request's User-Agent and client hints (Context.device/browser) stand in for a payload
    that names no device or browser, never for one that does."""
    ctx = Context(received_at=1763856000123, app="a", release="r", device="tablet", browser="Chrome")
    for device, browser in ((None, None), ("", ""), ("  ", "  "), (None, 42), (None, "x" * 513)):
        beacon = make_beacon(ctx, device=device, browser=browser)
        assert (beacon["device"], beacon["browser"]) == ("tablet", "Chrome"), (device, browser)
    beacon = make_beacon(ctx, device="unknown", browser="Firefox")
    assert (beacon["device"], beacon["browser"]) == ("unknown", "Firefox")
    bare = make_beacon(Context(received_at=1763856000123), device="", browser=None)
    assert bare["device"] == "" and "browser" not in bare  # no request headers: as before
    assert list(make_beacon(ctx, page="/p")) == ["ts", "app", "release", "page", "device", "browser", "metrics"]


@pytest.mark.parametrize("name", ["device", "browser"])
def test_context_device_and_browser_are_strings_or_none(name):
    with pytest.raises(ValueError, match=f"{name}: must be a string or None, got int"):
        Context(received_at=1763856000123, **{name: 1})
