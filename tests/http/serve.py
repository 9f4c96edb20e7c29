"""The API over aiohttp's test server, with a Backend filled in memory: no broker, no worker.

Plain sync tests: each :func:`call` runs a :class:`aiohttp.test_utils.TestClient` inside
``asyncio.run`` (the project has no asyncio pytest plugin).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from detectors.override import Override
from detectors.policy import DEFAULT_POLICY
from detectors.rollout import Rollout
from streams.http.api import Backend, make_api

TOKEN = "s3cret-token"
NOW = 1_763_856_000_000  # the clock every test app runs on
AUTHZ = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Recorder:
    """Stands in for the topics: records what the API publishes and serves a canned history."""

    rollouts: list[Rollout] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    history_asked: list[str] = field(default_factory=list)
    history: dict[str, list[dict]] = field(default_factory=dict)

    async def publish_rollout(self, rollout: Rollout) -> None:
        self.rollouts.append(rollout)

    async def publish_override(self, override: Override) -> None:
        self.overrides.append(override)

    async def read_history(self, rollout_id: str) -> list[dict]:
        self.history_asked.append(rollout_id)
        return self.history.get(rollout_id, [])


def backend(*rollouts: Rollout, latest: dict[str, dict] | None = None) -> tuple[Backend, Recorder]:
    rec = Recorder()
    b = Backend(publish_rollout=rec.publish_rollout, publish_override=rec.publish_override,
                history=rec.read_history)
    for r in rollouts:
        b.rollouts[r.id] = r
    b.latest.update(latest or {})
    return b, rec


def rollout(rid: str = "shop:r2", started_at: int = NOW - 60_000, **kw) -> Rollout:
    """A rollout of app ``APP`` and canary ``RELEASE`` for the id ``APP:RELEASE``, baseline r1."""
    app, _, canary = rid.partition(":")
    return Rollout(rid, app, canary or "r2", "r1", started_at, DEFAULT_POLICY, **kw)


def verdict(rid: str, kind: str, seq: int = 3) -> dict:
    return {"rollout": rid, "seq": seq, "verdict": kind, "severity": "none", "reasons": [f"sample {kind}"]}


@dataclass
class Reply:
    status: int
    body: Any  # parsed JSON, else the text
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def allow(self) -> set[str]:
        """The methods of a 405's ``Allow`` header (HEAD, which comes with GET, left out)."""
        return {m.strip() for m in self.headers.get("Allow", "").split(",") if m.strip()} - {"HEAD"}

    @property
    def error(self) -> str:
        assert isinstance(self.body, dict) and isinstance(self.body.get("error"), str), self
        return self.body["error"]


_AUTH = object()


@dataclass
class Served:
    """The API over one backend. An aiohttp app runs on one event loop only, so every
    :meth:`calls` builds a fresh app over the same backend (the state lives there)."""

    backend: Backend
    token: str = TOKEN
    read_open: bool = False
    hook_token: str = ""

    def app(self) -> web.Application:
        return make_api(self.backend, token=self.token, read_open=self.read_open, now_ms=lambda: NOW,
                        hook_token=self.hook_token)

    def call(self, method: str, path: str, body: Any = None, *, headers: Any = _AUTH,
             raw: bytes | None = None) -> Reply:
        """One request; by default with the right token, ``headers={}`` for none."""
        return self.calls([(method, path, body, headers, raw)])[0]

    def calls(self, requests: list[tuple]) -> list[Reply]:
        """``(method, path, body, headers, raw)`` requests in order, on one server."""
        return asyncio.run(_send(self.app(), requests))


def api(b: Backend, token: str = TOKEN, read_open: bool = False, hook_token: str = "") -> Served:
    return Served(b, token, read_open, hook_token)


async def _send(app: web.Application, requests: list[tuple]) -> list[Reply]:
    async with TestClient(TestServer(app)) as client:
        out = []
        for method, path, body, headers, raw in requests:
            data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
            h = dict(AUTHZ if headers is _AUTH else headers)
            if data is not None:
                h["Content-Type"] = "application/json"
            resp = await client.request(method, path, data=data, headers=h)
            payload = await resp.read()
            try:
                parsed = orjson.loads(payload)
            except orjson.JSONDecodeError:
                parsed = payload.decode(errors="replace")
            out.append(Reply(resp.status, parsed, resp.headers.get("Content-Type", ""), dict(resp.headers)))
        return out
