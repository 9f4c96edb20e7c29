"""Device class and browser from the User-Agent and UA Client Hints (streams/ingest/useragent.py).

The UAs are current ones of the devices that matter to the segments: iPads in each browser,
Android tablets (Galaxy Tab, Pixel Tablet, Lenovo, Huawei, Kindle Fire, Chrome's reduced
``Android 10; K``, a WebView), phones, desktops. An iPad on iPadOS 13+ in Safari sends a Mac's
UA: no parser can tell it from one, and it is counted as desktop.
"""

from __future__ import annotations

import time

import pytest

from streams.ingest import useragent
from streams.ingest.useragent import (MAX_UA, brands_browser, parse_brands, request_device_browser, ua_browser,
                                      ua_device, ua_device_browser)

CASES = [
    ('Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Mobile/15E148 Safari/604.1',
     'tablet', 'Safari'),
    ('Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/119.0.6045.109 Mobile/15E148 Safari/604.1',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 EdgiOS/118.0.2088.81 Mobile/15E148 Safari/605.1.15',
     'tablet', 'Edge'),
    ('Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/120.0 Mobile/15E148 Safari/605.1.15',
     'tablet', 'Firefox'),
    ('Mozilla/5.0 (Linux; Android 13; SM-T870) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36',
     'tablet', 'Samsung Internet'),
    ('Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/119.3.1 like Chrome/119.0.6045.193 Safari/537.36',
     'tablet', 'Amazon Silk'),
    ('Mozilla/5.0 (Linux; Android 14; Pixel Tablet) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (Linux; Android 11; Lenovo TB-J606F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (Android 13; Tablet; rv:120.0) Gecko/120.0 Firefox/120.0',
     'tablet', 'Firefox'),
    ('Mozilla/5.0 (Linux; Android 10; BAH3-W09) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (Linux; Android 4.4.2; Nexus 7 Build/KOT49H) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/34.0.1847.114 Safari/537.36',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (Linux; Android 11; SM-T510) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Safari/537.36',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (Linux; Android 12; SM-X200 Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Safari/537.36',
     'tablet', 'Chrome'),
    ('Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
     'desktop', 'Safari'),
    ('Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1',
     'mobile', 'Safari'),
    ('Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1',
     'mobile', 'Chrome'),
    ('Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
     'mobile', 'Chrome'),
    ('Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36',
     'mobile', 'Samsung Internet'),
    ('Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0',
     'mobile', 'Firefox'),
    ('Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Mobile Safari/537.36 OPR/79.1.4195.76419',
     'mobile', 'Opera'),
    ('Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 EdgA/120.0.2210.84',
     'mobile', 'Edge'),
    ('Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36',
     'mobile', 'Chrome'),
    ('Mozilla/5.0 (Linux; U; Android 12; zh-cn; 2201123C Build/SKQ1.211006.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.127 Mobile Safari/537.36 XiaoMi/MiuiBrowser/17.1.40',
     'mobile', 'MiuiBrowser'),
    ('Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/119.0 Mobile/15E148 Safari/605.1.15',
     'mobile', 'Firefox'),
    ('Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36',
     'mobile', 'Chrome'),
    ('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
     'desktop', 'Chrome'),
    ('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0',
     'desktop', 'Edge'),
    ('Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0',
     'desktop', 'Firefox'),
    ('Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
     'desktop', 'Chrome'),
    ('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36',
     'desktop', 'Chrome'),
    ('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 OPR/105.0.0.0',
     'desktop', 'Opera'),
    ('Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
     'desktop', 'Chrome'),
    ('Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
     'desktop', 'Firefox'),
    ('Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko',
     'desktop', 'Internet Explorer'),
    ('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
     'desktop', 'Chrome'),
]

CHROMIUM_HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 "
                     "Safari/537.36")
ANDROID_PHONE = ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 "
                 "Mobile Safari/537.36")
ANDROID_TABLET = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"


@pytest.mark.parametrize("ua, device, browser", CASES, ids=[f"{d}-{b}-{i}" for i, (_, d, b) in enumerate(CASES)])
def test_current_user_agents(ua: str, device: str, browser: str) -> None:
    assert ua_device_browser(ua) == (device, browser)
    assert (ua_device(ua), ua_browser(ua)) == (device, browser)


@pytest.mark.parametrize("ua", ["curl/8.0", "python-requests/2.31", "Go-http-client/1.1", "Python/3.11 aiohttp/3.14.5",
                                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                                "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
                                "like Gecko) Chrome/120.0.6099.216 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
                                "+http://www.google.com/bot.html)", "", "Mozilla/5.0"])
def test_bots_and_http_libraries_name_neither(ua: str) -> None:
    """A relay's own UA must never describe the beacons it forwards; a bot is no user's device."""
    assert ua_device_browser(ua) == (None, None)


@pytest.mark.parametrize("value", [None, 42, b"Mozilla/5.0", ["Mozilla/5.0"]])
def test_values_that_are_not_strings_name_neither(value) -> None:
    assert (ua_device(value), ua_browser(value)) == (None, None)


def test_the_mobile_hint_and_the_brands() -> None:
    # the headless Chromium of tests/sdks: a desktop, and Chromium by its brands
    assert request_device_browser(CHROMIUM_HEADLESS, "?0", '"Not:A-Brand";v="8", "Chromium";v="156"') == (
        "desktop", "Chromium")
    # ?1 is mobile whatever the UA says (a tablet asking for the mobile site is a phone's page view)
    assert request_device_browser(ANDROID_TABLET, "?1", None) == ("mobile", "Chrome")
    assert request_device_browser(ANDROID_TABLET, "?0", None) == ("tablet", "Chrome")
    # a specific brand names the browser the UA hides (Brave's UA is Chrome's)
    assert request_device_browser(ANDROID_PHONE, "?1", '"Brave";v="130", "Chromium";v="130", "Not?A_Brand";v="99"') \
        == ("mobile", "Brave")
    assert request_device_browser(ANDROID_PHONE, "?1", '"Google Chrome";v="130", "Chromium";v="130"')[1] == "Chrome"
    # "Chromium" alone does not hide a browser the UA names (Samsung Internet, Opera, ...)
    samsung = ("Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 "
               "Chrome/115.0.0.0 Mobile Safari/537.36")
    assert request_device_browser(samsung, "?1", '"Chromium";v="115", "Not)A;Brand";v="24"')[1] == "Samsung Internet"
    # hints without a UA; a ?0 with a UA that says nothing is a desktop
    assert request_device_browser(None, "?1", '"Microsoft Edge";v="130"') == ("mobile", "Edge")
    assert request_device_browser("curl/8.0", "?0", None) == ("desktop", None)
    assert request_device_browser(None, None, None) == (None, None)
    assert request_device_browser(None, "junk", "junk") == (None, None)


@pytest.mark.parametrize("header, brands", [
    ('"Not:A-Brand";v="8", "Chromium";v="156"', ["Not:A-Brand", "Chromium"]),
    ('"Chromium";v="130", "Google Chrome";v="130", "Not?A_Brand";v="99"', ["Chromium", "Google Chrome", "Not?A_Brand"]),
    ('"Not)A;Brand";v="24", "Chromium";v="116"', ["Not)A;Brand", "Chromium"]),
    ('"Quoted \\"x\\"";v="1"', ['Quoted \\"x\\"']),
    ("", []), ("garbage", []),
])
def test_sec_ch_ua_is_parsed_as_a_list_of_strings(header: str, brands: list[str]) -> None:
    assert [b["brand"] for b in parse_brands(header)] == brands


def test_brands_browser_reads_strings_and_dicts() -> None:
    assert brands_browser(["Not?A_Brand 99", "Chromium 130", "Google Chrome 130"]) == "Chrome"
    assert brands_browser([{"brand": "Microsoft Edge", "version": "130"}, {"brand": "Chromium"}]) == "Edge"
    assert brands_browser(["Chromium 130"]) == "Chromium"
    assert brands_browser("Chrome") is None


def test_long_user_agents_are_cut_before_parsing() -> None:
    junk = "Mozilla/5.0 (" + "abc; def/1.0 " * 2000 + ")"
    started = time.perf_counter()
    assert ua_device_browser(junk + "x") == ua_device_browser(junk[:MAX_UA] + "y")
    assert time.perf_counter() - started < 0.5


def test_answers_are_cached_per_user_agent() -> None:
    cache = useragent._ua_device_browser
    cache.cache_clear()
    for _ in range(3):
        for ua, _, _ in CASES:
            ua_device_browser(ua)
    info = cache.cache_info()
    assert (info.misses, info.hits) == (len({ua for ua, _, _ in CASES}), 2 * len(CASES))
    assert info.maxsize == useragent.CACHE_SIZE


def test_the_caches_hold_no_more_than_max_ua_of_a_header() -> None:
    """Headers may be 8 KB each: an attacker filling the caches with fresh ones gets MAX_UA kept."""
    useragent._request_device_browser.cache_clear()
    long_ua, long_brands = "Mozilla/5.0 (X11; Linux x86_64) " + "x" * 8000, '"Chromium";v="1", ' * 400
    request_device_browser(long_ua, "?0" + " " * 100, long_brands)
    request_device_browser(long_ua + "different after the cut", "?0" + " " * 100, long_brands)
    info = useragent._request_device_browser.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_a_new_user_agent_costs_microseconds_not_milliseconds() -> None:
    """The endpoint takes ~15,000 beacons/s on one loop: a client that sends a fresh UA with every
    request must not be able to stall it (device-detector took 16-90 ms a UA here)."""
    uas = [ua.replace("537.36", f"537.{i}") for i in range(200) for ua, _, _ in CASES[:5]]
    started = time.perf_counter()
    for ua in uas:
        ua_device_browser(ua)
    per_ua = (time.perf_counter() - started) / len(uas)
    assert per_ua < 2e-3, f"{per_ua * 1e6:.0f} µs per new UA"
