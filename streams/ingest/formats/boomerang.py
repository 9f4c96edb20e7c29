"""Akamai Boomerang (and mPulse) beacons: flat string params from a GET query string or a
form-encoded POST (``parse_body`` turns either into one dict).

A page sends several beacons, all with its page id ``pid`` (random, one per page lifetime)
and a beacon number ``n``: the page-load beacon, an error beacon for errors after load
(``http.initiator=error``, with ``err``), SPA navigations, and the unload beacon
(``rt.quit``). ``pid`` is the beacon's ``view``, so they are one page view; an SPA soft
navigation (``http.initiator=spa``) is a page view of its own, ``<pid>-<n>`` (the error and
unload beacons name only the page, so in an SPA their errors and INP go to its first view).

============  ========================================================================
canonical     Boomerang params
============  ========================================================================
view          ``pid``; ``<pid>-<n>`` for an SPA soft navigation
LCP, FCP      ``pt.lcp``, ``pt.fcp`` (ms since navigation start)
INP           ``et.inp`` (the whole page's: on the unload beacon); a soft navigation's ``et.inp.inc``
CLS           ``c.cls`` of the page-load beacon (of a soft navigation, its own)
TTFB          ``nt_res_st - nt_nav_st`` (epoch ms), else ``t_resp`` on a page-load beacon
errors        ``err``: JSURL array of errors, each seen ``n`` times (default 1), on any beacon
app           custom var ``app``, else the request's app, else mPulse ``h.key``
release       custom var ``rel`` (``BOOMR.addVar({rel: ...})``) or ``release``
cohort        custom var ``cohort``
session       ``rt.si``
page          path of ``pgu``, else of ``u``
device        from ``ua.plt`` (``navigator.platform``): iPhone/iPod, iPad, Win*/Mac*/x86_64
client_ts     ``rt.tstart``, else ``nt_nav_st``
id            ``boomr-<pid>-<n>``: each beacon its own, so the endpoint drops only re-sends
============  ========================================================================

Stage 1 keeps each metric's first value per view, so only whole-page values are sent:

* ``et.inp`` on the unload beacon is the page's final INP; ``et.inp.inc`` (on the page-load
  and error beacons) covers only the interactions since the previous beacon and would
  win over it, so it is used only on a soft navigation, which is a view of its own.
* ``c.cls`` *resets at every beacon* (Boomerang's Continuity plugin: "the CLS since the last
  beacon"): the page's CLS is the sum over its beacons, which a first-value rule cannot
  rebuild. The page-load beacon's ``c.cls`` (the shifts until load, Boomerang's page-load
  CLS) is sent; the error and unload beacons' increments are not, since counting one of them
  as the page's CLS (when the page-load beacon is lost) would be wrong, not only low.
  Shifts after the page-load beacon are therefore not counted.

XHR and other beacons are reported (not page views); an error beacon without ``pid``
cannot be tied to its page view and is reported too. Boomerang's own ``errors`` param lists
errors of Boomerang's code, not of the page, and is not used.

>>> from streams.ingest.formats.base import Context
>>> ctx = Context(received_at=1763856000123, app="shop-web")
>>> page = {"v": "1.815.1", "u": "https://shop.example/p/42?ref=mail", "pid": "kq3v9x1a", "rel": "r2"}
>>> convert_params({**page, "n": "1", "rt.si": "8c7e-1732300000", "pt.lcp": "2140.3", "c.cls": "0.043",
...     "nt_nav_st": "1732300012345", "nt_res_st": "1732300012758"}, ctx)
{'id': 'boomr-kq3v9x1a-1', 'view': 'kq3v9x1a', 'ts': 1763856000123, 'client_ts': 1732300012345, 'app': 'shop-web', 'release': 'r2', 'session': '8c7e-1732300000', 'page': '/p/42', 'metrics': {'LCP': 2140.3, 'CLS': 0.043, 'TTFB': 413.0}}
>>> convert_params({**page, "n": "2", "http.initiator": "error", "err": "~(~(m~'boom~n~2))",
...     "c.cls": "0.094", "et.inp.inc": "88"}, ctx)
{'id': 'boomr-kq3v9x1a-2', 'view': 'kq3v9x1a', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'page': '/p/42', 'metrics': {}, 'errors': 2}
>>> convert_params({**page, "n": "3", "rt.quit": "", "et.inp": "88", "c.cls": "0"}, ctx)
{'id': 'boomr-kq3v9x1a-3', 'view': 'kq3v9x1a', 'ts': 1763856000123, 'app': 'shop-web', 'release': 'r2', 'page': '/p/42', 'metrics': {'INP': 88.0}}
"""

from __future__ import annotations

import math
import re
from typing import Any

from streams.ingest.formats.base import Context, Converted, FormatError, RejectKind, make_beacon

__all__ = ["NAME", "detect", "convert", "convert_params", "error_count"]

NAME = "Boomerang"

#: ``http.initiator`` values of beacons that describe a page view.
PAGE_VIEW_INITIATORS = frozenset({"", "spa_hard", "spa"})
#: ``http.initiator`` of the beacon that sends errors that happened after the page-load beacon.
ERROR_INITIATOR = "error"

# Param prefixes of Boomerang's plugins; a dict of strings with one of them is a beacon.
_PREFIXES = ("rt.", "t_", "nt_", "pt.", "et.", "c.", "h.", "vis.", "mob.", "ua.")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_DEPTH = 32


def detect(item: Any) -> bool:
    """A non-empty dict of string params with Boomerang's names (``v`` and ``u``, or a plugin prefix)."""
    if not isinstance(item, dict) or not item:
        return False
    if not all(type(k) is str and type(v) is str for k, v in item.items()):
        return False
    return ("v" in item and "u" in item) or any(k.startswith(_PREFIXES) for k in item)


def _number(params: dict[str, str], key: str) -> float | None:
    raw = params.get(key)
    if raw is None or not raw.strip():
        return None
    if not _NUMBER.fullmatch(raw.strip()) or not math.isfinite(value := float(raw)):
        raise FormatError(f"{key}: must be a number, got {raw[:40]!r}")
    return value


def _platform_device(platform: str | None) -> str | None:
    """``navigator.platform`` → device. ``Linux arm*`` (phone or tablet) stays unknown, and
    iPadOS in desktop mode says ``MacIntel``."""
    p = (platform or "").lower()
    if "ipad" in p:
        return "tablet"
    if "iphone" in p or "ipod" in p:
        return "mobile"
    if p.startswith(("win", "mac")) or "x86_64" in p or "i686" in p or "cros" in p:
        return "desktop"
    return None


class _JsUrl:
    """A reader for JSURL (github.com/Sage/jsurl), Boomerang's compact JSON for URLs."""

    def __init__(self, s: str) -> None:
        self.s = re.sub(r"%(?:25)*27", "'", s)
        self.i = 0

    def parse(self) -> Any:
        value = self._value(0)
        if self.i != len(self.s):
            raise ValueError(f"unexpected {self.s[self.i]!r} at {self.i}")
        return value

    def _peek(self, offset: int = 0) -> str:
        return self.s[self.i + offset : self.i + offset + 1]

    def _eat(self, ch: str) -> None:
        if self._peek() != ch:
            raise ValueError(f"expected {ch!r} at {self.i}")
        self.i += 1

    def _value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("nested too deeply")
        self._eat("~")
        ch = self._peek()
        if ch == "(":
            self.i += 1
            result: Any
            if self._peek() == "~":  # an array: every element starts with "~"
                result = []
                if self._peek(1) == ")":
                    self.i += 1
                else:
                    result.append(self._value(depth + 1))
                    while self._peek() == "~":
                        result.append(self._value(depth + 1))
            else:  # an object: key~value pairs joined by "~"
                result = {}
                if self._peek() != ")":
                    while True:
                        key = self._text()
                        result[key] = self._value(depth + 1)
                        if self._peek() != "~":
                            break
                        self.i += 1
            self._eat(")")
            return result
        if ch == "'":
            self.i += 1
            return self._text()
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in "~)":
            self.i += 1
        token = self.s[start : self.i]
        if token[:1] and token[0] in "-0123456789":
            return float(token)
        keywords = {"true": True, "false": False, "null": None}
        if token not in keywords:
            raise ValueError(f"unknown value {token[:20]!r}")
        return keywords[token]

    def _text(self) -> str:
        out = []
        while self.i < len(self.s) and self.s[self.i] not in "~)":
            ch = self.s[self.i]
            if ch == "*":  # *hh or **hhhh: an escaped character
                width = 4 if self._peek(1) == "*" else 2
                start = self.i + (2 if width == 4 else 1)
                out.append(chr(int(self.s[start : start + width], 16)))
                self.i = start + width
            else:
                out.append("$" if ch == "!" else ch)
                self.i += 1
        return "".join(out)


def error_count(err: str) -> int:
    """Errors in an ``err`` param: the sum of each error's count ``n`` (default 1).

    An ``err`` that cannot be read still says the page had an error: it counts 1.

    >>> error_count("~(~(m~'a*20b~n~3)~(m~'c))"), error_count("~(~)"), error_count("garbage")
    (4, 0, 1)
    """
    try:
        errors = _JsUrl(err).parse()
    except (ValueError, IndexError):
        return 1
    if not isinstance(errors, list):
        return 1
    total = 0
    for e in errors:
        n = e.get("n", 1) if isinstance(e, dict) else 1
        total += int(n) if type(n) is float and n.is_integer() and 1 <= n <= 1e6 else 1
    return min(total, 1_000_000)


def convert_params(params: dict[str, str], ctx: Context) -> dict[str, Any]:
    """One beacon from one Boomerang beacon's params; FormatError names the bad param."""
    initiator = params.get("http.initiator", "")
    pid, n = params.get("pid", "").strip(), params.get("n", "").strip()
    if initiator == ERROR_INITIATOR:
        if not pid:
            raise FormatError("pid: missing, so the error beacon cannot be tied to its page view")
    elif initiator not in PAGE_VIEW_INITIATORS:
        raise FormatError(
            f"http.initiator: {initiator[:40]!r} beacons are not page views "
            "(only page loads, SPA navigations, error and unload beacons are)",
            RejectKind.NOT_A_PAGE_VIEW,
        )
    unload = "rt.quit" in params
    soft = initiator == "spa" and not unload  # an SPA soft navigation: a view of its own
    page_load = initiator in ("", "spa_hard") and not unload
    nav_start, first_byte = _number(params, "nt_nav_st"), _number(params, "nt_res_st")
    if nav_start is not None and first_byte is not None:
        ttfb = first_byte - nav_start
    elif initiator == "" and not unload:
        ttfb = _number(params, "t_resp")
    else:
        ttfb = None
    # Read every number param (a bad one is reported whichever beacon carries it), then keep
    # only the page's whole values (module docstring).
    cls, inp, inp_inc = _number(params, "c.cls"), _number(params, "et.inp"), _number(params, "et.inp.inc")
    metrics = {
        "LCP": _number(params, "pt.lcp"),
        "FCP": _number(params, "pt.fcp"),
        "CLS": cls if page_load or soft else None,
        "INP": inp if inp is not None else inp_inc if soft else None,
        "TTFB": ttfb,
    }
    client_ts = _number(params, "rt.tstart")
    if client_ts is None:
        client_ts = nav_start
    app = params.get("app")
    if app is None or not app.strip():
        app = ctx.app or params.get("h.key")
    err = params.get("err")
    return make_beacon(
        ctx,
        id=(f"boomr-{pid}-{n}" if n else f"boomr-{pid}") if pid else None,
        view=(f"{pid}-{n}" if soft and n else pid) if pid else None,
        client_ts=int(client_ts) if client_ts is not None and client_ts.is_integer() else None,
        app=app,
        release=params.get("rel") or params.get("release"),
        cohort=params.get("cohort") or None,
        session=params.get("rt.si") or None,
        page=params.get("pgu") or params.get("u"),
        device=_platform_device(params.get("ua.plt")),
        metrics={k: v for k, v in metrics.items() if v is not None},
        errors=error_count(err) if err else None,
    )


def convert(items: list[tuple[int, Any]], ctx: Context) -> Converted:
    """Each beacon on its own."""
    out = Converted()
    for index, params in items:
        try:
            out.beacons.append(([index], convert_params(params, ctx)))
        except FormatError as exc:
            out.refuse(index, str(exc), exc.kind)
    return out
