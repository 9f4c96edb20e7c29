"""The real SDKs' recorded requests (``tests/sdks/captures``), each converted as the endpoint would."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from pathlib import Path
from urllib.parse import parse_qsl

from streams.ingest.formats import Context, convert_items, parse_body
from tests.ingest.formats.helpers import RECEIVED_AT, assert_valid

CAPTURES = Path(__file__).resolve().parents[2] / "sdks" / "captures"


def requests(config: str) -> list[dict]:
    """The capture's POSTs, each with its ``body`` bytes (a gzip or zlib body inflated)."""
    out = []
    for request in json.loads((CAPTURES / f"{config}.json").read_text()):
        if request["method"] != "POST":
            continue
        body = base64.b64decode(request["body_b64"])
        if body[:2] == b"\x78\x9c":  # the Datadog SDK's compressed part: no Content-Encoding says so
            body = zlib.decompress(body)
        elif request["headers"].get("content-encoding") == "gzip":  # Elastic's
            body = gzip.decompress(body)
        out.append({**request, "body": body})
    return out


def items(request: dict) -> list:
    query = dict(parse_qsl(request["query"], keep_blank_values=True))
    return parse_body(request["body"], request["headers"].get("content-type", ""), query=query)


def context(request: dict) -> Context:
    """The request's context as the endpoint builds it: app and release from the query string."""
    query = dict(parse_qsl(request["query"], keep_blank_values=True))
    return Context(received_at=RECEIVED_AT, app=query.get("app"), release=query.get("release"))


def beacons(config: str) -> list[list[dict]]:
    """Per request, its beacons (checked with validate_beacon); every rejected item fails the test."""
    out = []
    for request in requests(config):
        conversion = convert_items(items(request), context(request))
        assert conversion.rejects == [], conversion.rejects
        assert_valid(conversion.beacons)
        out.append(conversion.beacons)
    return out
