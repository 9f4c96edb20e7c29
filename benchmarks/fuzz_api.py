"""Fuzz the control-plane API from its own OpenAPI description: no answer may be a 5xx.

The API (:func:`streams.http.api.make_api`, over an in-memory backend holding two running
rollouts of one app and an ended one) is served on a loopback port by aiohttp's test server,
in a thread with its own event loop. Schemathesis loads ``/v1/openapi.json`` from it
(``schemathesis.openapi.from_url``) and, for every operation of the control plane (rollouts,
verdicts, overrides, Flagger's hooks, ``/healthz``, ``/metrics``; schemathesis leaves out
``/v1/openapi.json``, the document it loaded), draws ``--examples`` cases
that fit the schema (positive) and as many that do not (negative), and sends each with the
right token, with none, and with a wrong one, in turn. Ingestion (``/v1/beacons``,
``/v1/rumgate.js``) is not part of the control plane and has its own fuzzing.

Checked on every answer: its status is below 500; an error answer is JSON ``{"error": str}``
with a non-empty message (the HTML rollout pages': a page with its message; a request line
over aiohttp's 8,190 bytes gets the parser's own plain-text 400); no answer contains the token or the wrong token sent; a 405
carries ``Allow``; a Flagger hook asked about an app with two running rollouts (and no
rollout id) never answers 200, since it cannot know which release's verdict is meant. Reported per operation and mode: cases sent, statuses seen, failures.

    python benchmarks/fuzz_api.py --examples 500 [--seed 1]

tests/reliability/test_api_fuzz.py runs the same with a few examples per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.policy import DEFAULT_POLICY  # noqa: E402
from detectors.rollout import Rollout  # noqa: E402
from streams.http.api import Backend, make_api  # noqa: E402

TOKEN = "fuzz-token-3f9c2a"
WRONG = "fuzz-wrong-8d1e7b"
NOW = 1_763_856_000_000
SKIPPED = ("/v1/beacons", "/v1/rumgate.js")  # ingestion: fuzzed on its own
AMBIGUOUS = "shop-web"  # the app with two running rollouts
_CREDENTIALS = ({"Authorization": f"Bearer {TOKEN}"}, {}, {"Authorization": f"Bearer {WRONG}"})


@dataclass
class Tally:
    """What one operation in one mode answered."""

    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def sample_backend() -> Backend:
    """The backend the API serves; :func:`reset` fills it. What the API publishes is dropped."""
    async def drop(_):
        return None

    async def no_history(_):
        return []

    return reset(Backend(publish_rollout=drop, publish_override=drop, history=no_history))


def reset(b: Backend) -> Backend:
    """A ready worker with two running rollouts of ``shop-web`` (so ``?app=shop-web`` is ambiguous), one of them
    with a promote verdict, and an ended one, nothing else: each operation is fuzzed from this state, whatever the last one did."""
    b.rollouts.clear()
    b.overrides.clear()
    b.latest.clear()
    b.partitions, b.failing = ["rum.beacons[0]", "rum.windows[0]"], {}  # a ready worker: /readyz is 200
    for rid, canary, ended in (("shop-web:2026.11.23-abc", "2026.11.23-abc", None),
                               ("shop-web:r3", "r3", None), ("cart:r2", "r2", NOW - 1)):
        app = rid.partition(":")[0]
        b.rollouts[rid] = Rollout(rid, app, canary, "r1", NOW - 60_000, DEFAULT_POLICY, ended_at=ended)
    b.latest["shop-web:r3"] = {"rollout": "shop-web:r3", "seq": 7, "verdict": "promote", "severity": "none",
                               "reasons": ["every guarded metric proven not worse"]}
    return b


@contextmanager
def served(backend: Backend) -> Iterator[str]:
    """The API on a loopback port (aiohttp's test server on its own loop); yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-api", daemon=True)
    thread.start()
    server = TestServer(make_api(backend, token=TOKEN, now_ms=lambda: NOW), host="127.0.0.1", port=0)
    asyncio.run_coroutine_threadsafe(server.start_server(), loop).result(30)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def problems(status: int, headers, body: bytes, query: dict | None = None, echoed: bytes = b"") -> list[str]:
    """What is wrong with one answer (empty: nothing). ``echoed``: the request's URL and body,
    which an error may quote; a token sent only in the Authorization header must not come back."""
    out = []
    if status == 200 and (query or {}).get("app") == AMBIGUOUS and "rollout" not in (query or {}):
        out.append(f"a hook answered for app {AMBIGUOUS!r}, which has two running rollouts")
    if status >= 500:
        out.append(f"{status}: {body[:200]!r}")
    if any(t in body and t not in echoed for t in (TOKEN.encode(), WRONG.encode())):
        out.append(f"{status}: the answer repeats a token")
    if status == 405 and "Allow" not in headers:
        out.append("405 without Allow")
    if 400 <= status < 500 and status != 409 and (headers.get("Content-Type") or "").startswith("text/html"):
        if b"<h1>" not in body:  # the rollout pages answer a person: an HTML page that says why
            out.append(f"{status}: an HTML error without its message: {body[:200]!r}")
    elif status == 400 and body.startswith(b"Got more than 8190 bytes when reading"):
        pass  # aiohttp's HTTP parser refusing a request line over its limit, before any handler runs
    elif 400 <= status < 500 and status != 409:
        try:
            err = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            err = None
        if not isinstance(err, str) or not err:
            out.append(f"{status}: not {{\"error\": message}}: {body[:200]!r}")
    return out


def _sent(request) -> bytes:
    """What a request carried outside its headers: its URL (percent-decoded) and its body."""
    from urllib.parse import unquote_to_bytes

    body = request.body or b""
    return unquote_to_bytes(request.url) + (body.encode() if isinstance(body, str) else body)


def operations(schema) -> list:
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if op.path not in SKIPPED]


def _strategy(op, mode):
    """The operation's cases, and as many again naming what the backend holds: a rollout id in
    the path; for Flagger's hooks the app with two running rollouts, or a rollout by id."""
    from hypothesis import strategies as st

    drawn = op.as_strategy(generation_mode=mode)
    if "{id}" in op.path:
        return st.one_of(drawn, op.as_strategy(generation_mode=mode, path_parameters={"id": "shop-web:r3"}))
    if op.path.startswith("/v1/flagger/"):
        return st.one_of(drawn, op.as_strategy(generation_mode=mode, query={"app": AMBIGUOUS}),
                         op.as_strategy(generation_mode=mode, query={"rollout": "shop-web:r3"}))
    return drawn


def fuzz_operation(op, mode, base_url: str, examples: int, tally: Tally, seed_value: int) -> None:
    """Send ``examples`` cases of ``op`` in ``mode``; every answer's problems go to ``tally``."""
    import requests

    session = requests.Session()

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(case=_strategy(op, mode))
    def run(case) -> None:
        headers = _CREDENTIALS[tally.cases % len(_CREDENTIALS)]
        tally.cases += 1
        kwargs = case.as_transport_kwargs(base_url=base_url, headers=None)
        sent = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
        kwargs["headers"] = {**sent, **headers}
        kwargs.setdefault("timeout", 30)
        try:
            response = session.request(**kwargs)
        except requests.ConnectionError as exc:  # the server went away or hung up: a failure
            tally.statuses["no answer"] += 1
            tally.failures.append(f"{case.method} {case.formatted_path}: no answer ({type(exc).__name__})")
            return
        except requests.RequestException:  # a request the client itself refuses to send
            tally.statuses["unsent"] += 1
            return
        tally.statuses[response.status_code] += 1
        tally.failures += [f"{case.method} {case.formatted_path}: {p}"
                           for p in problems(response.status_code, response.headers, response.content, case.query,
                                             _sent(response.request))]

    try:
        run()
    except Unsatisfiable:  # negative mode of an operation with no input to get wrong
        tally.statuses["nothing to negate"] += 1


def fuzz(examples: int, seed_value: int = 0) -> dict[tuple[str, str], Tally]:
    """Fuzz every control-plane operation, positive and negative; tallies by (operation, mode)."""
    import schemathesis
    from schemathesis import GenerationMode

    out: dict[tuple[str, str], Tally] = {}
    backend = sample_backend()
    with served(backend) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
        for op in operations(schema):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                reset(backend)
                tally = out.setdefault((f"{op.method.upper()} {op.path}", mode.value), Tally())
                fuzz_operation(op, mode, base_url, examples, tally, seed_value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="cases per operation and mode (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    tallies = fuzz(args.examples, args.seed)
    took = time.perf_counter() - start
    failures = 0
    for (op, mode), t in sorted(tallies.items()):
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(t.statuses.items(), key=lambda kv: str(kv[0])))
        print(f"{op:<42} {mode:<8} {t.cases:>6} cases  {statuses}")
        for f in t.failures[:5]:
            print(f"    FAIL {f}")

        failures += len(t.failures)
    cases = sum(t.cases for t in tallies.values())
    print(f"{cases} cases over {len(tallies)} operation×mode in {took:.1f} s; {failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
