"""Contextual anomaly detection: how well learned contexts of facts predict the next value."""

from __future__ import annotations

import collections
import heapq
import math

from .base import valid

__all__ = ["ContextualAnomaly"]

_MAX_BIN = 2**50  # |bin index| cap: keeps ``floor`` finite for absurd values on a tiny step

Facts = tuple[int, ...]


class ContextualAnomaly:
    """Contextual Anomaly Detector (CAD OSE, M. Smirnov), re-implemented online.

    The value is quantised into ``2**n_bits`` bins over a learned range, and each bit of the
    bin index becomes a *fact* (bit position and value, so 3 bits give 3 of 6 possible facts).
    A *context* pairs a left semi-context (a set of facts of the previous step) with a right
    semi-context (a set of facts of the current value). Each step stores the zero-level context
    ``(previous left facts, current facts)``; when that context is new, the overlaps of the
    current facts with stored zero-level contexts become potential new contexts, and those not
    yet stored are stored (only overlaps of at most ``max_left_facts`` left facts). The stored
    contexts whose left part was wholly present at the previous step are *selected*; those whose
    right part is wholly present now are *active*. The up to ``max_active`` most often active
    contexts become facts of the next left group ("neurons"), which is how longer patterns are
    learned. The raw score is the mean of ``1 − active/selected`` (the past did not predict the
    present) and, when the zero-level context is new, ``new/potential`` (the share of potential
    contexts that were really new). After a raw score of ``base_threshold`` or more, the next
    ``rest_period`` scores are halved. The original sets them to 0 (one alarm per event); halved,
    every threshold above 0.5 sees exactly that, while a lower threshold still sees the strongest
    echoes and the scores keep their order within an event (as with :class:`NewPeakFilter`).

    The published detector (NAB's ``contextOSE``, 69.9 standard) is given each file's minimum
    and maximum in advance. Online there is no such look-ahead: the range is the minimum and
    maximum of the first ``warmup`` values, which are buffered, scored 0, and then replayed
    through the learner. The bins keep their width afterwards and tile the whole line; each
    range-width beyond the range has its own set of facts, so a never-seen level is made of
    novel facts (nothing predicts it: score 1.0), and a lasting new level is learned like any
    other. A fixed ``value_range`` (e.g. 0–100 for a percentage) skips the warm-up. On NAB the
    learned range costs about 4 points against the file's minimum and maximum, and a constant
    rest period about 6 against NAB's per-file one (docs/benchmarks.md, section "NAB").

    Memory is bounded by ``max_contexts``: beyond it, the least recently created or activated
    contexts are dropped (down to 90 % of the cap, so the eviction cost is amortised), and
    semi-contexts that no longer belong to any context go with them. Each context costs about
    100–200 bytes, a left semi-context about as much again. Time per point grows with the number
    of stored contexts (the scan of the selected and overlapping ones), so the cap also bounds
    the cost per point.

    Parameters
    ----------
    warmup
        Number of first values whose minimum and maximum set the bin range (ignored with
        ``value_range``).
    rest_period
        Number of points whose scores are halved after a raw score above ``base_threshold``.
    base_threshold
        Raw score that starts a rest period.
    max_left_facts
        Largest left semi-context (in facts) of a context formed by overlap.
    max_active
        Number of active contexts carried to the next step as facts.
    n_bits
        Bits of the bin index inside the range (``2**n_bits`` bins).
    max_contexts
        Cap on stored contexts.
    value_range
        ``(low, high)`` known in advance, instead of learning it.

    Examples
    --------
    >>> det = ContextualAnomaly(warmup=50, rest_period=20)
    >>> wave = [10.0, 12.0, 15.0, 17.0, 20.0, 17.0, 15.0, 12.0]
    >>> for i in range(400):
    ...     det.learn_one(i, wave[i % 8])
    >>> det.score_one(400, 10.0) < 0.2             # the pattern continues
    True
    >>> det.score_one(400, 20.0) > 0.5             # a jump the context did not predict
    True
    >>> det.score_one(400, 90.0) > det.score_one(400, 20.0)   # far outside the learned range
    True
    >>> det.score_one(400, None)
    0.0

    References
    ----------
    [^1]: Smirnov, M. "CAD: Contextual Anomaly Detector, open source edition" (2016),
          https://github.com/smirmik/CAD; run as ``contextOSE`` in the Numenta Anomaly Benchmark,
          https://github.com/numenta/NAB (the implementation here is written from the
          algorithm's description, not from that code).
    """

    def __init__(
        self,
        warmup: int = 750,
        rest_period: int = 150,
        base_threshold: float = 0.75,
        max_left_facts: int = 7,
        max_active: int = 15,
        n_bits: int = 3,
        max_contexts: int = 30_000,
        value_range: tuple[float, float] | None = None,
    ) -> None:
        if warmup < 1 or rest_period < 0 or max_left_facts < 1 or max_active < 0 or n_bits < 1:
            raise ValueError("warmup >= 1, rest_period >= 0, max_left_facts >= 1, max_active >= 0 and n_bits >= 1 "
                             "are required")
        if not 0.0 < base_threshold <= 1.0:
            raise ValueError(f"base_threshold must be in (0, 1], got {base_threshold!r}")
        if max_contexts < 10:
            raise ValueError(f"max_contexts must be >= 10, got {max_contexts!r}")
        if value_range is not None and not (valid(value_range[0]) and valid(value_range[1])
                                            and value_range[0] <= value_range[1]):
            raise ValueError(f"value_range must be finite (low, high) with low <= high, got {value_range!r}")
        self.warmup = warmup
        self.rest_period = rest_period
        self.base_threshold = base_threshold
        self.max_left_facts = max_left_facts
        self.max_active = max_active
        self.n_bits = n_bits
        self.max_contexts = max_contexts
        self.value_range = value_range

        # the first ``warmup`` values, until they set the range; then replayed and emptied
        self._recent: list[float] = []
        self._lo = 0.0
        self._hi = 0.0
        self._step = 0.0  # bin width; 0.0 until the range is known
        if value_range is not None:
            self._set_range(*value_range)
        self._steps = 0
        self._reset_model()
        # 1.0 first: the first ``rest_period`` points only learn, as in the original
        self._history: collections.deque[float] = collections.deque([1.0], maxlen=max(rest_period, 1))
        self._cache: tuple | None = None  # (x, steps, step result) of the last score_one

    def _reset_model(self) -> None:
        # left semi-contexts: facts -> id, and per id its facts and its contexts (right id -> context id)
        self._left_id: dict[Facts, int] = {}
        self._left_facts: dict[int, Facts] = {}
        self._left_ctx: dict[int, dict[int, int]] = {}
        self._fact_left: dict[int, set[int]] = {}  # fact -> left semi-contexts holding it
        self._next_left = 0
        # right semi-contexts are subsets of one value's facts: few, never dropped
        self._right_id: dict[Facts, int] = {}
        self._right_facts: list[frozenset[int]] = []
        # contexts: id -> [times active, zero-level (0/1), left id, right id, last step used]
        self._ctx: dict[int, list[int]] = {}
        self._next_ctx = 0
        self._group: Facts = ()  # the left facts of the next step: last value's facts and neurons

    # -- encoding ------------------------------------------------------------------------------
    def _set_range(self, lo: float, hi: float) -> None:
        span = hi - lo
        if not span > 0.0 or not math.isfinite(span):
            # one value only (or an overflowing span): the original's fallback of one unit per
            # bin, scaled to the value so that the bins mean something at any magnitude
            span = abs(lo) if lo != 0.0 and math.isfinite(lo) else 1.0
        self._lo = lo
        self._hi = lo + span
        self._step = span / (2**self.n_bits - 1)

    def facts(self, x: float) -> Facts:
        """The sensor facts of ``x``: bit ``s`` of its bin gives fact ``2s + bit``; a bin outside
        the range adds ``2·n_bits + k`` with ``k`` the zigzag-coded number of ranges away."""
        z = (x - self._lo) / self._step
        z = max(-_MAX_BIN, min(_MAX_BIN, z)) if z == z else 0.0
        b = math.floor(z)
        nb = 2**self.n_bits
        low, octave = b % nb, b // nb
        # every range-width outside the range has its own facts: none of them is ever a fact
        # of an in-range value, so a level never seen before matches no stored context
        base = 2 * self.n_bits * (2 * octave - 1 if octave > 0 else -2 * octave if octave < 0 else 0)
        return tuple(base + 2 * s + ((low >> s) & 1) for s in range(self.n_bits))

    # -- one step --------------------------------------------------------------------------------
    def _evaluate(self, x: float) -> tuple:
        """Everything the step of ``x`` needs, computed without changing the model."""
        sens = self.facts(x)
        sens_set = frozenset(sens)
        group = self._group
        zl_key = (group, sens) if group else None
        zl_new = False
        if zl_key is not None:
            lid = self._left_id.get(group)
            rid = self._right_id.get(sens)
            zl_new = lid is None or rid is None or rid not in self._left_ctx[lid]
        # overlap of every right semi-context with the current facts (0 = not crossed)
        r_cross = [len(r & sens_set) for r in self._right_facts]
        r_size = [len(r) for r in self._right_facts]
        # overlap of every left semi-context with the previous left group
        overlap: dict[int, int] = {}
        for f in group:
            for lid in self._fact_left.get(f, ()):
                overlap[lid] = overlap.get(lid, 0) + 1
        group_set = frozenset(group)
        selected = 0
        active: list[int] = []
        potential: set[tuple[Facts, Facts]] = set()
        ctx = self._ctx
        max_left = self.max_left_facts
        for lid, c in overlap.items():
            full = c == len(self._left_facts[lid])
            may_grow = zl_new and c <= max_left
            if not full and not may_grow:
                continue
            left_part: Facts | None = None
            for rid, cid in self._left_ctx[lid].items():
                rc = r_cross[rid] if rid < len(r_cross) else 0
                if full:
                    selected += 1
                    if rc == r_size[rid]:
                        active.append(cid)
                        continue
                if rc and may_grow and ctx[cid][1]:
                    if left_part is None:
                        left_part = tuple(sorted(group_set.intersection(self._left_facts[lid])))
                    potential.add((left_part, tuple(sorted(sens_set.intersection(self._right_facts[rid])))))
        share_active = len(active) / selected if selected else 0.0
        share_new = 0.0
        if zl_new:
            potential.discard(zl_key)  # type: ignore[arg-type]
            new = [p for p in potential if not self._known(p)]
            share_new = (1 + len(new)) / (1 + len(potential))
        else:
            new = []
        raw = (1.0 - share_active + share_new) / 2.0
        return sens, zl_key, active, new, raw

    def _known(self, context: tuple[Facts, Facts]) -> bool:
        lid = self._left_id.get(context[0])
        rid = self._right_id.get(context[1])
        return lid is not None and rid is not None and rid in self._left_ctx[lid]

    def _store(self, left: Facts, right: Facts, zero_level: bool) -> None:
        lid = self._left_id.get(left)
        if lid is None:
            lid = self._next_left
            self._next_left += 1
            self._left_id[left] = lid
            self._left_facts[lid] = left
            self._left_ctx[lid] = {}
            for f in left:
                self._fact_left.setdefault(f, set()).add(lid)
        rid = self._right_id.get(right)
        if rid is None:
            rid = len(self._right_facts)
            self._right_id[right] = rid
            self._right_facts.append(frozenset(right))
        cid = self._left_ctx[lid].get(rid)
        if cid is None:
            cid = self._next_ctx
            self._next_ctx += 1
            self._left_ctx[lid][rid] = cid
            self._ctx[cid] = [0, int(zero_level), lid, rid, self._steps]
        elif zero_level:
            self._ctx[cid][1] = 1

    def _apply(self, result: tuple) -> None:
        sens, zl_key, active, new, raw = result
        if zl_key is not None:
            self._store(zl_key[0], zl_key[1], True)
        ctx = self._ctx
        for cid in active:
            c = ctx[cid]
            c[0] += 1
            c[4] = self._steps
        # the most often active contexts become facts of the next step (negative ids: never a
        # sensor fact); ties go to the older context
        neurons = heapq.nsmallest(self.max_active, active, key=lambda cid: (-ctx[cid][0], cid))
        self._group = tuple(sorted(set(sens).union(-1 - cid for cid in neurons)))
        for left, right in new:
            self._store(left, right, False)
        self._history.append(raw)
        self._steps += 1
        if len(self._ctx) > self.max_contexts:
            self._evict()

    def _evict(self) -> None:
        keep = int(0.9 * self.max_contexts)
        ctx = self._ctx
        oldest = heapq.nsmallest(len(ctx) - keep, ctx, key=lambda cid: (ctx[cid][4], cid))
        for cid in oldest:
            _, _, lid, rid, _ = ctx.pop(cid)
            contexts = self._left_ctx[lid]
            del contexts[rid]
            if not contexts:
                del self._left_ctx[lid]
                facts = self._left_facts.pop(lid)
                del self._left_id[facts]
                for f in facts:
                    holders = self._fact_left[f]
                    holders.discard(lid)
                    if not holders:
                        del self._fact_left[f]

    def _result(self, x: float) -> tuple:
        c = self._cache
        if c is not None and c[0] == x and c[1] == self._steps:
            return c[2]
        return self._evaluate(x)

    # -- the detector contract ----------------------------------------------------------------
    def learn_one(self, t: int, x: float | None) -> None:
        if not valid(x):
            return
        x = float(x)  # type: ignore[arg-type]
        if self._step == 0.0:
            self._recent.append(x)
            if len(self._recent) == self.warmup:
                self._set_range(min(self._recent), max(self._recent))
                for v in self._recent:
                    self._apply(self._evaluate(v))
                self._recent.clear()
            return
        result = self._result(x)
        self._cache = None
        self._apply(result)

    def score_one(self, t: int, x: float | None) -> float:
        if not valid(x) or self._step == 0.0:
            return 0.0
        x = float(x)  # type: ignore[arg-type]
        result = self._result(x)
        # the step is the expensive part: keep it for the learn_one of the same value that
        # usually follows (the cache is not model state: it is dropped when pickling)
        self._cache = (x, self._steps, result)
        raw = float(min(max(result[4], 0.0), 1.0))
        if self.rest_period and max(self._history) >= self.base_threshold:
            return 0.5 * raw
        return raw

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = None
        return state
