"""The open operational routes: ``/healthz`` (liveness), ``/readyz`` (readiness) and
``/metrics`` (Prometheus).

``/healthz`` answers 200 while the process serves, whatever the broker does. ``/readyz``
answers 200 only when the worker can do its work: it owns its partitions, every stage-1
partition sends, it reaches the broker, and its judge has caught up with ``rum.windows``
since it (re)started. A worker tells it what it knows through a :class:`Readiness` on the
application (:data:`READINESS`); without one (a test, a bare API) only the backend's
partitions and failing stage-1 partitions count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from streams.http.backend import backend_of
from streams.http.replies import json

__all__ = ["READINESS", "ROUTES", "Readiness"]


@dataclass
class Readiness:
    """What ``/readyz`` knows of the broker connection and of the judge's progress.

    The worker feeds it (``streams.live.runtime``): the outcome of every send
    (:meth:`sent`), a periodic probe of the broker (:meth:`probed`), when its
    ``rum.windows`` partitions were assigned (:meth:`assigned`), their end offsets at that
    point (:meth:`ends`) and each record the judge has finished (:meth:`judged`).

    Not ready while any of these holds:

    * the broker has not answered yet, its last probe failed, or no probe has ended for
      ``stale_after_s`` (the prober itself is stuck);
    * the last send failed and neither a send nor a probe begun after it has succeeded
      since (a probe alone clears it, so that a worker that sends nothing while it is out
      of service, an ingestion-only replica, comes back once the broker answers);
    * the judge has not yet judged every ``rum.windows`` record that was on its partitions
      when they were assigned (it re-reads them from the start to rebuild its gates: its
      verdicts until then are not the ones it will publish). Once caught up it stays so
      until the next assignment; its lag is reported either way. (The embedded broker
      reports a partition's end offset per record batch, a little short of the last
      record: there the judge counts as caught up up to one producer batch early.)

    >>> r = Readiness(clock=lambda: 10.0)
    >>> r.problems()
    ['broker not checked yet']
    >>> r.probed(None, started_at=9.0); r.assigned([0]); r.problems()
    ['judge catching up on rum.windows: end offsets not read yet']
    >>> r.ends({0: 3}); r.judged(0, 1); r.problems()
    ['judge catching up on rum.windows: partition 0 at offset 2 of 3 (lag 1)']
    >>> r.judged(0, 2); r.problems()
    []
    """

    stale_after_s: float = 15.0
    clock: Callable[[], float] = time.monotonic
    probe_ended_at: float | None = None  # the last probe's end (clock time)
    probe_error: str | None = None  # why the last probe failed (None: the broker answered)
    send_error: str | None = None  # the last send failed, and why (None: it succeeded)
    send_failed_at: float | None = None
    targets: dict[int, int | None] = field(default_factory=dict)  # rum.windows partition → end offset at assignment
    next_offset: dict[int, int] = field(default_factory=dict)  # rum.windows partition → last judged offset + 1
    end_offset: dict[int, int] = field(default_factory=dict)  # the latest end offsets read
    caught_up: bool = True  # nothing assigned: nothing to catch up with

    # -- what the worker reports ---------------------------------------------------------

    def sent(self, error: str | None) -> None:
        """One send's outcome: None when the broker acknowledged it, else why it failed."""
        if error is None:
            self.send_error = self.send_failed_at = None
        else:
            self.send_error, self.send_failed_at = error, self.clock()

    def probed(self, error: str | None, started_at: float) -> None:
        """A probe begun at ``started_at`` has ended: None when the broker answered."""
        self.probe_ended_at, self.probe_error = self.clock(), error
        if error is None and self.send_failed_at is not None and started_at > self.send_failed_at:
            self.send_error = self.send_failed_at = None  # the broker answers again since that failure

    def assigned(self, partitions: Iterable[int]) -> None:
        """The judge now owns these ``rum.windows`` partitions and re-reads them from the start."""
        self.targets = {p: None for p in partitions}
        self.next_offset = {}
        self.caught_up = not self.targets

    def ends(self, ends: Mapping[int, int]) -> None:
        """End offsets of ``rum.windows`` partitions, read now; the first read after an
        assignment is what the judge must reach."""
        self.end_offset.update(ends)
        for p, target in self.targets.items():
            if target is None and p in ends:
                self.targets[p] = ends[p]
        self._check_caught_up()

    def judged(self, partition: int, offset: int) -> None:
        """The judge has finished the record at ``offset`` of ``partition``."""
        if partition in self.targets:
            self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset + 1)
            self._check_caught_up()

    def _check_caught_up(self) -> None:
        if not self.caught_up and all(t is not None and self.next_offset.get(p, 0) >= t
                                      for p, t in self.targets.items()):
            self.caught_up = True

    # -- what /readyz says ---------------------------------------------------------------

    def problems(self) -> list[str]:
        """Why the worker is not ready, one sentence each (empty: ready)."""
        out = []
        now = self.clock()
        if self.probe_ended_at is None:
            out.append("broker not checked yet")
        elif self.probe_error is not None:
            out.append(f"broker unreachable: {self.probe_error}")
        elif now - self.probe_ended_at > self.stale_after_s:
            out.append(f"broker not checked for {now - self.probe_ended_at:.0f} s")
        if self.send_error is not None:
            out.append(f"the last send to the broker failed ({self.send_error}) and none has succeeded since")
        if not self.caught_up:
            unread = sorted(p for p, t in self.targets.items() if t is None)
            if unread:
                out.append("judge catching up on rum.windows: end offsets not read yet")
            else:
                behind = [(p, self.next_offset.get(p, 0), t) for p, t in sorted(self.targets.items())
                          if self.next_offset.get(p, 0) < t]
                out.append("judge catching up on rum.windows: " + ", ".join(
                    f"partition {p} at offset {n} of {t} (lag {t - n})" for p, n, t in behind))
        return out

    def report(self) -> dict[str, Any]:
        """The state behind the answer: the broker's, and the judge's lag per partition."""
        lag = {str(p): max(0, self.end_offset[p] - self.next_offset.get(p, 0))
               for p in sorted(self.targets) if p in self.end_offset}
        return {"broker": {"reachable": self.probe_ended_at is not None and self.probe_error is None,
                           "last_send_failed": self.send_error},
                "judge": {"caught_up": self.caught_up, "lag": lag}}


READINESS = web.AppKey("rumgate.readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    """Liveness (200 while the process serves, whether or not the broker answers), with
    ``ready``: once the worker owns its partitions and has read back its published
    verdicts, and which partitions those are (``/readyz`` says whether it can work)."""
    backend = backend_of(request)
    return json({"status": "ok", "rollouts": len(backend.rollouts), "ready": backend.partitions is not None,
                 "partitions": backend.partitions or []})


def not_ready(backend, readiness: Readiness | None) -> list[str]:
    """Why the worker is not ready (empty: ready): what ``/readyz`` and ``rumgate_ready`` say."""
    reasons = []
    if backend.partitions is None:
        reasons.append("not ready: joining the consumer group")
    reasons += [backend.failing[p] for p in sorted(backend.failing)]
    if readiness is not None:
        reasons += readiness.problems()
    return reasons


async def readyz(request: web.Request) -> web.Response:
    """Readiness, for a probe that takes the worker out of service: 200 once it owns its
    partitions, every stage-1 partition sends, the broker answers and the judge has caught
    up with ``rum.windows``; 503 with the reasons otherwise (joining its group, a partition
    being rebuilt after a failed send, the broker unreachable or a send failed since it last
    answered, the judge still re-reading its partitions)."""
    backend = backend_of(request)
    readiness = request.config_dict.get(READINESS)
    reasons = not_ready(backend, readiness)
    extra = readiness.report() if readiness is not None else {}
    if reasons:
        failing = {"failing": sorted(backend.failing)} if backend.failing else {}
        return json({"ready": False, "reason": "; ".join(reasons), **failing, **extra}, status=503)
    return json({"ready": True, "partitions": backend.partitions, **extra})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=backend_of(request).metrics.render(), content_type="text/plain", charset="utf-8")


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
]
