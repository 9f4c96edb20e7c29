"""The contract every detector in :data:`detectors.anomaly.DETECTORS` must keep.

Each contract is a ``check_*`` function taking a zero-argument factory; the ``test_*``
functions run it on every registered detector (parametrized over the registry's names), so a
new detector is checked as soon as it is registered. The contract:

inputs
    ``t`` is the event time in epoch ms (a Python ``int``), ``x`` a ``float``, an ``int``, a
    ``numpy.float64`` or ``None``. The detector never mutates what it is given and scores depend
    on values only: an ``int`` or ``numpy.float64`` scores like the equal ``float`` (to 1e-12),
    and reusing one float object or passing a fresh equal one gives identical scores (values are
    immutable, so object identity is the only way a detector could alias its caller's data).
before learning
    ``score_one`` on a fresh detector returns a value without raising.
scores
    Always a builtin ``float`` (``type(s) is float``: ``numpy.float64`` is refused by orjson,
    which writes the verdict events, and reprs as ``np.float64(...)``), finite and in
    ``[0, 1]``, whatever the input stream: huge, tiny, subnormal, repeated, constant values,
    infinities, NaN, ``None``, duplicate timestamps and big gaps; late data (``t`` going
    backwards) must not crash either and still scores in ``[0, 1]``.
missing values
    ``None`` scores exactly ``0.0`` and is never learned: a stream with some values replaced by
    ``None`` scores the remaining points exactly like the stream without those points.
NaN
    NaN is a missing value: it scores exactly ``0.0`` and is never learned (same check as
    ``None``). A learned NaN would poison a mean or a window for good and silence the detector.
    Infinities are not covered beyond "no crash, score in [0, 1]".
pickle
    A detector pickled fresh, during warm-up or mid-stream, and unpickled, scores the rest of the
    stream exactly like the original.
determinism
    Two fresh instances on the same stream give identical scores, whatever the global
    ``random``/``numpy.random`` state; a class with a ``seed`` parameter gives identical scores
    for the same seed; and the scores are identical in fresh interpreters with a different
    ``PYTHONHASHSEED`` and a different ``TZ`` (no ``hash()``-ordered state, no local time).
bounded memory
    ``len(pickle.dumps(det))`` after 20,000 points is < 2x its size after 2,000 plus 4 KiB.
usefulness
    On a seeded synthetic series (diurnal sine + noise, with spikes and level shifts at known
    times), the mean score inside the labelled anomaly windows is higher than outside and the
    ROC AUC of the scores against the labels is > 0.6.
no wall clock
    No call to ``time.time``/``time_ns``/``monotonic``/``perf_counter`` (and their ``_ns``),
    argument-less ``time.localtime``/``gmtime``/``ctime``/``asctime``/``strftime``,
    ``datetime.now``/``utcnow``/``today`` or ``date.today`` while learning and scoring (they
    are patched to record and raise, also where a detector module imported them by name).

Every check is shown to be able to fail: ``test_check_catches_broken_detector`` runs it on a
deliberately broken fake detector and expects it to fail, and ``test_reference_fake_passes``
runs all checks on a correct fake.
"""

from __future__ import annotations

import datetime as _datetime_module
import hashlib
import inspect
import math
import os
import pickle
import random
import subprocess
import sys
import time as _time_module
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.anomaly import DETECTORS

Factory = Callable[[], object]
Stream = list[tuple[int, "float | None"]]

REPO = Path(__file__).resolve().parents[2]
T0 = 1_396_310_400_000  # 2014-04-01T00:00:00Z, the start of most NAB series, in epoch ms
STEP = 300_000  # 5 minutes, NAB's usual sampling
DAY_POINTS = 86_400_000 // STEP


# --------------------------------------------------------------------------- streams


def noisy_stream(n: int, seed: int = 0, start: int = T0) -> Stream:
    """Diurnal sine (amplitude 10 around 50) plus N(0, 2) noise, every 5 minutes."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    values = 50.0 + 10.0 * np.sin(2 * np.pi * i / DAY_POINTS) + rng.normal(0.0, 2.0, n)
    return [(start + int(k) * STEP, float(v)) for k, v in zip(i, values)]


def labelled_stream(seed: int = 7) -> tuple[Stream, np.ndarray]:
    """A seeded diurnal series with spikes and level shifts, and the anomaly labels.

    Labelled windows: each spike point, and the first 2 hours after each level shift begins
    and after it ends. The first 2 days are clean (warm-up).
    """
    n = 21 * DAY_POINTS
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    values = 50.0 + 10.0 * np.sin(2 * np.pi * i / DAY_POINTS) + rng.normal(0.0, 2.0, n)
    labels = np.zeros(n, dtype=bool)
    spikes = [3 * DAY_POINTS + 50, 5 * DAY_POINTS + 200, 8 * DAY_POINTS + 10,
              11 * DAY_POINTS + 140, 15 * DAY_POINTS + 77, 19 * DAY_POINTS + 260]
    for k, at in enumerate(spikes):
        values[at] += 35.0 if k % 2 == 0 else -35.0
        labels[at] = True
    shifts = [(6 * DAY_POINTS + 100, +25.0), (13 * DAY_POINTS + 30, -25.0), (17 * DAY_POINTS + 180, +25.0)]
    window = 24  # 2 hours
    for start, delta in shifts:
        end = start + DAY_POINTS // 2
        values[start:end] += delta
        labels[start:start + window] = True
        labels[end:end + window] = True
    return [(T0 + int(k) * STEP, float(v)) for k, v in zip(i, values)], labels


def run(det: object, stream: Stream) -> list[float]:
    """Score then learn each point, as the CLI and the gate do; the scores."""
    scores = []
    for t, x in stream:
        scores.append(det.score_one(t, x))  # type: ignore[attr-defined]
        det.learn_one(t, x)  # type: ignore[attr-defined]
    return scores


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney U statistic, ties given half credit (average ranks)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank (1-based) over each run of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(scores)]))
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def digest(scores: list[float]) -> str:
    return hashlib.sha256(repr([float(s).hex() for s in scores]).encode()).hexdigest()


# --------------------------------------------------------------------------- fakes


class EwmaZ:
    """Reference fake: a z-score against an exponentially weighted mean and variance."""

    def __init__(self, alpha: float = 0.02, grace_period: int = 20) -> None:
        self.alpha = alpha
        self.grace_period = grace_period
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def _accepts(self, x: object) -> bool:
        return x is not None and math.isfinite(x)  # type: ignore[arg-type]

    def learn_one(self, t: int, x: float | None) -> None:
        if not self._accepts(x):
            return
        x = float(x)  # type: ignore[arg-type]
        if self.n == 0:
            mean, var = x, 0.0
        else:
            d = x - self.mean
            mean = self.mean + self.alpha * d
            var = (1.0 - self.alpha) * (self.var + self.alpha * d * d)
        if math.isfinite(mean) and math.isfinite(var):
            self.mean, self.var, self.n = mean, var, self.n + 1

    def raw(self, x: float) -> float:
        d = abs(float(x) - self.mean)
        sd = max(math.sqrt(self.var), 1e-9 * max(1.0, abs(self.mean)))
        return d / sd

    def score_one(self, t: int, x: float | None) -> float:
        if x is None or x != x or self.n < self.grace_period:
            return 0.0
        z = self.raw(x)
        return 1.0 if math.isinf(z) else z / (1.0 + z)


class CrashesWhenFresh(EwmaZ):
    def score_one(self, t, x):
        if x is None:
            return 0.0
        return min(1.0, abs(float(x) - self.mean) / self.n / 1e9)  # ZeroDivisionError when n == 0


class NoneAsZero(EwmaZ):
    def learn_one(self, t, x):
        super().learn_one(t, 0.0 if x is None else x)

    def score_one(self, t, x):
        return super().score_one(t, 0.0 if x is None else x)


class IdentityCache(EwmaZ):
    """Skips a value when it is the very object it saw last (a 'dedupe' by identity)."""

    _last: object = None

    def learn_one(self, t, x):
        if x is self._last:
            return
        self._last = x
        super().learn_one(t, x)


class IntDropping(EwmaZ):
    def _accepts(self, x):
        return isinstance(x, float) and math.isfinite(x)


class Unpicklable(EwmaZ):
    def __init__(self) -> None:
        super().__init__()
        self.transform = lambda v: v


class ForgetfulPickle(EwmaZ):
    def __reduce__(self):
        return (type(self), ())


class GlobalRandomJitter(EwmaZ):
    def score_one(self, t, x):
        s = super().score_one(t, x)
        return min(1.0, s + random.random() * 1e-6) if s > 0 else s


class HashSalted(EwmaZ):
    """Score depends on the per-process string hash salt."""

    def score_one(self, t, x):
        s = super().score_one(t, x)
        return s * (1.0 - (hash("rumgate") % 97) * 1e-4)


class SeedIgnored(EwmaZ):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        self.rng = random.Random()  # the bug: ignores seed

    def score_one(self, t, x):
        s = super().score_one(t, x)
        return min(1.0, s + self.rng.random() * 1e-6) if s > 0 else s


class Hoarder(EwmaZ):
    def __init__(self) -> None:
        super().__init__()
        self.history: list[float] = []

    def learn_one(self, t, x):
        super().learn_one(t, x)
        if self._accepts(x):
            self.history.append(float(x))


class Unclipped(EwmaZ):
    def score_one(self, t, x):
        if x is None or x != x or self.n < self.grace_period:
            return 0.0
        return self.raw(x)  # a raw z, not squashed into [0, 1]


class LearnsNaN(EwmaZ):
    def _accepts(self, x):
        return x is not None

    def learn_one(self, t, x):
        if x is not None and x != x:
            self.mean = float("nan")
            self.n += 1
            return
        super().learn_one(t, x)

    def score_one(self, t, x):
        if x is None or self.n < self.grace_period:
            return 0.0
        z = self.raw(x)
        return 0.5 if z != z else (1.0 if math.isinf(z) else z / (1.0 + z))


class Inverted(EwmaZ):
    def score_one(self, t, x):
        s = super().score_one(t, x)
        return 1.0 - s if x is not None and x == x and self.n >= self.grace_period else s


class WallClock(EwmaZ):
    """Rate-limits its own updates by wall-clock time (the value read is unused here)."""

    def learn_one(self, t, x):
        self.last_seen = _time_module.time()
        super().learn_one(t, x)


class WallClockDatetime(EwmaZ):
    def score_one(self, t, x):
        _ = _datetime_module.datetime.now()
        return super().score_one(t, x)


class NumpyScore(EwmaZ):
    def score_one(self, t, x):
        return np.float64(super().score_one(t, x))


FAKES: dict[str, Factory] = {
    "ewma_z": EwmaZ,
    "crashes_when_fresh": CrashesWhenFresh,
    "none_as_zero": NoneAsZero,
    "identity_cache": IdentityCache,
    "int_dropping": IntDropping,
    "unpicklable": Unpicklable,
    "forgetful_pickle": ForgetfulPickle,
    "global_random_jitter": GlobalRandomJitter,
    "hash_salted": HashSalted,
    "seed_ignored": SeedIgnored,
    "hoarder": Hoarder,
    "unclipped": Unclipped,
    "learns_nan": LearnsNaN,
    "inverted": Inverted,
    "wall_clock": WallClock,
    "wall_clock_datetime": WallClockDatetime,
    "numpy_score": NumpyScore,
}


def factory_by_name(name: str) -> Factory:
    """A registered detector, or a fake of this module when the name is ``fake:NAME``."""
    if name.startswith("fake:"):
        return FAKES[name[len("fake:"):]]
    return DETECTORS[name]


# --------------------------------------------------------------------------- checks


def check_inputs_untouched(factory: Factory) -> None:
    """No mutation of the caller's data; scores depend on values, not types or identities."""
    base = noisy_stream(1500, seed=1)
    # round the values so that the int variant is exact and many values repeat
    stream = [(t, float(round(x))) for t, x in base]
    stream[700] = (stream[700][0], stream[700][1] + 60.0)
    snapshot = [(t, x) for t, x in stream]

    shared: dict[float, float] = {}  # one object per distinct value, reused
    det_shared = factory()
    shared_scores = []
    for i, (t, x) in enumerate(stream):
        obj = shared.setdefault(x, x)
        shared_scores.append(det_shared.score_one(t, obj))
        det_shared.learn_one(t, obj)
        if i % 100 == 0:  # the caller reuses its buffer: the detector must not care
            stream[i] = (t, -1.0)
    stream[:] = snapshot  # restore for the comparisons below

    det_fresh = factory()
    fresh_scores = []
    for t, x in snapshot:
        y = float(repr(x))  # a new, equal float object
        fresh_scores.append(det_fresh.score_one(t, y))
        det_fresh.learn_one(t, y)
    assert shared_scores == fresh_scores, "scores depend on the identity of the value objects"

    for convert, label in ((int, "int"), (np.float64, "numpy.float64")):
        det = factory()
        other = []
        for t, x in snapshot:
            y = convert(x)
            other.append(det.score_one(t, y))
            det.learn_one(t, y)
            assert type(t) is int and y == x, "the detector changed its input"
        assert other == pytest.approx(fresh_scores, rel=1e-12, abs=1e-12), \
            f"x given as {label} scores differently from the equal float"
    assert stream == snapshot


def check_works_before_learning(factory: Factory) -> None:
    for x in (0.0, 1.0, -1.0, 1e9, -1e-9, 50.0):
        det = factory()
        s = det.score_one(T0, x)
        assert type(s) is float, f"score_one returned {type(s).__name__}, not float"
        assert 0.0 <= s <= 1.0, s
    det = factory()
    assert det.score_one(T0, None) == 0.0


def _missing_check(factory: Factory, missing: float | None) -> None:
    label = "None" if missing is None else "NaN"
    det = factory()
    s = det.score_one(T0, missing)
    assert type(s) is float and s == 0.0, f"fresh score of {label} is {s!r}, not 0.0"
    det.learn_one(T0, missing)  # learning only missing values leaves a fresh detector
    assert run(det, noisy_stream(400, seed=3)) == run(factory(), noisy_stream(400, seed=3)), \
        f"learning {label} on a fresh detector changed it"

    stream = noisy_stream(3000, seed=2)
    stream[1500] = (stream[1500][0], stream[1500][1] + 60.0)
    rng = random.Random(5)
    gaps = set(rng.sample(range(3000), 300)) | set(range(10, 60)) | set(range(2000, 2100))
    gaps.discard(1500)
    holey = [(t, missing if i in gaps else x) for i, (t, x) in enumerate(stream)]
    kept = [p for i, p in enumerate(stream) if i not in gaps]
    with_missing = run(factory(), holey)
    without = run(factory(), kept)
    for i in sorted(gaps):
        assert type(with_missing[i]) is float and with_missing[i] == 0.0, \
            f"point {i}: {label} scored {with_missing[i]!r}, not 0.0"
    assert [s for i, s in enumerate(with_missing) if i not in gaps] == without, \
        f"{label} values were learned: the other scores differ from the stream without them"


def check_none_is_missing(factory: Factory) -> None:
    _missing_check(factory, None)


def check_nan_is_missing(factory: Factory) -> None:
    _missing_check(factory, float("nan"))


def check_pickles(factory: Factory) -> None:
    stream = noisy_stream(3000, seed=4)
    stream[2500] = (stream[2500][0], stream[2500][1] + 60.0)
    for cut in (0, 10, 1500):
        original = factory()
        run(original, stream[:cut])
        copy = pickle.loads(pickle.dumps(original))
        assert type(copy) is type(original)
        rest = stream[cut:]
        assert run(copy, rest) == run(original, rest), f"the copy pickled after {cut} points diverges"


def _scores_under_global_state(factory: Factory, stream: Stream, state: int) -> list[float]:
    random.seed(state)
    np.random.seed(state)
    return run(factory(), stream)


def score_digest(name: str) -> str:
    """The digest of a detector's scores on a fixed stream (used across interpreters)."""
    stream = noisy_stream(1200, seed=6)
    stream[900] = (stream[900][0], stream[900][1] + 60.0)
    return digest(run(factory_by_name(name)(), stream))


def check_deterministic(factory: Factory, name: str | None = None) -> None:
    stream = noisy_stream(3000, seed=6)
    stream[2000] = (stream[2000][0], stream[2000][1] + 60.0)
    saved_random, saved_np = random.getstate(), np.random.get_state()
    try:
        first = _scores_under_global_state(factory, stream, 1)
        second = _scores_under_global_state(factory, stream, 2)
        assert first == second, "two fresh instances give different scores on the same stream"
        cls = type(factory())
        if "seed" in inspect.signature(cls).parameters:
            for seed in (0, 12345):
                a = _scores_under_global_state(lambda: cls(seed=seed), stream, 3)
                b = _scores_under_global_state(lambda: cls(seed=seed), stream, 4)
                assert a == b, f"{cls.__name__}(seed={seed}) is not reproducible"
    finally:
        random.setstate(saved_random)
        np.random.set_state(saved_np)
    if name is None:
        return
    # fresh interpreters with another hash salt and another local time zone
    expected = score_digest(name)
    for hash_seed, tz in (("1", "Asia/Kolkata"), ("2", "America/St_Johns")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "TZ": tz}
        code = f"from tests.detectors.test_detector_contract import score_digest; print(score_digest({name!r}))"
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == expected, \
            f"scores differ in an interpreter with PYTHONHASHSEED={hash_seed} TZ={tz}"


def check_memory_bounded(factory: Factory) -> None:
    stream = noisy_stream(20_000, seed=8)
    det = factory()
    run(det, stream[:2000])
    small = len(pickle.dumps(det))
    run(det, stream[2000:])
    large = len(pickle.dumps(det))
    assert large < 2 * small + 4096, \
        f"state grows: {small} bytes pickled after 2,000 points, {large} after 20,000"


_warm_cache: dict[tuple[int, str], bytes] = {}


def _warmed(factory: Factory, kind: str) -> object:
    """A detector after a 1,500-point warm-up: none, noisy, or one constant value."""
    if kind == "none":
        return factory()
    key = (id(factory), kind)
    if key not in _warm_cache:
        if kind == "noisy":
            stream = noisy_stream(1500, seed=9)
        else:
            stream = [(T0 + i * STEP, 42.0) for i in range(1500)]
        det = factory()
        run(det, stream)
        try:
            _warm_cache[key] = pickle.dumps(det)
        except Exception:
            return det
    return pickle.loads(_warm_cache[key])


_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e3, max_value=1e3),
    st.sampled_from([0.0, -0.0, 42.0, 1e308, -1e308, 5e-324, 2.2250738585072014e-308]),
    st.none(),
)


def _check_unit_interval(factory: Factory, gaps: st.SearchStrategy[int], max_examples: int) -> None:
    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(kind=st.sampled_from(["none", "noisy", "constant"]),
           start=st.integers(0, 4_000_000_000_000),
           points=st.lists(st.tuples(gaps, _values, st.integers(1, 5)), max_size=60))
    def prop(kind: str, start: int, points: list[tuple[int, float | None, int]]) -> None:
        det = _warmed(factory, kind)
        t = T0 + 1500 * STEP if kind != "none" else start
        for gap, x, repeat in points:
            for _ in range(repeat):
                t += gap
                s = det.score_one(t, x)
                assert type(s) is float, f"score_one({t}, {x!r}) returned {type(s).__name__}"
                assert math.isfinite(s) and 0.0 <= s <= 1.0, f"score_one({t}, {x!r}) = {s!r}"
                det.learn_one(t, x)

    prop()


def check_scores_in_unit_interval(factory: Factory) -> None:
    _check_unit_interval(factory, st.one_of(st.just(STEP), st.just(0), st.integers(0, 10**11)), 150)


def check_late_data(factory: Factory) -> None:
    _check_unit_interval(factory, st.one_of(st.just(STEP), st.integers(-10**10, 10**10)), 60)


def check_beats_random(factory: Factory) -> None:
    stream, labels = labelled_stream()
    scores = np.array(run(factory(), stream))
    inside, outside = scores[labels].mean(), scores[~labels].mean()
    auc = roc_auc(scores, labels)
    assert inside > outside, f"mean score inside anomaly windows {inside:.4f} <= outside {outside:.4f}"
    assert auc > 0.6, f"ROC AUC {auc:.3f} <= 0.6 (inside {inside:.4f}, outside {outside:.4f})"


class WallClockRead(AssertionError):
    pass


@contextmanager
def no_wall_clock() -> Iterator[list[str]]:
    """Patch the clock readers to record and raise; yields the list of reads (with stacks)."""
    reads: list[str] = []

    def record(what: str) -> None:
        stack = traceback.extract_stack()[:-2]
        if any(Path(f.filename).parts[-2:-1] == ("logging",) for f in stack):
            return  # a log record's timestamp is not the detector's doing
        reads.append(what + "\n" + "".join(traceback.format_list(stack[-6:])))
        raise WallClockRead(f"{what} called while learning or scoring")

    def reader(name: str) -> Callable[..., object]:
        def patched(*args: object, **kwargs: object) -> object:
            record(f"time.{name}()")
        return patched

    def optional_arg(name: str, original: Callable[..., object]) -> Callable[..., object]:
        def patched(*args: object, **kwargs: object) -> object:
            needed = 2 if name == "strftime" else 1  # strftime(format, t), the others (t)
            if len(args) < needed or args[needed - 1] is None:
                record(f"time.{name}() without a time")
            return original(*args, **kwargs)
        return patched

    class NoClockDatetime(_datetime_module.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            record("datetime.now()")

        @classmethod
        def utcnow(cls):  # type: ignore[override]
            record("datetime.utcnow()")

        @classmethod
        def today(cls):  # type: ignore[override]
            record("datetime.today()")

    class NoClockDate(_datetime_module.date):
        @classmethod
        def today(cls):  # type: ignore[override]
            record("date.today()")

    replacements: dict[int, object] = {}
    originals: dict[int, object] = {}
    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns"):
        f = getattr(_time_module, name)
        replacements[id(f)], originals[id(f)] = reader(name), f
    for name in ("localtime", "gmtime", "ctime", "asctime", "strftime"):
        f = getattr(_time_module, name)
        replacements[id(f)], originals[id(f)] = optional_arg(name, f), f
    for cls, new in ((_datetime_module.datetime, NoClockDatetime), (_datetime_module.date, NoClockDate)):
        replacements[id(cls)], originals[id(cls)] = new, cls

    undo: list[tuple[object, str, object]] = []
    targets = [_time_module, _datetime_module] + [
        m for n, m in list(sys.modules.items())
        if m is not None and (n.split(".")[0] in ("detectors", "river") or n == __name__)]
    for module in targets:
        for attr, value in list(vars(module).items()):
            if id(value) in replacements and originals[id(value)] is value:
                undo.append((module, attr, value))
                setattr(module, attr, replacements[id(value)])
    try:
        yield reads
    finally:
        for module, attr, value in reversed(undo):
            setattr(module, attr, value)


def check_no_wall_clock(factory: Factory) -> None:
    stream = noisy_stream(600, seed=10)
    stream[400] = (stream[400][0], stream[400][1] + 60.0)
    expected = run(factory(), stream)
    try:
        with no_wall_clock() as reads:
            det = factory()
            got = run(det, stream)
            det.score_one(stream[-1][0] + STEP, None)
    except WallClockRead:
        pass
    assert not reads, "the wall clock was read:\n" + "\n".join(reads[:3])
    assert got == expected


CHECKS: dict[str, Callable[[Factory], None]] = {
    "inputs_untouched": check_inputs_untouched,
    "works_before_learning": check_works_before_learning,
    "none_is_missing": check_none_is_missing,
    "nan_is_missing": check_nan_is_missing,
    "pickles": check_pickles,
    "deterministic": check_deterministic,
    "memory_bounded": check_memory_bounded,
    "scores_in_unit_interval": check_scores_in_unit_interval,
    "late_data": check_late_data,
    "beats_random": check_beats_random,
    "no_wall_clock": check_no_wall_clock,
}

# --------------------------------------------------------------------------- the contract

names = pytest.mark.parametrize("name", sorted(DETECTORS))


def test_registry_is_well_formed() -> None:
    from detectors.anomaly import GATE_DETECTOR

    assert DETECTORS, "no detector registered"
    assert GATE_DETECTOR in DETECTORS
    for name, factory in DETECTORS.items():
        assert isinstance(name, str) and name == name.strip() and name, name
        det = factory()
        assert callable(getattr(det, "learn_one", None)) and callable(getattr(det, "score_one", None)), name


@names
def test_inputs_untouched(name: str) -> None:
    check_inputs_untouched(DETECTORS[name])


@names
def test_works_before_learning(name: str) -> None:
    check_works_before_learning(DETECTORS[name])


@names
def test_none_is_missing(name: str) -> None:
    check_none_is_missing(DETECTORS[name])


@names
def test_nan_is_missing(name: str) -> None:
    check_nan_is_missing(DETECTORS[name])


@names
def test_pickles(name: str) -> None:
    check_pickles(DETECTORS[name])


@names
def test_deterministic(name: str) -> None:
    check_deterministic(DETECTORS[name], name)


@names
def test_memory_bounded(name: str) -> None:
    check_memory_bounded(DETECTORS[name])


@names
def test_scores_in_unit_interval(name: str) -> None:
    check_scores_in_unit_interval(DETECTORS[name])


@names
def test_late_data(name: str) -> None:
    check_late_data(DETECTORS[name])


@names
def test_beats_random(name: str) -> None:
    check_beats_random(DETECTORS[name])


@names
def test_no_wall_clock(name: str) -> None:
    check_no_wall_clock(DETECTORS[name])


# --------------------------------------------------------------------------- the checks can fail

BROKEN = [
    ("inputs_untouched", "identity_cache"),
    ("inputs_untouched", "int_dropping"),
    ("works_before_learning", "crashes_when_fresh"),
    ("works_before_learning", "numpy_score"),
    ("none_is_missing", "none_as_zero"),
    ("nan_is_missing", "learns_nan"),
    ("pickles", "unpicklable"),
    ("pickles", "forgetful_pickle"),
    ("deterministic", "global_random_jitter"),
    ("deterministic", "seed_ignored"),
    ("deterministic", "hash_salted"),
    ("memory_bounded", "hoarder"),
    ("scores_in_unit_interval", "unclipped"),
    ("scores_in_unit_interval", "numpy_score"),
    ("late_data", "unclipped"),
    ("beats_random", "inverted"),
    ("no_wall_clock", "wall_clock"),
    ("no_wall_clock", "wall_clock_datetime"),
]


def test_every_check_has_a_broken_fake() -> None:
    assert {check for check, _ in BROKEN} == set(CHECKS)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_reference_fake_passes(check: str) -> None:
    if check == "deterministic":
        check_deterministic(EwmaZ, "fake:ewma_z")
    else:
        CHECKS[check](EwmaZ)


@pytest.mark.parametrize(("check", "fake"), BROKEN, ids=[f"{c}-{f}" for c, f in BROKEN])
def test_check_catches_broken_detector(check: str, fake: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - an assertion, or the detector's own crash
        if check == "deterministic":
            check_deterministic(FAKES[fake], f"fake:{fake}")
        else:
            CHECKS[check](FAKES[fake])


def test_roc_auc() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
