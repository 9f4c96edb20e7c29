"""Human overrides: force promote, hold or rollback, on record, with who and why.

An override takes effect for the windows ending at or after its ``at`` and until its
``expires_at`` (if any); the latest one in effect wins. The gate keeps computing the
evidence underneath, so the verdict still says what the data shows. Every verdict of the
rollout lists the overrides on record, so none is ever silent.

>>> o = parse_override({"action": "hold", "actor": "ana", "reason": "marketing launch", "ticket": "OPS-1"},
...                    rollout="shop-web:r2", now_ms=1000)
>>> o.action, o.at, o.expires_at
('hold', 1000, None)
>>> parse_override({"action": "ship-it", "actor": "ana", "reason": "x"}, rollout="r", now_ms=0)
Traceback (most recent call last):
...
detectors.override.OverrideError: action: must be one of promote, hold, rollback, got 'ship-it'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from detectors.beacon import _TS_MAX  # epoch ms (the year 2286), as beacons
from detectors.verdict import ReasonCode, Severity, Verdict, VerdictKind

__all__ = ["ACTIONS", "Override", "OverrideError", "parse_override", "apply_overrides"]

ACTIONS = (VerdictKind.PROMOTE, VerdictKind.HOLD, VerdictKind.ROLLBACK)
_MAX_TEXT = 1000
_MAX_TTL_S = 366 * 86_400  # an override lasting over a year is a policy change, not an override


class OverrideError(ValueError):
    """An override was refused; the message names the field."""


@dataclass(frozen=True)
class Override:
    rollout: str
    action: str
    actor: str
    reason: str
    at: int  # epoch ms: in effect for windows ending at or after this
    ticket: str | None = None
    expires_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def active_at(self, t: int) -> bool:
        return self.at <= t and (self.expires_at is None or t < self.expires_at)


def _text(d: dict, name: str, required: bool) -> str | None:
    value = d.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OverrideError(f"{name}: required, a non-empty string" if value is None
                            else f"{name}: must be a non-empty string, got {type(value).__name__}")
    if len(value) > _MAX_TEXT:
        raise OverrideError(f"{name}: longer than {_MAX_TEXT} characters")
    return value.strip()


def _time(d: dict, name: str) -> int | None:
    value = d.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _TS_MAX:
        raise OverrideError(f"{name}: must be epoch milliseconds (a positive integer), got {value!r}")
    return value


def parse_override(d: Any, rollout: str, now_ms: int) -> Override:
    """Check an override request; ``now_ms`` is when it was received (its default ``at``).

    ``expires_at`` (epoch ms) or ``ttl_s`` (seconds from ``at``) bound it; an expiry not
    after ``at`` is refused.
    """
    if not isinstance(d, dict):
        raise OverrideError("override: must be a JSON object")
    unknown = set(d) - {"action", "actor", "reason", "ticket", "at", "expires_at", "ttl_s", "rollout"}
    if unknown:
        raise OverrideError(f"unknown field(s): {', '.join(sorted(unknown))}")
    action = d.get("action")
    if action not in ACTIONS:
        raise OverrideError(f"action: must be one of {', '.join(ACTIONS)}, got {action!r}")
    at = _time(d, "at") or now_ms
    expires_at = _time(d, "expires_at")
    ttl = d.get("ttl_s")
    if ttl is not None:
        if expires_at is not None:
            raise OverrideError("give expires_at or ttl_s, not both")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= _MAX_TTL_S:
            raise OverrideError(f"ttl_s: must be a number of seconds > 0 and at most a year, got {ttl!r}")
        expires_at = at + int(ttl * 1000)
    if expires_at is not None and expires_at <= at:
        raise OverrideError("expires_at: must be after the override takes effect (already expired)")
    return Override(rollout=rollout, action=action, actor=_text(d, "actor", True), reason=_text(d, "reason", True),
                    at=at, ticket=_text(d, "ticket", False), expires_at=expires_at)


def apply_overrides(verdict: Verdict, overrides: list[Override]) -> Verdict:
    """The verdict with the override in effect at its time applied, and all of them listed."""
    if not overrides:
        return verdict
    listed = [{**o.to_dict(), "active": o.active_at(verdict.at)} for o in overrides]
    active = [o for o in overrides if o.active_at(verdict.at)]
    if not active:
        return replace(verdict, overrides=listed)
    o = active[-1]
    said = f"override by {o.actor}: {o.action}, {o.reason}" + (f" ({o.ticket})" if o.ticket else "")
    evidence = [f"the evidence alone says {verdict.verdict}" + (f": {r}" if r else "")
                for r in verdict.reasons[:1]]
    # The evidence line keeps the code of what it quotes: why the data alone says what it says.
    codes = [ReasonCode.override(o.action), *verdict.reason_codes[: len(evidence)]]
    severity = Severity.NONE
    if o.action == VerdictKind.ROLLBACK:
        severity = verdict.severity
    return replace(verdict, verdict=o.action, severity=severity, reasons=[said, *evidence], reason_codes=codes,
                   overrides=listed)
