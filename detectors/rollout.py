"""A canary rollout: which release is judged against which, under which policy, from when.

Recorded on ``rum.rollouts`` by the CLI and the HTTP API, and read back by every worker;
the file backtest and the topic replay build one from their arguments. Its JSON is the
record's value.

>>> from detectors.policy import DEFAULT_POLICY
>>> r = Rollout("shop-web:r2", "shop-web", "r2", "r1", started_at=1763856000000, policy=DEFAULT_POLICY)
>>> Rollout.from_dict(r.to_dict()) == r
True

Every rollout is checked when it is built, so the API, the control-topic follower and the
CLI refuse the same things with the same words. An id is written into URLs (Argo's
``/v1/rollouts/{id}/verdict``), record keys, log lines and verdict keys, so it is limited
to a safe alphabet and a length one can type: no whitespace, control or bidirectional
characters that would forge a log line or hide what is shown, and never ``~``, which
:attr:`detectors.verdict.Verdict.key` reserves for ``ID~dry-run:POLICY``:

>>> check_id("shop-web:2026.11.23-abc")
'shop-web:2026.11.23-abc'
>>> check_id("shop:r2~dry-run:shadow")
Traceback (most recent call last):
...
detectors.rollout.RolloutError: id: '~' (at 7) is not allowed: use letters, digits and . _ : / @ + - (starting with a letter or digit)

The alphabet is :func:`detectors.policy.name_problem`'s, since policy names share it. App
and release names (and policy names) are shorter: at most 63 characters, a Kubernetes
label value's length (the release is the pod label ``app.kubernetes.io/version``), so the
default id ``APP:RELEASE`` always fits in an id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from detectors.policy import DEFAULT_POLICY, MAX_NAME, NAME_CHARS, Policy, PolicyError, name_problem

__all__ = ["ID_PATTERN", "MAX_DRY_RUN_POLICIES", "MAX_END_REASON", "MAX_ID", "MAX_NAME", "MAX_SHARE_CHANGES",
           "NAME_PATTERN", "Rollout", "RolloutError", "SHARE_SETTLE_MS", "check_id", "check_name", "check_share",
           "name_problem"]

MAX_ID = 128
#: What an id may be (also the OpenAPI ``pattern`` of ids).
ID_PATTERN = rf"^[A-Za-z0-9][{NAME_CHARS}]{{0,{MAX_ID - 1}}}$"
#: What an app, release or policy name may be (:func:`check_name`).
NAME_PATTERN = rf"^[A-Za-z0-9][{NAME_CHARS}]{{0,{MAX_NAME - 1}}}$"
#: Each dry-run policy is judged on every window beside the enforcing one: a few build trust,
#: thousands would make one client's rollout cost the worker thousands of judgements.
MAX_DRY_RUN_POLICIES = 8
#: A ramp of a few dozen steps is long; the record carries its whole timeline of shares.
MAX_SHARE_CHANGES = 100
#: How long after a change of the expected share the sample-ratio test leaves windows out
#: (:meth:`Rollout.share_for`): pods of a new weight must start and become ready first.
SHARE_SETTLE_MS = 120_000
MAX_END_REASON = 200

class RolloutError(ValueError):
    """A rollout was refused; the message starts with the field, e.g. ``id: ...``."""


def check_id(value: Any, field: str = "id") -> str:
    """``value`` if it is a valid rollout id, else :class:`RolloutError` saying what is wrong."""
    return check_name(value, field, MAX_ID)


def check_name(value: Any, field: str, max_len: int = MAX_NAME) -> str:
    """``value`` if it is a valid app, release or policy name, else :class:`RolloutError`."""
    problem = name_problem(value, max_len)
    if problem:
        raise RolloutError(f"{field}: {problem}")
    return value


def _check_names(r: Rollout) -> None:
    for field in ("app", "canary", "baseline"):  # first: the default id is made of them
        check_name(getattr(r, field), field)
    check_id(r.id)


def check_share(value: Any, field: str = "expected_share") -> float | None:
    """``value`` as a share of traffic strictly between 0 and 1 (or None: not known), else
    :class:`RolloutError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise RolloutError(f"{field}: must be a number between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def _check_timeline(r: Rollout) -> None:
    check_share(r.expected_share)
    if len(r.share_changes) > MAX_SHARE_CHANGES:
        raise RolloutError(f"share_changes: {len(r.share_changes)} given, at most {MAX_SHARE_CHANGES}")
    previous = r.started_at
    for i, change in enumerate(r.share_changes):
        if not isinstance(change, tuple) or len(change) != 2 or not isinstance(change[0], int):
            raise RolloutError(f"share_changes[{i}]: must be [at (epoch ms), share]")
        if change[0] < previous:
            raise RolloutError(f"share_changes[{i}]: at {change[0]} is before the previous change (or the start)")
        check_share(change[1], f"share_changes[{i}]")
        previous = change[0]
    # A revision holds a Kubernetes namespace and name (253 characters each) and a checksum.
    for name, value, limit in (("end_reason", r.end_reason, MAX_END_REASON), ("revision", r.revision, 600)):
        if value is not None and (not isinstance(value, str) or len(value) > limit or not value.isprintable()):
            raise RolloutError(f"{name}: printable text of at most {limit} characters")


def _check_policies(r: Rollout) -> None:
    if len(r.dry_run_policies) > MAX_DRY_RUN_POLICIES:
        raise RolloutError(f"dry_run_policies: {len(r.dry_run_policies)} given, at most {MAX_DRY_RUN_POLICIES}")
    seen: set[str] = set()
    for i, p in enumerate((r.policy, *r.dry_run_policies)):
        where = "policy.name" if i == 0 else f"dry_run_policies[{i - 1}].name"
        check_name(p.name, where)
        if i and p.name in seen:
            # Each dry-run policy publishes under ID~dry-run:NAME; two of one name would share it.
            raise RolloutError(f"{where}: {p.name!r} is the name of another dry-run policy of this rollout")
        if i:
            seen.add(p.name)


@dataclass(frozen=True)
class Rollout:
    """One canary rollout as recorded on ``rum.rollouts``; :class:`RolloutError` when it is
    not one rumgate can address (see the module docstring)."""

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
    #: How the expected share changed after the start, as the deployment tool ramped the
    #: weight: ``(at, share)`` in time order, each in force from ``at`` (epoch ms) on.
    share_changes: tuple[tuple[int, float | None], ...] = ()
    #: Why the rollout ended (``ended_at``): its decision, a newer rollout of the app, or a person.
    end_reason: str | None = None
    #: The deployment tool's revision the rollout judges, bound at its first question (Flagger:
    #: ``NAMESPACE/NAME@CHECKSUM``); another revision is not answered for.
    revision: str | None = None

    def __post_init__(self) -> None:
        _check_names(self)
        _check_policies(self)
        _check_timeline(self)

    def share_for(self, start: int, end: int) -> float | None:
        """The expected canary share over the window ``[start, end)``: None when none is
        known, or while a change settles: from the change until :data:`SHARE_SETTLE_MS`
        after it. The deployment tool moves traffic around the time it says (new pods
        become ready, routes and caches follow), so those windows had no one split; the
        sample-ratio test skips them, and leaving looks out keeps it valid.

        >>> from detectors.policy import DEFAULT_POLICY
        >>> r = Rollout("a:r2", "a", "r2", "r1", 0, DEFAULT_POLICY, 0.05, share_changes=((60_000, 0.25),))
        >>> r.share_for(0, 5_000), r.share_for(55_000, 60_000), r.share_for(60_000, 65_000)
        (0.05, 0.05, None)
        >>> r.share_for(175_000, 180_000), r.share_for(180_000, 185_000)
        (None, 0.25)
        """
        share = self.expected_share
        for at, changed in self.share_changes:
            if at >= end:
                break
            if start < at + SHARE_SETTLE_MS:
                return None
            share = changed
        return share

    @property
    def share_now(self) -> float | None:
        """The expected share in force after the last change (the start's when none)."""
        return self.share_changes[-1][1] if self.share_changes else self.expected_share

    @property
    def share_changed_at(self) -> int:
        """When the share last changed (the start when it never did): a change may not precede it."""
        return self.share_changes[-1][0] if self.share_changes else self.started_at

    def with_share(self, share: float | None, at: int) -> Rollout:
        """This rollout with the expected share ``share`` from ``at`` on."""
        return replace(self, share_changes=(*self.share_changes, (at, check_share(share))))

    def ended(self, at: int, reason: str) -> Rollout:
        """This rollout ended at ``at`` (epoch ms), for ``reason``."""
        return replace(self, ended_at=at, end_reason=reason[:MAX_END_REASON])

    def merged(self, later: Rollout) -> Rollout:
        """``later``, a later record of this rollout, keeping what this one recorded: an end,
        a revision and the share changes are never lost. Workers write records from their
        own copies (one ends a rollout while another records a share change), and every
        worker applies the records in the topic's order, so all of them merge alike.

        >>> from detectors.policy import DEFAULT_POLICY
        >>> r = Rollout("a:r2", "a", "r2", "r1", 0, DEFAULT_POLICY, 0.05)
        >>> ended, ramped = r.ended(9_000, "decided: rollback (worse), verdict #2"), r.with_share(0.25, 5_000)
        >>> m = ended.merged(ramped)
        >>> m.ended_at, m.end_reason, m.share_changes
        (9000, 'decided: rollback (worse), verdict #2', ((5000, 0.25),))
        """
        out = later
        if out.ended_at is None and self.ended_at is not None:
            out = replace(out, ended_at=self.ended_at, end_reason=self.end_reason)
        if out.revision is None and self.revision is not None:
            out = replace(out, revision=self.revision)
        changes = tuple(sorted(set(self.share_changes) | set(out.share_changes)))
        if changes != out.share_changes and len(changes) <= MAX_SHARE_CHANGES:
            out = replace(out, share_changes=changes)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "app": self.app, "canary": self.canary, "baseline": self.baseline,
                "started_at": self.started_at, "policy": self.policy.to_dict(),
                "expected_share": self.expected_share, "ended_at": self.ended_at, "end_reason": self.end_reason,
                "share_changes": [list(c) for c in self.share_changes], "revision": self.revision,
                "dry_run_policies": [p.to_dict() for p in self.dry_run_policies]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rollout:
        """Inverse of :meth:`to_dict`; a record that is not a rollout is a :class:`RolloutError`
        (the control-topic follower logs and skips it)."""
        if not isinstance(d, dict):
            raise RolloutError(f"record: must be a JSON object, got {type(d).__name__}")
        try:
            policy = Policy.from_dict(d["policy"]) if d.get("policy") else DEFAULT_POLICY
            dry_list = d.get("dry_run_policies") or ()
            if not isinstance(dry_list, (list, tuple)) or len(dry_list) > MAX_DRY_RUN_POLICIES:
                raise RolloutError(f"dry_run_policies: a list of at most {MAX_DRY_RUN_POLICIES} policies")
            dry = tuple(replace(Policy.from_dict(p), dry_run=True) for p in dry_list)
            fields = {name: d[name] for name in ("id", "app", "canary", "baseline")}
            changes = d.get("share_changes") or ()
            if not isinstance(changes, (list, tuple)) or len(changes) > MAX_SHARE_CHANGES:
                raise RolloutError(f"share_changes: a list of at most {MAX_SHARE_CHANGES} [at, share] pairs")
            timeline = tuple((int(c[0]), c[1]) if isinstance(c, (list, tuple)) and len(c) == 2 else c
                             for c in changes)
            return cls(id=fields["id"], app=fields["app"], canary=fields["canary"], baseline=fields["baseline"],
                       started_at=int(d["started_at"]), policy=policy,
                       expected_share=d.get("expected_share"), ended_at=d.get("ended_at"), dry_run_policies=dry,
                       share_changes=timeline, end_reason=d.get("end_reason"), revision=d.get("revision"))
        except KeyError as exc:
            raise RolloutError(f"record: {exc.args[0]} missing") from None
        except PolicyError as exc:
            raise RolloutError(f"record: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, RolloutError):
                raise
            raise RolloutError(f"record: {exc}") from None
