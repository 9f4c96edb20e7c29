"""What every format adapter shares: the request context, the error, the result holder and
the helpers that turn SDK values into canonical fields.

Adapters are pure: no I/O and no clock. The receive time, and the app, release and country
the request itself names, come in a :class:`Context`. A canonical field is filled from the
payload first and from the context second (``country`` from the context only: no browser
SDK knows it):

>>> ctx = Context(received_at=1763856000123, app="shop-web", release="r2", country="DE")
>>> make_beacon(ctx, app=None, release="r3", page="https://shop.example/p/42?q=shoes#top",
...             metrics={"LCP": 2140.3})
{'ts': 1763856000123, 'app': 'shop-web', 'release': 'r3', 'page': '/p/42', 'country': 'DE', 'metrics': {'LCP': 2140.3}}

Pages keep their path only: query strings and fragments can carry personal data.

>>> page_path("/checkout?coupon=X#pay"), page_path("https://shop.example"), page_path("?q=1")
('/checkout', '/', None)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from detectors.beacon import _MAX_STR, _TS_MAX, _TS_MIN
# ua_device, ua_browser and brands_browser (for UA fields of payloads) are the request headers' own
# parser and cache, kept importable from here: streams/ingest/useragent.py says which library, and why
from streams.ingest.useragent import brands_browser, ua_browser, ua_device

__all__ = [
    "Context",
    "FormatError",
    "RejectKind",
    "Converted",
    "make_beacon",
    "field_at",
    "number",
    "text",
    "epoch_ms",
    "page_path",
    "device_class",
    "ua_device",
    "ua_browser",
    "brands_browser",
]


@dataclass(frozen=True)
class Context:
    """What the request says besides its body.

    Parameters
    ----------
    received_at
        The server's receive time, epoch ms. It becomes every beacon's ``ts``.
    app, release
        From the ``X-Rumgate-App`` header or ``?app=`` (and the same for the release); used
        when the payload names none.
    country
        From a configured header (e.g. ``CF-IPCountry``). The client IP is never used here.
    device, browser
        From the request's ``User-Agent`` and UA Client Hints
        (:func:`~streams.ingest.useragent.request_device_browser`); used when the payload
        names none.
    """

    received_at: int
    app: str | None = None
    release: str | None = None
    country: str | None = None
    device: str | None = None
    browser: str | None = None

    def __post_init__(self) -> None:
        if type(self.received_at) is not int or not _TS_MIN <= self.received_at <= _TS_MAX:
            raise ValueError(f"received_at: must be epoch milliseconds, got {self.received_at!r}")
        for name in ("app", "release", "country", "device", "browser"):
            value = getattr(self, name)
            if value is not None and type(value) is not str:
                raise ValueError(f"{name}: must be a string or None, got {type(value).__name__}")


class RejectKind(StrEnum):
    """Why an item gave no beacon: it is broken, or it is valid but not ours.

    SDK batches also carry events that are not a real user's page view (Datadog actions and
    resources, Boomerang XHR beacons, bots, synthetic sessions). Those are counted and
    dropped; only :attr:`INVALID` items are errors, dead-lettered and reported to the sender.
    """

    INVALID = "invalid"
    NOT_A_PAGE_VIEW = "not_a_page_view"
    NOT_A_REAL_USER = "not_a_real_user"


class FormatError(ValueError):
    """A body or an item cannot be used. The message says what is wrong, naming the field.

    ``kind`` says whether the item is broken (the default) or valid but not ours.
    """

    def __init__(self, message: str, kind: RejectKind = RejectKind.INVALID) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Converted:
    """What an adapter made of its items.

    ``beacons`` pairs each beacon with the indexes of the items it came from (several for
    grouped web-vitals metrics); ``rejects`` holds ``(item index, reason)`` of broken items,
    ``ignored`` ``(item index, reason, kind)`` of valid items that are not ours.
    """

    beacons: list[tuple[list[int], dict[str, Any]]] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)
    ignored: list[tuple[int, str, RejectKind]] = field(default_factory=list)

    def refuse(self, index: int, reason: str, kind: RejectKind = RejectKind.INVALID) -> None:
        """Give no beacon for item ``index``: into ``rejects`` or ``ignored`` by its kind."""
        if kind is RejectKind.INVALID:
            self.rejects.append((index, reason))
        else:
            self.ignored.append((index, reason, kind))


def field_at(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]…``, or None where a step is missing or not an object.

    >>> field_at({"meta": {"app": {"name": "shop-web"}}}, "meta", "app", "name"), field_at({"meta": 3}, "meta", "app")
    ('shop-web', None)
    """
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def number(x: Any) -> float | None:
    """``x`` as a finite float when it is a JSON number (not a bool), else None."""
    if type(x) is int:
        return float(x) if abs(x) < 2**1023 else None
    if type(x) is float and math.isfinite(x):
        return x
    return None


def text(x: Any) -> str | None:
    """``x`` when it is a non-blank string of at most 512 characters, else None."""
    if type(x) is str and x.strip() and len(x) <= _MAX_STR:
        return x
    return None


def epoch_ms(x: Any) -> int | None:
    """``x`` as an int when it is plausible epoch milliseconds (2001 .. 2286), else None."""
    if type(x) is float and x.is_integer():
        x = int(x)
    if type(x) is int and _TS_MIN <= x <= _TS_MAX:
        return x
    return None


_AUTHORITY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#]*")


def page_path(x: Any) -> str | None:
    """The path of a URL or route: no scheme, host, query string or fragment.

    ``None`` when there is no path; at most 512 characters.
    """
    if type(x) is not str:
        return None
    s = x.strip()
    had_authority = 0
    if "//" in s:  # most pages are paths already; the regex is for full URLs
        s, had_authority = _AUTHORITY.subn("", s, count=1)
    s = s.partition("?")[0].partition("#")[0]
    if not s:
        return "/" if had_authority else None
    return s[:_MAX_STR]


_DEVICE_WORDS = {
    "mobile": "mobile",
    "phone": "mobile",
    "smartphone": "mobile",
    "desktop": "desktop",
    "tablet": "tablet",
    "unknown": "unknown",
}


def device_class(x: Any) -> str | None:
    """A device word (any case; ``phone`` means mobile) as a segment; others are ``unknown``."""
    if type(x) is not str or not x.strip():
        return None
    return _DEVICE_WORDS.get(x.strip().lower(), "unknown")


def make_beacon(
    ctx: Context,
    *,
    app: Any = None,
    release: Any = None,
    id: Any = None,  # noqa: A002 - the canonical field name
    view: Any = None,
    part: Any = None,
    client_ts: Any = None,
    cohort: Any = None,
    session: Any = None,
    page: Any = None,
    device: Any = None,
    browser: Any = None,
    metrics: dict[str, Any] | None = None,
    errors: Any = None,
) -> dict[str, Any]:
    """A canonical beacon dict stamped with the context.

    ``ts`` is always ``ctx.received_at``; ``app`` and ``release`` fall back to the context
    when the payload gives none (None or a blank string), and so do ``device`` and
    ``browser`` (a browser that is not a string of at most 512 characters counts as none);
    ``country`` is the context's; ``page`` keeps its path only; ``metrics`` is always there
    (maybe empty). Other absent fields are left out. Nothing is validated here:
    :func:`detectors.beacon.validate_beacon` does that on the result.

    >>> ctx = Context(received_at=1763856000123, app="a", release="r", device="mobile", browser="Chrome")
    >>> make_beacon(ctx, device="", browser=None)
    {'ts': 1763856000123, 'app': 'a', 'release': 'r', 'device': 'mobile', 'browser': 'Chrome', 'metrics': {}}
    >>> make_beacon(ctx, device="tablet", browser="Safari")["device"]
    'tablet'
    """

    # Built key by key (absent fields left out) rather than filtered from a full dict: this
    # runs for every beacon the endpoint takes.
    out: dict[str, Any] = {}
    if type(id) is str and 0 < len(id) <= _MAX_STR:
        out["id"] = id
    if view is not None:
        out["view"] = view
    if part is not None:
        out["part"] = part
    out["ts"] = ctx.received_at
    client_ts = epoch_ms(client_ts)
    if client_ts is not None:
        out["client_ts"] = client_ts
    app = app if _given(app) else ctx.app
    if app is not None:
        out["app"] = app
    release = release if _given(release) else ctx.release
    if release is not None:
        out["release"] = release
    if cohort is not None:
        out["cohort"] = cohort
    if session is not None:
        out["session"] = session
    page = page_path(page)
    if page is not None:
        out["page"] = page
    if ctx.device is not None and not _given(device):
        device = ctx.device
    if device is not None:
        out["device"] = device
    if ctx.country is not None:
        out["country"] = ctx.country
    if ctx.browser is not None and not (type(browser) is str and browser.strip() and len(browser) <= _MAX_STR):
        browser = ctx.browser
    if type(browser) is str and len(browser) <= _MAX_STR:
        out["browser"] = browser
    out["metrics"] = {} if metrics is None else metrics
    if errors is not None:
        out["errors"] = errors
    return out


def _given(x: Any) -> bool:
    """A payload value that counts: not None and not a blank string."""
    return x is not None and not (type(x) is str and not x.strip())
