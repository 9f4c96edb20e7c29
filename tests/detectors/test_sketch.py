"""LogSketch: the relative-accuracy guarantee itself, exact edge counts, merge and codec.

The accuracy suite is written once (``TestAccuracy``) and rerun on sketches that went
through a codec round trip and on sketches merged from chunks, in the manner of
sketches-py's ``TestDDSketchProto(TestDDSketch)``.
"""

from __future__ import annotations

import math
import struct
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.sketch import (
    DEFAULT_RELATIVE_ACCURACY,
    MIN_POSITIVE,
    LogSketch,
    SketchError,
)
from tests.detectors.datasets import DATASETS

SIZES = (1, 2, 3, 10, 100, 1000, 20000)
QUANTILES = (0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1)
ACCURACIES = (DEFAULT_RELATIVE_ACCURACY, 0.01, 0.02)
FLOAT_SLACK = 1e-12  # relative: float rounding in log/pow, far below any accuracy tested

#: The v1 header: magic, version, a, n, zeros, offset, length, width. Stored sketches must
#: stay readable, so the layout is pinned here rather than imported.
HEADER = struct.Struct("<4sBdqqiIB")

by_name = pytest.mark.parametrize("name", sorted(DATASETS))
by_size = pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n={n}")
by_accuracy = pytest.mark.parametrize("a", ACCURACIES, ids=lambda a: f"a={a}")


def seed_of(name: str, n: int) -> int:
    """A fixed seed per (dataset, size), different across datasets."""
    return sorted(DATASETS).index(name) * 1_000_003 + n


def build(data: np.ndarray, a: float = DEFAULT_RELATIVE_ACCURACY) -> LogSketch:
    sketch = LogSketch(a)
    sketch.add(np.asarray(data, np.float64))
    return sketch


def merged(*sketches: LogSketch) -> LogSketch:
    out = sketches[0].copy()
    for s in sketches[1:]:
        out.merge(s)
    return out


def round_trip(sketch: LogSketch) -> LogSketch:
    return LogSketch.from_bytes(sketch.to_bytes())


def assert_accurate(sketch: LogSketch, data: np.ndarray) -> None:
    """|q̂ − q| ≤ a·|q| at every tested quantile, q the exact lower quantile (rank floor(p·(n−1)))."""
    a = sketch.relative_accuracy
    misses = []
    for p in QUANTILES:
        exact = float(np.quantile(data, p, method="lower"))
        got = sketch.quantile(p)
        if not abs(got - exact) <= a * abs(exact) + FLOAT_SLACK * abs(exact):
            misses.append(f"p={p}: sketch {got!r}, exact {exact!r}, rel err {abs(got - exact) / exact:.3g}")
    assert not misses, f"accuracy {a} broken: " + "; ".join(misses)


# -- the guarantee ----------------------------------------------------------------------


class TestAccuracy:
    """Every quantile of every dataset is within the relative accuracy of the exact one."""

    @staticmethod
    def sketch_of(data: np.ndarray, a: float) -> LogSketch:
        return build(data, a)

    @by_accuracy
    @by_size
    @by_name
    def test_every_quantile_is_within_the_relative_accuracy(self, name, n, a):
        data = DATASETS[name](n, seed_of(name, n))
        sketch = self.sketch_of(data, a)
        assert sketch.count == n
        assert_accurate(sketch, data)


class TestAccuracyThroughCodec(TestAccuracy):
    """The same guarantee after to_bytes/from_bytes: the codec drops nothing that matters."""

    @staticmethod
    def sketch_of(data: np.ndarray, a: float) -> LogSketch:
        return round_trip(build(data, a))


class TestAccuracyOfMergedChunks(TestAccuracy):
    """The same guarantee for a sketch merged from uneven chunks (partitions) of the data."""

    @staticmethod
    def sketch_of(data: np.ndarray, a: float) -> LogSketch:
        cuts = [0, len(data) // 7, len(data) // 2, len(data)]
        return merged(LogSketch(a), *(build(data[i:j], a) for i, j in pairwise(cuts)))


# -- exact counts -----------------------------------------------------------------------


@by_accuracy
@by_name
def test_counts_around_the_p75_bucket_are_exact(name, a):
    data = DATASETS[name](5000, seed_of(name, 5000))
    probe = build(data, a)
    i75 = probe.quantile_index(0.75)
    i75 = 0 if i75 is None else i75  # all zeros: any index will do
    # The buckets around p75 (where the gate's over-p75 test reads) and two far outside.
    indices = [*range(i75 - 12, i75 + 13), i75 - 5000, i75 + 5000]
    edges = np.array([probe.edge(i) for i in indices])
    # A value within float rounding of an edge may land on either side of it: leave those out.
    near = (np.abs(data[:, None] - edges[None, :]) <= 1e-9 * edges[None, :]).any(axis=1)
    assert near.sum() <= data.size // 100, "the exclusion must not hollow out the test"
    clean = data[~near]
    sketch = build(clean, a)
    for i, edge in zip(indices, edges):
        assert sketch.count_above(i) == int(np.sum(clean > edge)), (i, edge)
        assert sketch.count_at_or_below(i) == int(np.sum(clean <= edge)), (i, edge)


@pytest.mark.parametrize("name", ["lognormal_lcp", "cls_zeros", "inp_integers", "wide_range"])
def test_counts_agree_with_the_bucket_index_even_on_edges(name):
    """Values placed exactly on edges (the worst case) are counted by the bucket they map to."""
    data = DATASETS[name](2000, 11)
    sketch = build(data)
    i75 = sketch.quantile_index(0.75)
    on_edges = np.array([sketch.edge(i) for i in range(i75 - 5, i75 + 6)])
    data = np.concatenate([data, on_edges, on_edges])
    sketch = build(data)
    positive = data[data > MIN_POSITIVE]
    idx = sketch.index(positive)
    for i in range(i75 - 6, i75 + 7):
        assert sketch.count_above(i) == int(np.sum(idx > i))
        assert sketch.count_at_or_below(i) == data.size - int(np.sum(idx > i))


# -- merge ------------------------------------------------------------------------------

MERGE_CASES = [
    pytest.param([("lognormal_lcp", 1000), ("lognormal_lcp", 1000)], id="equal-sizes"),
    pytest.param([("lognormal_lcp", 10), ("lognormal_lcp", 5000)], id="unequal-small-into-large"),
    pytest.param([("heavy_tail", 5000), ("heavy_tail", 3)], id="unequal-large-into-small"),
    pytest.param([(name, 300) for name in sorted(DATASETS)], id="mixed-distributions"),
    pytest.param([(name, 300) for name in sorted(DATASETS, reverse=True)], id="mixed-reversed"),
    pytest.param([("uniform_zoom_in", 200), ("wide_range", 200)], id="narrow-then-wide"),
    pytest.param([("lognormal_lcp", 0), ("bimodal_cache", 300)], id="into-empty"),
    pytest.param([("bimodal_cache", 300), ("lognormal_lcp", 0)], id="empty-into"),
    pytest.param([("cls_zeros", 0), ("cls_zeros", 0)], id="empty-and-empty"),
]


@by_accuracy
@pytest.mark.parametrize("parts", MERGE_CASES)
def test_merge_equals_the_sketch_of_the_concatenated_data(parts, a):
    data = [DATASETS[name](n, seed_of(name, n) + k) for k, (name, n) in enumerate(parts)]
    sketches = [build(d, a) for d in data]
    snapshots = [(s.copy(), s.offset, s.counts.copy(), s.zeros) for s in sketches]
    out = sketches[0]
    for s in sketches[1:]:
        out.merge(s)
    everything = np.concatenate(data)
    assert out == build(everything, a)
    assert out.count == everything.size
    if everything.size:
        assert_accurate(out, everything)
    # The arguments are unchanged, and stay so when the result is changed afterwards, both
    # in place (values inside its range) and by growing (values outside it).
    out.add(everything)
    out.add(np.array([1e-3, 7.0, 9e5]))
    for s, (copy, offset, counts, zeros) in zip(sketches[1:], snapshots[1:]):
        assert s == copy and s.offset == offset and s.zeros == zeros
        assert np.array_equal(s.counts, counts)


def test_merging_different_accuracies_is_refused_and_changes_nothing():
    left, right = build(np.array([1.0, 50.0]), 0.005), build(np.array([3.0]), 0.01)
    before = left.copy()
    with pytest.raises(SketchError, match=r"different relative accuracy.*0\.005.*0\.01"):
        left.merge(right)
    assert left == before
    assert issubclass(SketchError, ValueError)


values = st.lists(
    st.one_of(
        st.sampled_from([0.0, 5e-324, 1e-12, MIN_POSITIVE, 1.0000001e-9, 1.0, 2500.0, 1e6]),
        st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
    ),
    max_size=200,
)


@settings(max_examples=100, deadline=None)
@given(values, values, values)
def test_merge_is_commutative_and_associative(x, y, z):
    a, b, c = (build(np.array(v, np.float64)) for v in (x, y, z))
    assert merged(a, b) == merged(b, a)
    assert merged(merged(a, b), c) == merged(a, merged(b, c))
    assert merged(a, b, c).count == len(x) + len(y) + len(z)


# -- codec ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(values)
def test_codec_round_trip_keeps_everything(xs):
    sketch = build(np.array(xs, np.float64))
    back = round_trip(sketch)
    assert back == sketch
    assert back.count == len(xs) and back.zeros == sketch.zeros
    assert back.to_bytes() == sketch.to_bytes()
    for p in QUANTILES:
        q, q_back = sketch.quantile(p), back.quantile(p)
        assert q_back == q or (math.isnan(q_back) and math.isnan(q) and not xs)


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from(ACCURACIES))
def test_the_guarantee_holds_for_any_data_with_tiny_values_read_as_zero(xs, a):
    """Values at or below MIN_POSITIVE are kept as zeros; every other quantile is within a."""
    data = np.array(xs, np.float64)
    for sketch in (build(data, a), round_trip(build(data, a))):
        previous = 0.0
        for p in QUANTILES if xs else ():
            exact, got = float(np.quantile(data, p, method="lower")), sketch.quantile(p)
            if exact <= MIN_POSITIVE:
                assert got == 0.0, (p, exact, got)
            else:
                assert abs(got - exact) <= (a + FLOAT_SLACK) * exact, (p, exact, got)
            assert got >= previous  # quantiles never decrease with p
            previous = got


def test_encoding_is_compact():
    data = DATASETS["lognormal_lcp"](10_000, 2)
    encoded = build(data).to_bytes()
    assert len(encoded) < 4096, len(encoded)


@pytest.mark.parametrize("top, width", [
    (65_535, 2),  # largest count that fits uint16
    (65_536, 4),  # one more needs uint32
    (2**32, 8),  # beyond uint32
], ids=["u16", "u32", "u64"])
def test_counts_are_stored_in_the_narrowest_width_that_fits(top, width):
    sketch = build(np.array([1.0, 2.0, 300.0]))
    sketch.add_counts(sketch.index(np.array([40.0]))[0], np.array([top], np.int64))  # an empty bucket
    encoded = sketch.to_bytes()
    *_, length, got_width = HEADER.unpack_from(encoded)
    assert got_width == width and len(encoded) == HEADER.size + length * width
    back = LogSketch.from_bytes(encoded)
    assert back == sketch and back.count == top + 3


def test_the_v1_header_layout_is_stable():
    sketch = build(np.array([0.0, 0.0, 1.0, 2.0, 300.0]), 0.01)
    magic, version, a, n, zeros, offset, length, width = HEADER.unpack_from(sketch.to_bytes())
    assert (magic, version, a, n, zeros, width) == (b"RGSK", 1, 0.01, 5, 2, 2)
    assert offset == sketch.index(np.array([1.0]))[0]  # the body starts at the first non-empty bucket
    assert offset + length - 1 == sketch.index(np.array([300.0]))[0]


def _with_header(encoded: bytes, **fields: object) -> bytes:
    names = ("magic", "version", "a", "n", "zeros", "offset", "length", "width")
    header = dict(zip(names, HEADER.unpack_from(encoded)))
    header.update(fields)
    return HEADER.pack(*header.values()) + encoded[HEADER.size:]


GOOD = build(np.array([0.0, 1.0, 2.0, 300.0])).to_bytes()

CORRUPT = [
    pytest.param(b"", "too short", id="empty"),
    pytest.param(GOOD[:10], "too short", id="truncated-header"),
    pytest.param(GOOD[:-1], "wrong length", id="truncated-body"),
    pytest.param(GOOD + b"\0\0", "wrong length", id="trailing-bytes"),
    pytest.param(b"XXXX" + GOOD[4:], "magic", id="wrong-magic"),
    pytest.param(_with_header(GOOD, version=2), "version 2", id="wrong-version"),
    pytest.param(_with_header(GOOD, width=3), "wrong length", id="bad-width"),
    pytest.param(_with_header(GOOD, n=5), "header says 5 values, body holds 4", id="count-mismatch"),
    pytest.param(_with_header(GOOD, zeros=7), "header says 4 values, body holds 10", id="zeros-mismatch"),
    pytest.param(_with_header(GOOD, a=1.5), "relative accuracy", id="bad-accuracy"),
    # Totals that agree, but a zero count of -1: no sketch holds a negative number of values.
    pytest.param(_with_header(GOOD, zeros=-1, n=2), "negative counts", id="negative-zeros"),
]


@pytest.mark.parametrize("data, message", CORRUPT)
def test_corrupt_bytes_are_refused_with_a_reason(data, message):
    with pytest.raises(SketchError, match=message) as info:
        LogSketch.from_bytes(data)
    assert str(info.value)


# -- bad input --------------------------------------------------------------------------


def test_negative_values_are_refused_before_anything_is_counted():
    sketch = build(np.array([5.0]))
    with pytest.raises(SketchError, match=r">= 0, got .*-2\.0"):
        sketch.add(np.array([1.0, -2.0, 3.0]))
    assert sketch == build(np.array([5.0]))


def test_negative_zero_is_a_zero():
    sketch = build(np.array([-0.0, 0.0]))
    assert (sketch.count, sketch.zeros, sketch.quantile(1)) == (2, 2, 0.0)


def test_nan_means_absent():
    sketch = build(np.array([np.nan, 5.0, np.nan]))
    assert sketch == build(np.array([5.0])) and sketch.count == 1
    assert build(np.array([np.nan, np.nan])).count == 0


@pytest.mark.parametrize("a", [0, 1, -0.1, 1.5, math.nan, math.inf])
def test_relative_accuracy_outside_the_open_unit_interval_is_refused(a):
    with pytest.raises(SketchError, match="relative accuracy must be in"):
        LogSketch(a)


@pytest.mark.parametrize("p", [-0.01, 1.01, math.nan])
@pytest.mark.parametrize("data", [[], [1.0, 2.0]], ids=["empty", "filled"])
def test_a_quantile_outside_0_1_is_refused(p, data):
    with pytest.raises(SketchError, match="quantile must be in"):
        build(np.array(data)).quantile(p)


def test_an_empty_sketch_has_no_quantiles():
    sketch = LogSketch()
    assert all(math.isnan(sketch.quantile(p)) for p in QUANTILES)
    assert sketch.quantile_index(0.5) is None
    assert (sketch.count, sketch.count_above(0), sketch.count_at_or_below(0)) == (0, 0, 0)
