"""Shared by the format tests: the fixtures, a request context, and a validity check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from detectors.beacon import validate_beacon
from streams.ingest.formats import Context, parse_body, to_canonical

FIXTURES = Path(__file__).parent / "fixtures"

RECEIVED_AT = 1_763_856_000_123
CTX = Context(received_at=RECEIVED_AT, app="ctx-app", release="ctx-release", country="DE")
BARE = Context(received_at=RECEIVED_AT)  # a request that names nothing


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load(name: str) -> Any:
    return json.loads(raw(name))


def query(name: str) -> dict[str, str]:
    """A fixture query string as the web framework hands it over (decoded params)."""
    return dict(parse_qsl(raw(name).decode(), keep_blank_values=True))


def convert(body: bytes, content_type: str, ctx: Context = CTX, **kw: Any) -> tuple[list, list]:
    """parse_body then to_canonical, checking every beacon with validate_beacon."""
    beacons, rejects = to_canonical(parse_body(body, content_type, **kw), ctx)
    assert_valid(beacons)
    return beacons, rejects


def assert_valid(beacons: list[dict]) -> None:
    for beacon in beacons:
        checked, reason = validate_beacon(beacon)
        assert reason is None, (reason, beacon)
        assert checked is not None and checked.ts == beacon["ts"]
