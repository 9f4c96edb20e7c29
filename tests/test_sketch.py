"""LogSketch: the relative-accuracy guarantee itself, exact edge counts, merge and codec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.sketch import LogSketch, SketchError

# Named RUM-shaped distributions (seeded): what the sketch must be accurate on.
DATASETS = {
    "lognormal-lcp": lambda rng, n: rng.lognormal(np.log(1300), 0.8, n),
    "heavy-tail": lambda rng, n: rng.lognormal(7.2, 0.7, n) * np.where(rng.random(n) < 0.02, 5, 1),
    "bimodal-cache": lambda rng, n: np.where(rng.random(n) < 0.6, rng.lognormal(5.5, 0.3, n),
                                             rng.lognormal(7.8, 0.4, n)),
    "inp-integers": lambda rng, n: np.maximum(8, np.ceil(rng.lognormal(4.56, 1.1, n) / 8) * 8),
    "constant": lambda rng, n: np.full(n, 1234.5),
    "cls-zeros": lambda rng, n: np.where(rng.random(n) < 0.3, 0.0, np.round(rng.lognormal(-3.22, 1.3, n), 4)),
    "all-zeros": lambda rng, n: np.zeros(n),
    "zoom-in": lambda rng, n: rng.uniform(1000, 1001, n),
    "wide-range": lambda rng, n: 10 ** rng.uniform(-3, 6, n),
}
SIZES = (1, 2, 3, 10, 100, 1000, 20000)
QUANTILES = (0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1)


def assert_accurate(sketch: LogSketch, data: np.ndarray) -> None:
    a = sketch.relative_accuracy
    for q in QUANTILES:
        exact = np.quantile(data, q, method="lower")  # the sketch's rank: floor(q·(n−1))
        got = sketch.quantile(q)
        assert abs(got - exact) <= a * abs(exact) * (1 + 1e-9), (q, got, exact)


def build(data: np.ndarray, a: float = 0.005) -> LogSketch:
    s = LogSketch(a)
    s.add(data)
    return s


@pytest.mark.parametrize("a", [0.005, 0.01, 0.02])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_quantile_is_within_the_relative_accuracy(name, n, a):
    data = DATASETS[name](np.random.default_rng(n), n)
    sketch = build(data, a)
    assert sketch.count == n
    assert_accurate(sketch, data)
    # The codec keeps everything: the same guarantee holds after a round trip.
    assert_accurate(LogSketch.from_bytes(sketch.to_bytes()), data)


@pytest.mark.parametrize("name", ["lognormal-lcp", "cls-zeros", "inp-integers"])
def test_counts_at_bucket_edges_are_exact(name):
    data = DATASETS[name](np.random.default_rng(1), 5000)
    sketch = build(data)
    i75 = sketch.quantile_index(0.75)
    for i in range(i75 - 30, i75 + 31, 3):
        edge = sketch.edge(i)
        near = np.isclose(data, edge, rtol=1e-9)  # values on an edge may round either way
        assert abs(sketch.count_above(i) - int(np.sum(data > edge))) <= int(near.sum())
        assert sketch.count_above(i) + sketch.count_at_or_below(i) == data.size


@pytest.mark.parametrize("sizes", [(1000, 1000), (10, 5000), (0, 300), (300, 0)],
                         ids=["equal", "unequal", "empty-left", "empty-right"])
def test_merge_equals_the_sketch_of_the_concatenated_data(sizes):
    rng = np.random.default_rng(7)
    x = DATASETS["lognormal-lcp"](rng, sizes[0])
    y = DATASETS["bimodal-cache"](rng, sizes[1])
    left, right = build(x), build(y)
    before = right.to_bytes()
    left.merge(right)
    assert left == build(np.concatenate([x, y]))
    assert right.to_bytes() == before  # the argument is not changed
    if x.size + y.size:
        assert_accurate(left, np.concatenate([x, y]))


def test_merging_different_accuracies_is_refused():
    with pytest.raises(SketchError, match="different relative accuracy"):
        build(np.ones(3), 0.005).merge(build(np.ones(3), 0.01))


values = st.lists(st.one_of(st.just(0.0), st.floats(0, 1e6, allow_nan=False, allow_infinity=False)),
                  max_size=200)


@settings(max_examples=150, deadline=None)
@given(values)
def test_codec_round_trip_keeps_everything(xs):
    sketch = build(np.array(xs, float))
    back = LogSketch.from_bytes(sketch.to_bytes())
    assert back == sketch and back.count == len(xs)
    for q in (0, 0.5, 0.75, 1):
        assert back.quantile(q) == sketch.quantile(q) or (np.isnan(back.quantile(q)) and not xs)


@settings(max_examples=100, deadline=None)
@given(values, values, values)
def test_merge_is_commutative_and_associative(a, b, c):
    sa, sb, sc = (build(np.array(v, float)) for v in (a, b, c))
    ab = sa.copy(); ab.merge(sb)  # noqa: E702
    ba = sb.copy(); ba.merge(sa)  # noqa: E702
    assert ab == ba
    ab_c = ab.copy(); ab_c.merge(sc)  # noqa: E702
    bc = sb.copy(); bc.merge(sc)  # noqa: E702
    a_bc = sa.copy(); a_bc.merge(bc)  # noqa: E702
    assert ab_c == a_bc


def test_encoding_is_compact():
    sketch = build(DATASETS["lognormal-lcp"](np.random.default_rng(2), 10_000))
    assert len(sketch.to_bytes()) < 4096


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b[:10], "too short"),
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:4] + bytes([9]) + b[5:], "version"),
    (lambda b: b[:-2], "wrong length"),
    (lambda b: b[:13] + (10**6).to_bytes(8, "little") + b[21:], "corrupt"),
], ids=["truncated", "magic", "version", "length", "count"])
def test_bad_bytes_are_refused_with_a_reason(mangle, message):
    good = build(np.array([1.0, 2.0, 300.0])).to_bytes()
    with pytest.raises(SketchError, match=message):
        LogSketch.from_bytes(mangle(good))


def test_bad_input_and_parameters():
    s = LogSketch()
    with pytest.raises(SketchError, match=">= 0"):
        s.add(np.array([1.0, -2.0]))
    s.add(np.array([np.nan, 5.0]))
    assert s.count == 1  # NaN means absent
    for a in (0, 1, -0.1, 2):
        with pytest.raises(SketchError, match="relative accuracy"):
            LogSketch(a)
    with pytest.raises(SketchError, match="quantile"):
        s.quantile(1.5)
    assert np.isnan(LogSketch().quantile(0.5))
