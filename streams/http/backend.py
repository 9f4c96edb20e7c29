"""What the HTTP API serves, and how a handler reaches it.

The worker fills a :class:`Backend` from the topics; :func:`streams.http.api.make_api` puts it
on the application under :data:`BACKEND`, with the clock under :data:`CLOCK`, so that each
handler reads them from its request instead of from a closure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from detectors.override import Override
from detectors.rollout import Rollout
from detectors.verdict import ReasonCode, supersedes
from streams.http.metrics import Metrics

__all__ = ["BACKEND", "CLOCK", "Backend", "backend_of", "no_verdict", "now_ms"]


def no_verdict(rollout_id: str) -> dict[str, Any]:
    """What the verdict endpoint says before the first verdict: continue (Inconclusive)."""
    return {"rollout": rollout_id, "seq": 0, "verdict": "continue", "severity": "none",
            "reasons": ["no verdict yet: no window of this rollout has been judged"],
            "reason_codes": [ReasonCode.NO_VERDICT_YET]}


@dataclass
class Backend:
    """What the API reads and how it writes; the worker fills it from the topics."""

    rollouts: dict[str, Rollout] = field(default_factory=dict)
    latest: dict[str, dict] = field(default_factory=dict)  # verdict key → latest verdict event
    overrides: dict[str, list[Override]] = field(default_factory=dict)
    publish_rollout: Callable[[Rollout], Awaitable[None]] | None = None
    publish_override: Callable[[Override], Awaitable[None]] | None = None
    history: Callable[[str], Awaitable[list[dict]]] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    #: The partitions the worker judges and aggregates, once it has joined its group and read
    #: back what it published before (None until then): what ``/healthz`` calls ready.
    partitions: list[str] | None = None
    #: Stage-1 partitions whose last send failed, with why: being rebuilt from their
    #: checkpoint, so the worker is not ready (``/readyz``) until they send again.
    failing: dict[int, str] = field(default_factory=dict)

    def offer_verdict(self, key: str, event: dict) -> bool:
        """Keep ``event`` as the latest verdict of ``key`` if it supersedes the one held
        (:func:`detectors.verdict.supersedes`). True when kept."""
        if supersedes(event, self.latest.get(key)):
            self.latest[key] = event
            return True
        return False

    def verdict(self, rollout_id: str) -> dict[str, Any]:
        """The latest verdict of ``rollout_id``, or :func:`no_verdict` before the first."""
        return self.latest.get(rollout_id) or no_verdict(rollout_id)


BACKEND = web.AppKey("rumgate.backend", Backend)
CLOCK = web.AppKey("rumgate.clock", Callable[[], int])  # epoch milliseconds


def backend_of(request: web.Request) -> Backend:
    return request.config_dict[BACKEND]


def now_ms(request: web.Request) -> int:
    return request.config_dict[CLOCK]()
