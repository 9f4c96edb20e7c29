"""Request bodies as their senders meant them: content codings undone, within the body limit.

The ingest server runs aiohttp with ``auto_decompress=False`` and inflates here, so that it
decides what is taken and what each refusal says:

* ``Content-Encoding: gzip`` (Elastic's APM agent gzips with ``CompressionStream``),
  ``deflate`` (zlib-wrapped or raw: browsers and libraries send either), ``identity``;
* Datadog's browser SDK with ``compressIntakeRequests`` posts zlib-deflate bodies as
  ``text/plain`` with no ``Content-Encoding``; only ``dd-evp-encoding=deflate`` inside its
  ``ddforward`` query parameter says so (:func:`datadog_coding`);
* anything else (``br``, ``zstd``, unknown names, stacked codings) is refused with **415**
  naming it; a body that does not inflate with **400** saying so; and a body over the limit,
  as sent or once inflated, with **413**.

Inflation is incremental (``zlib`` ``decompressobj`` with ``max_length``): a zip bomb never
makes more than ``limit + 1`` bytes of output, however much it would inflate to.

>>> import gzip, zlib
>>> inflate(gzip.compress(b'{"metrics":{}}'), "gzip", limit=100)
b'{"metrics":{}}'
>>> raw = zlib.compressobj(wbits=-15); inflate(raw.compress(b"[1]") + raw.flush(), "deflate", limit=100)
b'[1]'
>>> inflate(zlib.compress(b"x" * 1_000_000), "deflate", limit=65536)
Traceback (most recent call last):
...
streams.ingest.inflate.BodyError: 413: body is over the 65536 byte limit once inflated (Content-Encoding 'deflate')
>>> coding_of("br")
Traceback (most recent call last):
...
streams.ingest.inflate.BodyError: 415: Content-Encoding 'br' is not supported: send gzip, deflate or identity
"""

from __future__ import annotations

import zlib
from urllib.parse import parse_qsl, urlsplit

__all__ = ["BodyError", "Inflater", "coding_of", "datadog_coding", "inflate", "read_body"]

_ALIASES = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "identity": "identity"}
# Output bytes asked of zlib per call: small enough to stop a bomb early, large enough that
# a 64 KiB body takes a few calls.
_STEP = 16 * 1024


class BodyError(Exception):
    """A body the endpoint refuses before parsing it: ``status`` (400, 413 or 415) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def coding_of(header: str | None, source: str = "Content-Encoding") -> str:
    """The one coding a ``Content-Encoding`` value names: ``gzip``, ``deflate`` or ``identity``.

    ``identity`` entries are dropped (``gzip, identity`` is gzip); more than one other coding
    is refused, as is any coding but these.

    >>> coding_of(None), coding_of(" GZIP "), coding_of("identity, deflate"), coding_of("x-gzip")
    ('identity', 'gzip', 'deflate', 'gzip')
    """
    if not header:
        return "identity"
    names = [name.strip().lower() for name in header.split(",")]
    codings = [name for name in names if name and name != "identity"]
    if not codings:
        return "identity"
    if len(codings) > 1:
        raise BodyError(415, f"{source} {header[:60]!r}: more than one coding is not supported: "
                             "send one of gzip or deflate")
    coding = _ALIASES.get(codings[0])
    if coding is None:
        raise BodyError(415, f"{source} {codings[0][:40]!r} is not supported: send gzip, deflate or identity")
    return coding


def datadog_coding(query: dict[str, str]) -> str | None:
    """The coding Datadog's ``ddforward`` query parameter names (``dd-evp-encoding``), or None.

    >>> datadog_coding({"ddforward": "/api/v2/rum?ddsource=browser&dd-evp-encoding=deflate&batch_time=1"})
    'deflate'
    >>> datadog_coding({"ddforward": "/api/v2/rum?ddsource=browser"}), datadog_coding({})
    (None, None)
    """
    forward = query.get("ddforward")
    if not forward or "dd-evp-encoding" not in forward:
        return None
    value = dict(parse_qsl(urlsplit(forward).query)).get("dd-evp-encoding")
    if value is None:
        return None
    if value.strip().lower() != "deflate":
        raise BodyError(415, f"dd-evp-encoding {value[:40]!r} (in ddforward) is not supported: deflate only")
    return "deflate"


class Inflater:
    """Takes a body's bytes as they arrive (:meth:`feed`) and gives the inflated body
    (:meth:`finish`), raising :class:`BodyError` as soon as it is refused.

    ``limit`` bounds the body as sent and once inflated; ``source`` names where the coding
    came from, for the messages.

    >>> inflater = Inflater("identity", limit=4)
    >>> inflater.feed(b"ab"); inflater.feed(b"cd"); inflater.finish()
    b'abcd'
    """

    def __init__(self, coding: str, limit: int, source: str = "Content-Encoding") -> None:
        self.coding, self.limit, self.source = coding, limit, source
        self.parts: list[bytes] = []
        self.size = 0  # output bytes so far
        self.sent = 0  # input bytes so far
        self.decoder: zlib._Decompress | None = None
        self.head = b""  # a deflate body's first byte, until the second tells zlib from raw

    def _refuse(self, what: str) -> BodyError:
        return BodyError(400, f"body cannot be decoded as {self.source} {self.coding!r}: {what}")

    def _too_large(self, inflated: bool) -> BodyError:
        where = f" once inflated ({self.source} {self.coding!r})" if inflated else ""
        return BodyError(413, f"body is over the {self.limit} byte limit{where}")

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body as sent."""
        if not chunk:
            return
        self.sent += len(chunk)
        if self.sent > self.limit:
            raise self._too_large(inflated=False)
        if self.coding == "identity":
            self.parts.append(chunk)
            self.size = self.sent
            return
        if self.decoder is None:
            chunk = self._start(chunk)
            if self.decoder is None:
                return
        self._inflate(chunk)

    def _start(self, chunk: bytes) -> bytes:
        """Choose the decoder from the first bytes; what of ``chunk`` is left for it."""
        if self.coding == "gzip":
            self.decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            return chunk
        head = self.head + chunk
        if len(head) < 2:  # a zlib header is two bytes: wait for the second
            self.head = head
            return b""
        self.head = b""
        # RFC 1950: compression method 8, a window of at most 32 KiB, the header a multiple of 31;
        # anything else is a raw RFC 1951 stream (what some browsers and libraries send as deflate)
        zlib_wrapped = head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and ((head[0] << 8) | head[1]) % 31 == 0
        self.decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        return head

    def _inflate(self, data: bytes) -> None:
        while True:
            decoder = self.decoder
            if decoder.eof:
                if not data:
                    return
                data = self._next_member(data)
                continue
            asked = min(self.limit + 1 - self.size, _STEP)  # never more than one byte past the limit
            try:
                out = decoder.decompress(data, asked)
            except zlib.error as exc:
                raise self._refuse(str(exc)) from None
            if out:
                self.parts.append(out)
                self.size += len(out)
                if self.size > self.limit:
                    raise self._too_large(inflated=True)
            data = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
            if not data and len(out) < asked:  # every byte taken, and zlib holds no more output
                return

    def _next_member(self, data: bytes) -> bytes:
        """Bytes after the end of a stream: another gzip member (RFC 1952 allows several), or refused."""
        if self.coding == "gzip" and data[:2] == b"\x1f\x8b":
            self.decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            return data
        raise self._refuse(f"{len(data)} bytes after the end of the compressed stream")

    def finish(self) -> bytes:
        """The inflated body, once every byte was fed; refused when the stream is cut short."""
        if self.coding != "identity":
            if self.head:
                raise self._refuse("a body of one byte")
            if self.decoder is not None and not self.decoder.eof:
                raise self._refuse("the compressed stream is cut short")
        return b"".join(self.parts)


def inflate(body: bytes, coding: str, limit: int, source: str = "Content-Encoding") -> bytes:
    """``body`` inflated by ``coding`` (see :class:`Inflater`); an empty body stays empty."""
    inflater = Inflater(coding, limit, source)
    inflater.feed(body)
    return inflater.finish()


async def read_body(content, coding: str, limit: int, source: str = "Content-Encoding") -> bytes:
    """Read an aiohttp request's body (``request.content``) as it arrives, inflating it."""
    chunk = await content.readany()
    if coding == "identity" and (not chunk or content.at_eof()):  # the usual body: plain, and whole at once
        if len(chunk) > limit:
            raise Inflater(coding, limit, source)._too_large(inflated=False)
        return chunk
    inflater = Inflater(coding, limit, source)
    while chunk:
        inflater.feed(chunk)
        if content.at_eof():  # no second wait for a body that came whole
            break
        chunk = await content.readany()
    return inflater.finish()
