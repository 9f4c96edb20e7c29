"""The fast path for bodies of canonical beacons: decoded, checked and stamped in one pass.

Relays and backends post canonical beacons as NDJSON or a JSON array, and at load that is
most of what the endpoint does. The general path (:func:`~streams.ingest.formats.parse_body`, then
:func:`~streams.ingest.formats.to_canonical`) builds every beacon twice in Python dicts; here
msgspec decodes each item straight into a typed :class:`CanonicalItem` whose constraints
are checked in C, and encodes the stamped result.

The fast path is an optimisation, never a second definition of a beacon. It either gives
**exactly** what the general path gives (the same beacons, field for field) or declines
(returns ``None``) and the caller takes the general path, which also words every error.
It declines whole bodies: anything that is not plainly canonical (a web-vitals ``name``, a
Datadog ``type``, an OTLP ``resourceLogs``, no ``metrics`` object), any item the general
path would refuse or repair, and any body msgspec cannot decode. ``tests/ingest/formats/
test_fast.py`` checks the equivalence on generated bodies.

>>> from streams.ingest.formats.base import Context
>>> ctx = Context(received_at=1763856000123, release="r2")
>>> items = canonical_items(b'{"id":"a1","ts":1763855999000,"app":"shop-web","page":"/cart?x=1",'
...                         b'"metrics":{"LCP":2480}}', "application/x-ndjson", ctx)
>>> [encode(item) for item in items]
[b'{"id":"a1","ts":1763856000123,"client_ts":1763855999000,"app":"shop-web","release":"r2","page":"/cart","metrics":{"LCP":2480.0}}']
>>> canonical_items(b'{"name":"LCP","value":2140.3}', "application/json", ctx) is None
True
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from detectors.beacon import _MAX_ERRORS, _MAX_STR, _TS_MAX, _TS_MIN, METRIC_LIMITS
from detectors.beacon import MAX_COHORT, MAX_NAME, MAX_VIEW, has_control
from streams.ingest.formats.base import Context, epoch_ms, page_path

__all__ = ["CanonicalItem", "canonical_items", "encode", "encode_many"]


def _metric(name: str) -> Any:
    # UNSET (absent) and None (null) differ: the general path keeps a null metric as null.
    return Annotated[float, Meta(ge=0, le=METRIC_LIMITS[name])] | None | UnsetType


# gc=False: these structs hold only strings, numbers and Metrics, so they can never be in a
# reference cycle; untracked, the ten a request allocates do not drive the cyclic collector.
class Metrics(Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """A ``metrics`` object: the known metrics only, each a number within its limits."""

    LCP: _metric("LCP") = UNSET
    INP: _metric("INP") = UNSET
    CLS: _metric("CLS") = UNSET
    FCP: _metric("FCP") = UNSET
    TTFB: _metric("TTFB") = UNSET


_Text = Annotated[str, Meta(max_length=_MAX_STR)]
_Id = Annotated[str, Meta(min_length=1, max_length=_MAX_STR)]
_Country = Annotated[str, Meta(min_length=1, max_length=64)]


class CanonicalItem(Struct, kw_only=True, omit_defaults=True, gc=False):
    """One canonical beacon as sent, then as stamped; the field order is the general path's.

    Fields the general path would drop when malformed (``id``, ``browser``, ``country``) are
    typed so that msgspec refuses them, and the body declines to the general path; a body of
    well-formed beacons is then stamped with little Python (:func:`_stamp`). ``ts`` and
    ``client_ts`` (normalised like the general path's) and ``page`` (cut to its path) stay
    ``Any``. Unknown fields are skipped, as the general path drops them. An item that is not
    plainly canonical is refused by msgspec too: ``metrics`` is required (an object), and
    ``name``, ``type`` and ``resourceLogs`` (web-vitals, Datadog, OTLP) must be absent.
    (``kw_only``: so that the required ``metrics`` can keep its place in the field order.)
    """

    id: _Id | None = None
    view: _Text | None = None  # any string: _stamp declines what the general path refuses
    part: bool | None = None
    ts: Any = None
    client_ts: Any = None
    app: _Text | None = None  # blank or absent: the request's (X-Rumgate-App)
    release: _Text | None = None
    cohort: _Text | None = None
    session: _Text | None = None
    page: Any = None
    # "" is allowed: the general path keeps it and counts it as "unknown"
    device: Literal["mobile", "desktop", "tablet", "unknown", ""] | None = None
    country: _Country | None = None
    browser: _Text | None = None
    metrics: Metrics
    errors: Annotated[int, Meta(ge=0, le=_MAX_ERRORS)] | None = None
    # present with any value, even null: another format's item, and the body declines
    name: UnsetType = UNSET
    type: UnsetType = UNSET
    resourceLogs: UnsetType = UNSET  # noqa: N815 - the OTLP field name


# Pages seen to be bare paths, which _stamp keeps as they are: one set lookup, for the pages a
# site sends again and again, instead of the checks that found them bare (about 0.1 µs a
# beacon). Bounded: once full (a site with ids in its paths), pages not in it are checked
# every time, so the set only ever saves work and never changes an answer.
_BARE_PAGES: set[str] = set()
_BARE_PAGES_MAX = 10_000
# The same for app and release names (one set: both get the same checks): a name in it is a
# non-blank string that _name_ok accepts with MAX_NAME, so a beacon naming it needs neither
# strip() nor _name_ok() again. A request's ten beacons name one app and one release, and
# those checks were about a third of _stamp (0.2 µs a beacon). Bounded like _BARE_PAGES.
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_MAX = 10_000

_ONE = msgspec.json.Decoder(CanonicalItem)
_MANY = msgspec.json.Decoder(list[CanonicalItem])
_ENCODER = msgspec.json.Encoder()
_NDJSON = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                     "application/x-jsonlines", "application/jsonlines"})
_JSON = frozenset({"application/json", "text/json"})


def canonical_items(body: bytes, content_type: str, ctx: Context) -> list[CanonicalItem] | None:
    """The stamped beacons of a body of canonical beacons, or None: take the general path."""
    media = content_type
    if media not in _NDJSON and media not in _JSON:  # not a bare media type already (the endpoint's are)
        media = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        if media in _NDJSON:
            # line by line, as parse_body reads NDJSON: joining lines could mend broken ones
            # (isspace, not strip: no copy of every line just to test it for blankness)
            items = [_ONE.decode(line) for line in body.split(b"\n") if line and not line.isspace()]
        elif media in _JSON:
            start = body.lstrip()[:1]
            if start == b"[":
                items = _MANY.decode(body)
            elif start == b"{":
                items = [_ONE.decode(body)]
            else:
                return None
        else:
            return None
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # deep nesting: the general path says so
        return None
    if not items:
        return None
    for item in items:
        if not _stamp(item, ctx):
            return None
    # apart from _stamp: a relay's requests (most of this path's) carry no browser's UA, and skip it
    if ctx.device is not None or ctx.browser is not None:
        _fill_device_browser(items, ctx)
    return items


def _fill_device_browser(items: list[CanonicalItem], ctx: Context) -> None:
    """The request's device and browser on the stamped beacons that name none, as
    :func:`~streams.ingest.formats.base.make_beacon` fills them.

    msgspec has refused every other value already: a device is one of the words or ``""``, a
    browser a string of at most 512 characters.
    """
    device, browser = ctx.device, ctx.browser
    for item in items:
        if device is not None and not item.device:
            item.device = device
        if browser is not None and (item.browser is None or not item.browser.strip()):
            item.browser = browser


def _stamp(item: CanonicalItem, ctx: Context) -> bool:
    """Stamp ``item`` as the general path would; False when that path would refuse it."""
    ts = item.ts if item.ts is not None else item.client_ts
    # the usual beacon (epoch ms, a bare path) is stamped without calling the general helpers
    item.client_ts = ts if type(ts) is int and _TS_MIN <= ts <= _TS_MAX else epoch_ms(ts)
    item.ts = ctx.received_at
    app = item.app
    if app not in _GOOD_NAMES:
        if app is None or not app.strip():  # not given: the request's
            app = ctx.app
            if not (type(app) is str and app.strip() and len(app) <= _MAX_STR):
                return False
            item.app = app
        if not _good_name(app):
            return False  # the general path refuses it, and says why
    release = item.release
    if release not in _GOOD_NAMES:
        if release is None or not release.strip():
            release = ctx.release
            if not (type(release) is str and release.strip() and len(release) <= _MAX_STR):
                return False
            item.release = release
        if not _good_name(release):
            return False
    if not ((item.cohort is None or _name_ok(item.cohort, MAX_COHORT))
            and (item.view is None or _name_ok(item.view, MAX_VIEW))):
        return False
    page = item.page
    if type(page) is not str:
        item.page = page_path(page)
    elif page not in _BARE_PAGES:
        # "/" but not "//" first, no "?" or "#", no trailing space: page_path() would keep it as it is
        if (page[:1] == "/" and page[1:2] != "/" and "?" not in page and "#" not in page
                and len(page) <= _MAX_STR and not page[-1].isspace()):
            if len(_BARE_PAGES) < _BARE_PAGES_MAX:
                _BARE_PAGES.add(page)
        else:
            item.page = page_path(page)
    if ctx.country is not None:
        item.country = ctx.country
    return True


def _good_name(name: str) -> bool:
    """:func:`_name_ok` for a non-blank app or release name, remembered in ``_GOOD_NAMES`` when true."""
    if not _name_ok(name, MAX_NAME):
        return False
    if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
        _GOOD_NAMES.add(name)
    return True


def _name_ok(value: str, limit: int) -> bool:
    """What :func:`detectors.beacon.beacon_reason` asks of a name: short, no control characters."""
    return len(value) <= limit and (value.isprintable() or not has_control(value))


def encode(item: CanonicalItem) -> bytes:
    """The stamped beacon as JSON (absent fields left out)."""
    return _ENCODER.encode(item)


def encode_many(items: list[CanonicalItem]) -> bytes:
    """Stamped beacons as the comma-separated members of a JSON array (no brackets).

    >>> from streams.ingest.formats.base import Context
    >>> ctx = Context(received_at=1763856000123, app="a", release="r")
    >>> encode_many(canonical_items(b'{"metrics":{}}\\n{"metrics":{"CLS":0}}', "application/x-ndjson", ctx))
    b'{"ts":1763856000123,"app":"a","release":"r","metrics":{}},{"ts":1763856000123,"app":"a","release":"r","metrics":{"CLS":0.0}}'
    """
    return _ENCODER.encode(items)[1:-1]
