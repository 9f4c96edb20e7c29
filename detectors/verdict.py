"""Verdict events: what the gate decided, and the evidence a person can read.

The JSON form is the event published to ``rum.verdicts`` and written by ``rumgate
backtest`` (schema in ``docs/architecture.md``). ``emitted_at`` is processing time, so
the core leaves it to the caller; everything else is a pure function of the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["VERDICTS", "SEVERITIES", "EXIT_CODES", "MetricEvidence", "Verdict"]

VERDICTS = ("continue", "promote", "hold", "rollback")
SEVERITIES = ("none", "minor", "major", "critical")
#: Process exit codes shared by every command that ends with a verdict.
EXIT_CODES = {"promote": 0, "rollback": 1, "hold": 2, "continue": 2}


@dataclass(frozen=True)
class MetricEvidence:
    """Evidence for one (metric, segment): estimates, the bracket, e-values, status.

    ``worse_by_at_least`` is the largest tolerance at which "the canary is worse by at
    least this much" has been proven; ``not_worse_than`` the smallest at which "it is not
    worse than this" has. Both are anytime-valid, so together they bracket the effect.
    """

    metric: str
    statistic: str
    segment: str
    name: str
    canary: float | None
    baseline: float | None
    ratio: float | None
    worse_by_at_least: float | None
    not_worse_than: float | None
    e_rollback: float | None  # at the rollback tolerance
    e_worse: float | None  # at tolerance 0: "worse at all" (what the fast path uses)
    e_promote: float | None
    threshold_rollback: float | None
    threshold_promote: float | None
    n_canary: int
    n_baseline: int
    status: str  # worse | not_worse | inconclusive | insufficient
    severity: str = "none"
    reason: str | None = None


@dataclass(frozen=True)
class Verdict:
    rollout: str
    app: str
    canary: str
    baseline: str
    seq: int
    verdict: str
    severity: str
    at: int
    policy: dict[str, Any]
    reasons: list[str]
    metrics: list[MetricEvidence]
    data_quality: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    emitted_at: int | None = None
    overrides: list[dict[str, Any]] = field(default_factory=list)  # on record, each with "active"

    @property
    def key(self) -> str:
        """The stream this verdict belongs to: the rollout, or one of its dry-run policies."""
        if self.policy.get("dry_run"):
            return f"{self.rollout}~dry-run:{self.policy.get('name')}"
        return self.rollout

    @property
    def watching(self) -> bool:
        """A promote whose post-promotion watch is still running."""
        return (self.detectors.get("post_promotion_watch") or {}).get("status") == "watching"

    @property
    def decided(self) -> bool:
        """Whether this verdict ends the rollout's automatic phase (a watch keeps it going)."""
        if self.watching:
            return False
        return self.verdict in ("promote", "rollback") or (
            self.verdict == "hold" and any(r.startswith("inconclusive") for r in self.reasons)
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """A verdict event (as published on ``rum.verdicts``) back into a :class:`Verdict`."""
        return cls(**{**d, "metrics": [MetricEvidence(**m) for m in d.get("metrics", ())]})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # Field order of the published schema: identity, decision, evidence.
        order = ["rollout", "app", "canary", "baseline", "seq", "verdict", "severity", "at",
                 "emitted_at", "policy", "reasons", "overrides", "metrics", "data_quality", "detectors",
                 "inputs"]
        return {k: out[k] for k in order}
