"""A canary rollout: which release is judged against which, under which policy, from when.

Recorded on ``rum.rollouts`` by the CLI and the HTTP API, and read back by every worker;
the file backtest and the topic replay build one from their arguments. Its JSON is the
record's value.

>>> from detectors.policy import DEFAULT_POLICY
>>> r = Rollout("shop-web:r2", "shop-web", "r2", "r1", started_at=1763856000000, policy=DEFAULT_POLICY)
>>> Rollout.from_dict(r.to_dict()) == r
True
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from detectors.policy import DEFAULT_POLICY, Policy

__all__ = ["Rollout"]


@dataclass(frozen=True)
class Rollout:
    """One canary rollout as recorded on ``rum.rollouts``."""

    id: str
    app: str
    canary: str
    baseline: str
    started_at: int  # epoch ms (event time): windows from here on are judged
    policy: Policy
    expected_share: float | None = None
    ended_at: int | None = None
    #: Policies run beside the enforcing one; their verdicts are marked dry_run and decide nothing.
    dry_run_policies: tuple[Policy, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "app": self.app, "canary": self.canary, "baseline": self.baseline,
                "started_at": self.started_at, "policy": self.policy.to_dict(),
                "expected_share": self.expected_share, "ended_at": self.ended_at,
                "dry_run_policies": [p.to_dict() for p in self.dry_run_policies]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rollout:
        policy = Policy.from_dict(d["policy"]) if d.get("policy") else DEFAULT_POLICY
        dry = tuple(replace(Policy.from_dict(p), dry_run=True) for p in d.get("dry_run_policies") or ())
        return cls(id=str(d["id"]), app=str(d["app"]), canary=str(d["canary"]), baseline=str(d["baseline"]),
                   started_at=int(d["started_at"]), policy=policy,
                   expected_share=d.get("expected_share"), ended_at=d.get("ended_at"), dry_run_policies=dry)
