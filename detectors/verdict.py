"""Verdict events: what the gate decided, and the evidence a person can read.

The JSON form is the event published to ``rum.verdicts`` and written by ``rumgate
backtest`` (schema in ``docs/architecture.md``). ``emitted_at`` is processing time, so
the core leaves it to the caller; everything else is a pure function of the input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar

__all__ = ["VERDICTS", "SEVERITIES", "EXIT_CODES", "FINAL_HOLD_CODES", "VerdictKind", "HoldKind", "MetricStatus",
           "Severity", "ReasonCode", "MetricEvidence", "Verdict", "hold_kind", "hold_of", "supersedes",
           "latest_by_key"]


class _Vocabulary(StrEnum):
    """A closed vocabulary whose members are equal to, hash as and print as their strings.

    So ``v.verdict == "rollback"`` and ``EXIT_CODES["hold"]`` work, orjson and json write
    members as plain strings (the published JSON is as with bare strings), and a ``repr``
    (in messages, doctests, logs) reads as the string's.
    """

    def __repr__(self) -> str:
        return repr(self._value_)


class VerdictKind(_Vocabulary):
    """What the gate (or a person, by override) says about a rollout."""

    CONTINUE = "continue"
    PROMOTE = "promote"
    HOLD = "hold"
    ROLLBACK = "rollback"


class MetricStatus(_Vocabulary):
    """What the evidence of one (metric, segment) shows."""

    WORSE = "worse"  # proven worse than the rollback tolerance
    NOT_WORSE = "not_worse"  # proven not worse than the promote tolerance
    INCONCLUSIVE = "inconclusive"  # enough data, neither proven yet
    INSUFFICIENT = "insufficient"  # not enough canary data yet


class Severity(_Vocabulary):
    """How bad a rollback is; members are listed from least to most severe."""

    NONE = "none"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


class ReasonCode(_Vocabulary):
    """The machine-readable kind of a reason, one beside each human reason of a verdict.

    The texts are for people and may change; code that acts on why a verdict was given reads
    these. The first code is the one that decided the verdict.
    """

    # the gate (detectors.gate)
    WORSE = "worse"  # a metric proven worse: one per worse (metric, segment)
    GLOBAL_INCIDENT = "global_incident"  # the baseline moved too: no decision on this window
    SRM = "srm"  # sample-ratio mismatch
    FEW_SESSIONS = "few_sessions"  # an arm's page views of a window come from too few sessions
    NO_CANARY = "no_canary"  # no canary beacons for max_silence
    WARMUP = "warmup"
    PROVEN_NOT_WORSE = "proven_not_worse"  # promote
    DEADLINE = "deadline"  # inconclusive at max_duration: a person must decide
    COLLECTING = "collecting"
    # the post-promotion watch (detectors.gate, detectors.incident)
    WATCH_STARTED = "watch_started"  # added to the promote that starts a watch
    WATCHING = "watching"
    WATCH_PASSED = "watch_passed"
    WATCH_BROKEN = "watch_broken"  # rollback after promotion
    # overrides (detectors.override); the reason after an override's keeps the code of
    # what the evidence alone says
    OVERRIDE_PROMOTE = "override_promote"
    OVERRIDE_HOLD = "override_hold"
    OVERRIDE_ROLLBACK = "override_rollback"
    # before any window of the rollout was judged (the API's placeholder verdict)
    NO_VERDICT_YET = "no_verdict_yet"
    # the verdict endpoint was asked about a release the rollout does not judge (streams.http.rollouts)
    RELEASE_MISMATCH = "release_mismatch"
    # a reason of an event written before reason codes existed that no prefix below names
    UNKNOWN = "unknown"

    @classmethod
    def override(cls, action: str) -> ReasonCode:
        return cls(f"override_{action}")


class HoldKind(_Vocabulary):
    """Whether a hold lifts by itself or waits for a person.

    Deployment tools act on the difference: a transient hold is waited through (Argo keeps
    measuring, ``gate wait`` keeps waiting), a final one stops them at once (Argo pauses the
    Rollout, ``gate wait`` exits 2), because waiting longer cannot change it.
    """

    FINAL = "final"  # nothing rumgate will see lifts it: a person must decide
    TRANSIENT = "transient"  # lifts by itself once the data does (a mismatch ends, an incident closes, beacons arrive)


#: The reason codes whose hold is final: the deadline passed undecided, a person holds the
#: rollout, the deployment tool asks about a release the rollout does not judge (none of
#: which the next window can change). Every other hold (sample-ratio mismatch, incident, no
#: canary beacons yet, few sessions, and any code this version does not know) is transient.
FINAL_HOLD_CODES = frozenset({ReasonCode.DEADLINE, ReasonCode.OVERRIDE_HOLD, ReasonCode.RELEASE_MISMATCH})


def hold_kind(verdict: str | None, codes: list) -> HoldKind | None:
    """The kind of a hold decided by ``codes[0]``; None for any other verdict.

    >>> hold_kind("hold", ["deadline"]), hold_kind("hold", ["srm"]), hold_kind("promote", ["proven_not_worse"])
    ('final', 'transient', None)
    """
    if verdict != VerdictKind.HOLD:
        return None
    return HoldKind.FINAL if codes and codes[0] in FINAL_HOLD_CODES else HoldKind.TRANSIENT


VERDICTS = tuple(VerdictKind)
SEVERITIES = tuple(Severity)
#: Process exit codes shared by every command that ends with a verdict.
EXIT_CODES = {VerdictKind.PROMOTE: 0, VerdictKind.ROLLBACK: 1, VerdictKind.HOLD: 2, VerdictKind.CONTINUE: 2}


def _coerce(obj: Any, name: str, kind: type[StrEnum]) -> None:
    """Turn a string field of a frozen dataclass into its enum member (a ValueError if not one)."""
    value = getattr(obj, name)
    if type(value) is not kind:
        object.__setattr__(obj, name, kind(value))


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
    status: MetricStatus
    severity: Severity = Severity.NONE
    reason: str | None = None
    #: This window's own value in each arm (its quantile, or its rate), None when the window
    #: was not counted (warm-up, too few sessions; a post-promotion watch repeats the last
    #: counted one's): what the rollout page draws per window beside the cumulative estimates.
    window_canary: float | None = None
    window_baseline: float | None = None

    def __post_init__(self) -> None:
        _coerce(self, "status", MetricStatus)
        _coerce(self, "severity", Severity)


@dataclass(frozen=True)
class Verdict:
    rollout: str
    app: str
    canary: str
    baseline: str
    seq: int
    verdict: VerdictKind
    severity: Severity
    at: int
    policy: dict[str, Any]
    reasons: list[str]
    metrics: list[MetricEvidence]
    reason_codes: list[ReasonCode] = field(default_factory=list)  # one per reason, in the same order
    data_quality: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    emitted_at: int | None = None
    overrides: list[dict[str, Any]] = field(default_factory=list)  # on record, each with "active"
    #: final / transient for a hold, None otherwise. Not a constructor argument: it follows
    #: from the code that decided the verdict (:func:`hold_kind`), so that every way a
    #: verdict is made (the gate, an override applied with ``dataclasses.replace``, the API's
    #: release check) gets it right without repeating the rule.
    hold: HoldKind | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        _coerce(self, "verdict", VerdictKind)
        _coerce(self, "severity", Severity)
        if len(self.reason_codes) != len(self.reasons):
            raise ValueError(f"a verdict needs one reason code per reason: {len(self.reason_codes)} codes "
                             f"for {len(self.reasons)} reasons")
        object.__setattr__(self, "hold", hold_kind(self.verdict, self.reason_codes))

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
        """Whether this verdict ends the rollout's automatic phase (a watch keeps it going).

        Never for a transient hold, which the next windows may lift. Of the final holds only
        the deadline's: a person's hold (an override) stops the deployment tool just the
        same, but the judge must go on judging under it, so that its expiry, or the person's
        next override, reaches a verdict.
        """
        if self.watching:
            return False
        if self.verdict in (VerdictKind.PROMOTE, VerdictKind.ROLLBACK):
            return True
        return self.hold == HoldKind.FINAL and self.reason_codes[:1] == [ReasonCode.DEADLINE]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """A verdict event (as published on ``rum.verdicts``) back into a :class:`Verdict`.

        Strings become the enums. An event written before reason codes existed has none:
        its codes, and so :attr:`decided`, are then derived from the reason texts of that
        time (:func:`_legacy_code`), the one place that still reads them. An event without
        ``hold`` (written before hold kinds) gets the kind of its codes; one with it keeps
        what its writer said, which matters when the code is one this version does not
        know. Fields this version does not know (an event of a newer rumgate) are left out,
        as unknown codes are kept: reading an event must not fail on what it adds.
        """
        known = {f.name for f in fields(cls) if f.init}
        has_hold, stored = "hold" in d, d.get("hold")
        d = {k: v for k, v in d.items() if k in known}
        d["metrics"] = [MetricEvidence(**m) for m in d.get("metrics", ())]
        if "reason_codes" in d:
            d["reason_codes"] = [_code(c) for c in d["reason_codes"]]
        else:
            d["reason_codes"] = [_legacy_code(r, d.get("verdict")) for r in d.get("reasons", ())]
        v = cls(**d)
        if has_hold:
            _check_stored_hold(v, stored)
            if stored is not None and stored != v.hold:
                object.__setattr__(v, "hold", HoldKind(stored))
        return v

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # Field order of the published schema: identity, decision, evidence.
        order = ["rollout", "app", "canary", "baseline", "seq", "verdict", "hold", "severity", "at",
                 "emitted_at", "policy", "reasons", "reason_codes", "overrides", "metrics", "data_quality", "detectors",
                 "inputs"]
        return {k: out[k] for k in order}


def _check_stored_hold(v: Verdict, stored: Any) -> None:
    """Refuse an event's ``hold`` that cannot be: an unknown kind, or a kind on a verdict that
    is not a hold (or none on one that is)."""
    if stored is not None and stored not in tuple(HoldKind):
        raise ValueError(f"hold: must be one of {', '.join(HoldKind)} or null, got {stored!r}")
    if (stored is None) != (v.verdict != VerdictKind.HOLD):
        raise ValueError(f"hold: {stored!r} on a {v.verdict} verdict (a hold has a kind, nothing else has)")


def hold_of(event: Mapping[str, Any]) -> HoldKind | str | None:
    """The hold kind of a verdict event as published (a mapping), also of one written before
    hold kinds (from its codes) or before reason codes (from its texts): what the verdict
    endpoint serves as ``hold``, so that a condition reading it never meets a missing key.

    >>> hold_of({"verdict": "hold", "reason_codes": ["deadline"]}), hold_of({"verdict": "continue", "reasons": []})
    ('final', None)
    >>> hold_of({"verdict": "hold", "reasons": ["inconclusive after 120 min: a person must decide"]})
    'final'
    """
    if event.get("hold") is not None:
        return event["hold"]
    verdict = event.get("verdict")
    codes = event.get("reason_codes")
    if codes is None:
        codes = [_legacy_code(r, verdict) for r in event.get("reasons", ())]
    return hold_kind(verdict, [_code(c) for c in codes])


def _code(c: str) -> ReasonCode | str:
    """A code as its enum member; one of a newer rumgate this one does not know stays a string."""
    try:
        return ReasonCode(c)
    except ValueError:
        return c


#: Leading words of the reasons rumgate wrote before reason codes existed, and their codes.
_LEGACY_PREFIXES = (
    ("inconclusive", ReasonCode.DEADLINE),  # what ``decided`` looked for then
    ("global incident", ReasonCode.GLOBAL_INCIDENT),
    ("sample-ratio mismatch", ReasonCode.SRM),
    ("few sessions", ReasonCode.FEW_SESSIONS),
    ("no canary beacons", ReasonCode.NO_CANARY),
    ("warming up", ReasonCode.WARMUP),
    ("every metric proven not worse", ReasonCode.PROVEN_NOT_WORSE),
    ("collecting evidence", ReasonCode.COLLECTING),
    ("watching ", ReasonCode.WATCH_STARTED),
    ("promoted; post-promotion watch", ReasonCode.WATCHING),
    ("post-promotion watch passed", ReasonCode.WATCH_PASSED),
    ("post-promotion watch:", ReasonCode.WATCH_BROKEN),
    ("no verdict yet", ReasonCode.NO_VERDICT_YET),
)
_EVIDENCE_ALONE = "the evidence alone says "


def _legacy_code(reason: str, verdict: str | None) -> ReasonCode:
    """The code of a reason text of an event written before reason codes (see ``from_dict``)."""
    if reason.startswith("override by ") and verdict in VERDICTS and verdict != VerdictKind.CONTINUE:
        return ReasonCode.override(verdict)
    if reason.startswith(_EVIDENCE_ALONE):  # "the evidence alone says hold: inconclusive after ..."
        said, _, rest = reason[len(_EVIDENCE_ALONE):].partition(": ")
        return _legacy_code(rest, said) if rest else ReasonCode.UNKNOWN
    for prefix, code in _LEGACY_PREFIXES:
        if reason.startswith(prefix):
            return code
    if verdict == VerdictKind.ROLLBACK and " worse" in reason:  # "LCP p75 worse by ≥ 10% (e = ...)"
        return ReasonCode.WORSE
    return ReasonCode.UNKNOWN


E = TypeVar("E", bound=Mapping)


def supersedes(event: Mapping[str, Any], held: Mapping[str, Any] | None) -> bool:
    """Whether verdict event ``event`` replaces ``held`` as the latest of its key.

    A higher ``seq`` wins; an equal one replaces too (the same verdict read back from the
    topic). An event without an integer ``seq`` is not a verdict and never wins.

    >>> supersedes({"seq": 3}, {"seq": 2}), supersedes({"seq": 2}, {"seq": 2}), supersedes({"seq": 1}, {"seq": 2})
    (True, True, False)
    >>> supersedes({"seq": 1}, None), supersedes({"seq": "x"}, None)
    (True, False)
    """
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return False
    return held is None or seq >= held.get("seq", 0)


def latest_by_key(events: Iterable[tuple[str, E]]) -> dict[str, E]:
    """The latest verdict event per key, by :func:`supersedes`, from ``(key, event)`` pairs.

    The key is the record's key (a rollout id, or a rollout's dry-run policy) or the
    event's ``rollout``.

    >>> latest_by_key([("a", {"seq": 2, "v": 1}), ("a", {"seq": 1}), ("b", {"seq": 1}),
    ...                ("a", {"seq": 2, "v": 2}), ("b", {"seq": "x"})])
    {'a': {'seq': 2, 'v': 2}, 'b': {'seq': 1}}
    """
    latest: dict[str, E] = {}
    for key, event in events:
        if supersedes(event, latest.get(key)):
            latest[key] = event
    return latest
