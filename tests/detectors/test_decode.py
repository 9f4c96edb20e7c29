"""Batch decoding: records of every shape, rejects with their place, the columnar fast
path checked against item-by-item validation, and the typed path against the general one."""

from __future__ import annotations

import functools
import math
from unittest import mock

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.beacon import METRIC_LIMITS, METRICS, SEGMENTS, CohortKey, validate_beacon
from detectors.decode import Reject, decode_objects, decode_records
from detectors.typed_decode import KNOWN_FIELDS, TypedMetrics, decode_typed

TS = 1_763_856_000_000
TS_MIN, TS_MAX = 1_000_000_000_000, 9_999_999_999_999  # epoch ms, 2001 .. 2286


def beacon(i: int = 0, **fields) -> dict:
    """A valid canonical beacon; ``fields`` override (a value of ``...`` removes the field)."""
    out = {"ts": TS + i, "app": "shop-web", "release": "r2", "device": "mobile",
           "metrics": {"LCP": 2000.0 + i}, "errors": 0, **fields}
    return {k: v for k, v in out.items() if v is not ...}


def enc(*objs) -> bytes:
    return orjson.dumps(objs[0] if len(objs) == 1 else list(objs))


def ndjson(*lines: bytes | dict) -> bytes:
    return b"\n".join(x if isinstance(x, bytes) else orjson.dumps(x) for x in lines) + b"\n"


def rows(batch) -> list[tuple]:
    """One comparable tuple per row: (ts, CohortKey, metrics with NaN as None, errors, session,
    what stage 1 joins it by, whether it is a part)."""
    return [
        (int(batch.ts[i]), batch.keys[batch.key[i]],
         tuple(None if math.isnan(batch.metrics[m][i]) else float(batch.metrics[m][i])
               for m in METRICS),
         int(batch.errors[i]), batch.session[i] if batch.session is not None else None,
         batch.view[i] if batch.view is not None else None,
         bool(batch.part[i]) if batch.part is not None else False)
        for i in range(len(batch))
    ]


def expected_rows(objs: list) -> list[tuple]:
    """The rows item-by-item validation gives for the valid ones, in order."""
    out = []
    for obj in objs:
        b, _ = validate_beacon(obj)
        if b is not None:
            out.append((b.ts, b.key, tuple(b.metrics.get(m) for m in METRICS), b.errors, b.session,
                        b.view or b.id, b.part and not b.view))
    return out


# -- record shapes -------------------------------------------------------------------------------

def test_one_object_per_record_keeps_input_order():
    records = [enc(beacon(i)) for i in (3, 1, 2)]
    result = decode_records(records)
    assert result.rejects == []
    assert result.batch.ts.tolist() == [TS + 3, TS + 1, TS + 2]
    assert result.batch.metrics["LCP"].tolist() == [2003.0, 2001.0, 2002.0]


def test_a_json_array_record_gives_its_items_in_order_and_rejects_by_index():
    bad = beacon(1, errors=-1)
    result = decode_records([enc(beacon(0), bad, beacon(2))])
    assert result.batch.ts.tolist() == [TS, TS + 2]
    assert result.rejects == [Reject(0, 1, orjson.dumps(bad), "errors: must be an integer in "
                                     "[0, 1000000], got -1")]


def test_an_ndjson_record_with_a_bad_line_rejects_only_that_line():
    record = ndjson(beacon(0), b'{"ts": 1763856000001, "app": "shop-web", "rel', beacon(2))
    result = decode_records([record])
    assert result.batch.ts.tolist() == [TS, TS + 2]
    [reject] = result.rejects
    assert (reject.record, reject.item) == (0, 1)
    assert reject.raw == b'{"ts": 1763856000001, "app": "shop-web", "rel'
    assert reject.reason.startswith("line 2: not valid JSON (")


def test_an_ndjson_line_that_is_json_but_not_a_beacon_is_rejected_with_its_bytes():
    bad = beacon(1, metrics={"LCP": -5})
    result = decode_records([ndjson(beacon(0), bad, beacon(2), beacon(3))])
    assert len(result.batch) == 3
    [reject] = result.rejects
    assert (reject.record, reject.item, reject.reason) == (0, 1, "metrics.LCP: must be >= 0, got -5")
    assert orjson.loads(reject.raw) == bad


def test_ndjson_tolerates_blank_lines_and_crlf():
    record = b"\r\n".join([enc(beacon(0)), b"", b"   ", enc(beacon(1))]) + b"\r\n"
    result = decode_records([record])
    assert result.rejects == [] and result.batch.ts.tolist() == [TS, TS + 1]


@pytest.mark.parametrize("record", [
    b"not json",  # text
    b"",  # empty record
    b"  \n  ",  # only whitespace
    b'{"ts": 1763856000000, "app": "shop-web"',  # a truncated object on one line
    b"\xff\xfe{}",  # not UTF-8
], ids=["text", "empty", "whitespace", "truncated", "binary"])
def test_a_record_that_is_not_json_is_rejected_whole_with_its_bytes(record):
    result = decode_records([enc(beacon(0)), record])
    assert len(result.batch) == 1
    assert result.rejects == [Reject(1, None, record, "record: not valid JSON or NDJSON")]


def test_a_whole_record_reject_keeps_the_original_bytes():
    record = b'{ "ts" : 1763856000,   "app": "shop-web", "release": "r2" }'  # seconds
    result = decode_records([record])
    assert result.rejects == [Reject(0, None, record, "ts: 1763856000 is not epoch milliseconds")]


@pytest.mark.parametrize("record, reason", [
    (b"42", "beacon: must be a JSON object, got int"),  # a scalar
    (b'"hello"', "beacon: must be a JSON object, got str"),  # a string
    (b"null", "beacon: must be a JSON object, got NoneType"),  # null
], ids=["int", "string", "null"])
def test_a_json_record_that_is_not_an_object_is_rejected(record, reason):
    assert decode_records([record]).rejects == [Reject(0, None, record, reason)]


def test_empty_input_and_empty_arrays_give_an_empty_batch():
    for records in ([], [b"[]"], [b"[]", b"[ ]"]):
        result = decode_records(records)
        assert len(result.batch) == 0 and result.rejects == []
        assert set(result.batch.metrics) == set(METRICS)


def test_a_mix_of_every_shape_in_one_call():
    bad_item = beacon(11, device="phone")
    records = [
        enc(beacon(0)),                                   # 0: one object
        enc(beacon(1), bad_item, beacon(2)),              # 1: array, item 1 bad
        ndjson(beacon(3), b"{oops", beacon(4)),           # 2: NDJSON, line 2 bad
        b"not json",                                      # 3: garbage
        b"[]",                                            # 4: empty array
        enc(beacon(5, ts=1.5)),                           # 5: one object, invalid
        enc(beacon(6, cohort="flag-on", device=...)),     # 6: one object, cohort, no device
    ]
    result = decode_records(records)
    assert [(r.record, r.item) for r in result.rejects] == [(1, 1), (2, 1), (3, None), (5, None)]
    reasons = [r.reason for r in result.rejects]
    assert reasons[0] == "device: must be one of mobile, desktop, tablet, unknown, got 'phone'"
    assert reasons[1].startswith("line 2: not valid JSON")
    assert reasons[2] == "record: not valid JSON or NDJSON"
    assert reasons[3] == "ts: must be an integer (epoch ms), got float"
    assert orjson.loads(result.rejects[0].raw) == bad_item
    assert result.rejects[1].raw == b"{oops"
    assert result.rejects[2].raw == b"not json" and result.rejects[3].raw == records[5]
    assert result.batch.ts.tolist() == [TS, TS + 1, TS + 2, TS + 3, TS + 4, TS + 6]
    assert [result.batch.keys[k] for k in result.batch.key][-1] == \
        CohortKey("shop-web", "r2", "flag-on", "unknown")


# -- batch columns -------------------------------------------------------------------------------

def test_the_batch_columns():
    records = [
        enc(beacon(0, metrics={"LCP": 2400, "CLS": 0.0}, errors=2)),
        enc(beacon(1, device="desktop", metrics={"INP": 80.5})),
        enc(beacon(2, device=..., metrics=...)),                     # no device, no metrics
        enc(beacon(3, release="r1", errors=None, metrics={"LCP": None, "TTFB": 300})),
        enc(beacon(4, cohort="flag-on")),
        enc(beacon(5, device=None)),                                 # null device = no device
        enc(beacon(6, metrics={"FCP": 900.0})),
    ]
    batch = decode_records(records).batch
    assert (batch.ts.dtype, batch.key.dtype, batch.errors.dtype) == (np.int64, np.int32, np.int64)
    assert all(v.dtype == np.float64 and v.shape == (7,) for v in batch.metrics.values())
    assert batch.ts.tolist() == [TS + i for i in range(7)]
    assert batch.errors.tolist() == [2, 0, 0, 0, 0, 0, 0]
    keys = [batch.keys[k] for k in batch.key]
    assert keys == [
        CohortKey("shop-web", "r2", None, "mobile"),
        CohortKey("shop-web", "r2", None, "desktop"),
        CohortKey("shop-web", "r2", None, "unknown"),
        CohortKey("shop-web", "r1", None, "mobile"),
        CohortKey("shop-web", "r2", "flag-on", "mobile"),
        CohortKey("shop-web", "r2", None, "unknown"),
        CohortKey("shop-web", "r2", None, "mobile"),
    ]
    assert len(batch.keys) == len(set(batch.keys)) == 5  # one code per distinct cohort key
    nan = np.nan
    np.testing.assert_array_equal(batch.metrics["LCP"], [2400, nan, nan, nan, 2004, 2005, nan])
    np.testing.assert_array_equal(batch.metrics["CLS"], [0.0, nan, nan, nan, nan, nan, nan])
    np.testing.assert_array_equal(batch.metrics["INP"], [nan, 80.5, nan, nan, nan, nan, nan])
    np.testing.assert_array_equal(batch.metrics["TTFB"], [nan, nan, nan, 300, nan, nan, nan])
    np.testing.assert_array_equal(batch.metrics["FCP"], [nan] * 6 + [900.0])


# -- the fast columnar path against item-by-item validation -----------------------------------

MISSING = object()  # a drawn "value" that means: leave the field out
APPS, RELEASES, COHORTS = ["shop-web", "blog"], ["r1", "r2"], [None, "flag-on", "flag-off"]
INT64_MAX, UINT64_MAX = 2**63 - 1, 2**64 - 1  # orjson reads integers in [-2**63, 2**64)
# Values the decoder deliberately sends down the item-by-item path: integers beyond ±2**62
# (numpy int64 safety), NaN metrics, lists or objects where a string belongs. They are drawn
# only when ``wrong_types`` is on; within ±BIG the columnar path must handle bad values itself.
BIG = 2**62 - 1
json_ints = st.integers(-(2**63), UINT64_MAX)
json_scalars = st.one_of(st.none(), st.booleans(), json_ints,
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)


def _metric_value(metric: str, *, wrong_types: bool) -> st.SearchStrategy:
    limit = METRIC_LIMITS[metric]
    good = st.one_of(st.floats(0, limit), st.integers(0, int(limit)), st.sampled_from([0, limit]),
                     st.none())
    bad_value = st.one_of(
        st.floats(max_value=-1e-9, allow_nan=False),       # negative, down to -inf
        st.integers(-(2**63), -1),
        st.floats(min_value=limit * 1.0000001),            # above the limit, up to +inf
        st.integers(min_value=int(limit) + 1, max_value=2**64 - 1),  # huge, still valid JSON
    )
    options = [good, good, good, bad_value]
    if wrong_types:
        options.append(st.one_of(st.booleans(), st.text(max_size=4), st.lists(st.integers(0, 9), max_size=2),
                                 st.just(math.nan)))  # NaN only from Python callers: orjson never yields it
    return st.one_of(*options)


def _pick(good, bad_value, bad_type=None, *, wrong_types: bool, missing_ok: bool = False):
    options = [good, good, good, good, bad_value]
    if missing_ok:
        options.append(st.just(MISSING))
    if wrong_types and bad_type is not None:
        options.append(bad_type)
    return st.one_of(*options)


def _beacons(wrong_types: bool) -> st.SearchStrategy:
    pick = functools.partial(_pick, wrong_types=wrong_types)
    type_bad = st.one_of(st.just(MISSING), st.none(), st.booleans(), st.floats(allow_nan=False),
                         json_ints, st.text(max_size=3), st.lists(st.text(max_size=2), max_size=2),
                         st.dictionaries(st.text(max_size=2), st.integers(0, 9), max_size=2))
    beyond = st.one_of(st.integers(-(2**63), -BIG - 1), st.integers(BIG + 1, UINT64_MAX))
    long_text = st.builds(str.__mul__, st.sampled_from(["a", "é", " "]), st.integers(513, 520))
    # Names have their own limits (128 for app and release, 64 for a cohort) and no control
    # characters: values on both sides of each rule, so both paths must draw the line alike.
    def name_text(limit: int) -> st.SearchStrategy:
        return st.one_of(st.builds(str.__mul__, st.sampled_from(["a", "é"]), st.integers(limit - 1, limit + 2)),
                         st.builds(lambda c, s: f"r{c}{s}", st.sampled_from(["\n", "\x00", "\x1b", "\x7f", "\x85",
                                                                             "\u00a0", "\u200d"]),
                                   st.text(max_size=2)))
    metrics = st.fixed_dictionaries({}, optional={
        m: _metric_value(m, wrong_types=wrong_types) for m in METRICS})
    if wrong_types:  # sometimes a metric the core does not know
        metrics = st.one_of(metrics, metrics, metrics, st.builds(
            lambda d, name: {**d, name: 1.0}, metrics, st.sampled_from(["FID", "lcp", "", "LCP "])))
    fields = {
        "ts": pick(st.integers(TS_MIN, TS_MAX),
                   st.one_of(st.integers(-BIG, TS_MIN - 1), st.integers(TS_MAX + 1, BIG),
                             st.sampled_from([0, 1_763_856_000, TS * 1000])),
                   st.one_of(type_bad, beyond)),
        "app": pick(st.sampled_from(APPS), st.one_of(st.sampled_from(["", " ", "\t\n"]), long_text,
                                                     name_text(128)), type_bad),
        "release": pick(st.sampled_from(RELEASES), st.one_of(st.just(""), long_text, name_text(128)), type_bad),
        "device": pick(st.sampled_from([*SEGMENTS, None]),
                       st.one_of(st.sampled_from(["", "phone", "Mobile", "tv"]), long_text),
                       type_bad, missing_ok=True),
        "cohort": pick(st.sampled_from(COHORTS), st.one_of(long_text, name_text(64)), type_bad, missing_ok=True),
        "view": pick(st.sampled_from(["v1", "v2", None]), st.one_of(long_text, name_text(128)), type_bad,
                     missing_ok=True),
        "part": pick(st.sampled_from([True, False, None]), st.sampled_from([0, 1, "true"]), type_bad,
                     missing_ok=True),
        # The session is checked too: the sample-ratio test counts users by it.
        "session": pick(st.one_of(st.text(max_size=8), st.none()), long_text, type_bad, missing_ok=True),
        "errors": pick(st.one_of(st.integers(0, 1_000_000), st.none()),
                       st.one_of(st.integers(-BIG, -1), st.integers(1_000_001, BIG)),
                       st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=2), beyond),
                       missing_ok=True),
        "metrics": pick(metrics, st.none(), st.one_of(
            st.lists(st.floats(0, 10), max_size=2), st.text(max_size=3), st.integers(0, 9)),
            missing_ok=True),
    }
    # The sender's own fields and the canonical ones the core ignores, any JSON: ignored by
    # validation, and what the typed path takes only when typed as the ingestion gateway writes them.
    extra = st.dictionaries(st.sampled_from(["id", "page", "x", "client_ts", "country", "browser"]),
                            st.one_of(json_values, st.text(max_size=4), st.integers(0, UINT64_MAX)), max_size=2)
    beacon = st.builds(lambda f, e: {k: v for k, v in {**f, **e}.items() if v is not MISSING},
                       st.fixed_dictionaries(fields), extra)
    if wrong_types:  # sometimes not even a beacon-shaped object (may still be a dict)
        return st.one_of(beacon, beacon, beacon, beacon, json_values)
    return beacon


_BEACONS = {False: _beacons(False), True: _beacons(True)}


def beacon_like(wrong_types: bool) -> st.SearchStrategy:
    """A beacon: valid, or corrupted in its values (range, emptiness, unknown device...),
    or, when ``wrong_types``, in its types (bools, strings, missing required fields,
    unknown metrics, non-objects)."""
    return _BEACONS[wrong_types]


def assert_same_as_item_by_item(objs: list) -> None:
    batch, bad = decode_objects(objs)
    verdicts = [validate_beacon(o) for o in objs]
    assert bad == [(i, reason) for i, (b, reason) in enumerate(verdicts) if b is None]
    assert rows(batch) == expected_rows(objs)
    assert len(batch) == len(batch.key) == len(batch.errors)
    assert set(batch.metrics) == set(METRICS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans().flatmap(lambda wrong: st.lists(beacon_like(wrong), max_size=25)))
def test_the_columnar_path_gives_exactly_the_item_by_item_verdicts(objs):
    assert_same_as_item_by_item(objs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(beacon_like(False), min_size=1, max_size=25))
def test_values_out_of_range_stay_on_the_columnar_path_and_match(objs):
    # Corrupted values (not types) must not push the whole batch onto the slow path: with the
    # item-by-item fallback disabled, the columnar result must still be exact.
    with mock.patch("detectors.decode._slow", side_effect=AssertionError("left the columnar path")):
        assert_same_as_item_by_item(objs)


# -- decode_records never raises, and accounts for every item -------------------------------------

@st.composite
def records(draw) -> list[tuple[bytes, int | None]]:
    """One record, or a few that belong together, each with its number of items (None when
    it is not valid JSON or NDJSON)."""
    kind = draw(st.sampled_from(["object", "array", "ndjson", "json", "garbage", "fragments"]))
    if kind in ("object", "json"):  # one value; a top-level array is a record of its items
        value = draw(beacon_like(True) if kind == "object" else json_values)
        return [(orjson.dumps(value), len(value) if isinstance(value, list) else 1)]
    if kind == "array":
        items = draw(st.lists(beacon_like(True), max_size=5))
        return [(orjson.dumps(items), len(items))]
    if kind == "ndjson":
        items = draw(st.lists(beacon_like(True), min_size=2, max_size=5))
        return [(b"\n".join(orjson.dumps(x) for x in items), len(items))]
    if kind == "garbage":
        return [(draw(st.sampled_from([b"not json", b"", b"   ", b'{"ts": 1,}', b"\xff\xfe", b"nul"])),
                 None)]
    # Records that are each invalid but become valid JSON, with as many elements as records,
    # if glued together with commas: `{a}, [{b}` + `{c}]` and `{a}, {b}` + `[{c}` + `{d}]`.
    a, b, c, d = (orjson.dumps(draw(beacon_like(False))) for _ in range(4))
    pieces = draw(st.sampled_from([[a + b", [" + b, c + b"]"], [a + b", " + b, b"[" + c, d + b"]"]]))
    return [(piece, None) for piece in pieces]


def flat(groups: list[list[tuple[bytes, int | None]]]) -> list[tuple[bytes, int | None]]:
    return [record for group in groups for record in group]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_never_make_decode_records_raise(records_):
    result = decode_records(records_)
    assert all(0 <= r.record < len(records_) for r in result.rejects)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=8))
def test_arbitrary_json_values_never_make_decode_records_raise(values):
    decode_records([orjson.dumps(v) for v in values])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=6).map(flat))
def test_every_item_is_either_accepted_or_rejected_once(drawn):
    recs = [r for r, _ in drawn]
    result = decode_records(recs)
    if all(n is not None for _, n in drawn):
        assert len(result.batch) + len(result.rejects) == sum(n for _, n in drawn)
    # Rejects are ordered by place, and each place is rejected at most once.
    places = [(r.record, -1 if r.item is None else r.item) for r in result.rejects]
    assert places == sorted(places) and len(places) == len(set(places))
    for reject in result.rejects:
        if reject.item is None:  # a whole record keeps its own bytes
            assert reject.raw == recs[reject.record]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=6).map(flat))
def test_decoding_records_together_equals_decoding_each_alone(drawn):
    recs = [r for r, _ in drawn]
    together = decode_records(recs)
    alone = [decode_records([r]) for r in recs]
    assert rows(together.batch) == [row for a in alone for row in rows(a.batch)]
    assert together.rejects == [Reject(i, r.item, r.raw, r.reason)
                                for i, a in enumerate(alone) for r in a.rejects]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(beacon_like(True), max_size=4), max_size=6))
def test_array_records_give_the_item_by_item_verdicts_at_the_right_place(arrays):
    arrays = [orjson.loads(orjson.dumps(a)) for a in arrays]  # as read back (±inf → null)
    result = decode_records([orjson.dumps(a) for a in arrays])
    items = [(r, i, obj) for r, a in enumerate(arrays) for i, obj in enumerate(a)]
    expected = [(r, i, validate_beacon(obj)[1]) for r, i, obj in items
                if validate_beacon(obj)[0] is None]
    assert [(x.record, x.item, x.reason) for x in result.rejects] == expected
    assert all(orjson.loads(x.raw) == arrays[x.record][x.item] for x in result.rejects)
    assert rows(result.batch) == expected_rows([obj for _, _, obj in items])


# -- regressions: bugs found while writing these tests (fixed in 8baca5a) ---------------------

@pytest.mark.parametrize("field, value", [
    ("ts", 2**63),           # valid JSON, read by orjson as a Python int
    ("ts", 2**64 - 1),
    ("errors", 2**63),
    ("errors", 2**64 - 1),
], ids=["ts-2^63", "ts-2^64-1", "errors-2^63", "errors-2^64-1"])
def test_an_integer_beyond_int64_is_rejected_not_raised(field, value):
    # Was: the columnar path built np.array(..., np.int64) and raised OverflowError, so one
    # hostile beacon took down the whole batch (and the backtest or agent decoding it).
    record = enc(beacon(0, **{field: value}))
    result = decode_records([enc(beacon(1)), record])
    assert len(result.batch) == 1
    [reject] = result.rejects
    assert (reject.record, reject.item, reject.raw) == (1, None, record)
    assert reject.reason.startswith(f"{field}: ")


def test_records_that_are_each_invalid_stay_invalid_when_decoded_together():
    # Was: the fast path joined all records with commas into one array. Two records that are
    # each invalid JSON could join into valid JSON with as many elements as records: here
    # `[{A}, [{B}, {C}]]`. The batch then accepted three beacons from two corrupt records and
    # credited B and C to record 1, although each record alone is rejected whole.
    a, b, c = (enc(beacon(i)) for i in range(3))
    records = [a + b", [" + b, c + b"]"]
    for record in records:
        assert decode_records([record]).rejects[0].reason == "record: not valid JSON or NDJSON"
    result = decode_records(records)
    assert len(result.batch) == 0
    assert [(r.record, r.item, r.reason) for r in result.rejects] == [
        (0, None, "record: not valid JSON or NDJSON"), (1, None, "record: not valid JSON or NDJSON")]


def test_a_nan_metric_is_refused_by_the_columnar_path_too():
    # Was (only reachable by callers of decode_objects with Python floats: orjson never yields
    # NaN): validate_beacon refuses NaN, but the columnar path read it as "absent" and kept
    # the beacon, so the two paths disagreed, against decode_objects' documented contract.
    objs = [beacon(0), beacon(1, metrics={"LCP": math.nan})]
    batch, bad = decode_objects(objs)
    assert bad == [(1, "metrics.LCP: must be a finite number, got nan")]
    assert len(batch) == 1


@pytest.mark.parametrize("field, value", [
    ("app", ["shop-web"]),
    ("release", {}),
    ("device", ["mobile"]),
    ("cohort", [1]),
], ids=["app-list", "release-object", "device-list", "cohort-list"])
def test_a_list_or_object_as_a_string_field_is_rejected_not_raised(field, value):
    # Was: _columns put each string column into a set() to check distinct values once, so an
    # unhashable value (a JSON array or object) raised TypeError and took the batch down.
    record = enc(beacon(0, **{field: value}))
    result = decode_records([enc(beacon(1)), record])
    assert len(result.batch) == 1
    assert [(r.record, r.item, r.reason) for r in result.rejects] == [
        (1, None, f"{field}: must be a string, got {type(value).__name__}")]


def test_each_batch_row_says_which_record_and_item_it_came_from():
    """Stage 1 may refuse a valid beacon later (a window's cohort cap); it dead-letters it
    with the bytes of its own item, found through the row's origin."""
    from detectors.decode import item_bytes

    one = lambda ts, **kw: {"ts": ts, "app": "shop-web", "release": "r1", **kw}  # noqa: E731
    cases = [
        [orjson.dumps(one(TS + i)) for i in range(3)] + [b"oops", orjson.dumps(one(TS + 9))],  # fast path
        [orjson.dumps([one(TS), {"ts": "x"}, one(TS + 1)]), b"oops", orjson.dumps(one(TS + 2)),
         orjson.dumps(one(TS + 3)) + b"\n\n" + b"{bad\n" + orjson.dumps(one(TS + 4))],  # array, NDJSON
    ]
    for records in cases:
        result = decode_records(records)
        assert len(result.origin) == len(result.batch)
        for row in range(len(result.batch)):
            record, item = result.source_of(row)
            assert orjson.loads(item_bytes(records[record], item))["ts"] == int(result.batch.ts[row])


# -- the typed path against the general path ------------------------------------------------------

def columns(result) -> tuple:
    """Everything a decode result holds, bit for bit (NaN, -0.0 and dtypes included)."""
    b = result.batch
    return (b.ts.dtype, b.ts.tobytes(), b.key.dtype, b.key.tobytes(), b.keys,
            {m: (v.dtype, v.tobytes()) for m, v in b.metrics.items()}, b.errors.dtype, b.errors.tobytes(),
            b.session, b.view, None if b.part is None else b.part.tolist(),
            result.origin.tolist(), result.rejects)


def assert_typed_same_as_general(records: list[bytes]) -> None:
    assert columns(decode_records(records)) == columns(decode_records(records, typed=False))


def test_the_typed_path_decides_canonical_beacons_as_the_ingestion_gateway_writes_them():
    full = beacon(0, id="sim-1-0", client_ts=TS - 5, session="s1", page="/cart", country="FR",
                  browser="Chrome", cohort=None, view="v1", part=False,
                  metrics={"LCP": 2571.9, "INP": 144, "CLS": 0.0, "FCP": None})
    records = [enc(full), enc(beacon(1), beacon(2, device="")), ndjson(beacon(3), beacon(4, metrics=None))]
    rows = decode_typed(records)
    assert rows.undecided == [] and rows.origin.tolist() == [[0, -1], [1, 0], [1, 1], [2, 0], [2, 1]]
    with mock.patch("detectors.decode._decode_general", side_effect=AssertionError("left the typed path")):
        result = decode_records(records)
    assert result.batch.ts.tolist() == [TS + i for i in range(5)]
    assert result.batch.metrics["INP"].tolist()[0] == 144.0
    assert_typed_same_as_general(records)


@pytest.mark.parametrize("record", [
    enc(beacon(0, x=1)),                                    # a sender's own field
    enc(beacon(0, page=["/"])),                             # an ignored field of another type
    enc(beacon(0, client_ts=1.5)),
    enc(beacon(0, id=7)), enc(beacon(0, id="")), enc(beacon(0, id="i" * 513)),  # ids send_id() drops
    enc(beacon(0, metrics={"FID": 3.0})),                   # an unknown metric: a reject
    enc(beacon(0, errors=-1)),                              # an invalid value: a reject
    enc(beacon(0, app=" ")), enc(beacon(0, release="r\x00")), enc(beacon(0, cohort="c\n")),
    enc(beacon(0, view="v\x85")),                          # blank, or control characters: msgspec cannot say
    b"42", b"[1]", b"not json", b"",                        # not beacons, or not JSON
    enc(beacon(0))[:-1] + b', "page": "\xff"}',            # invalid UTF-8 in an ignored field
    enc(beacon(0))[:-1] + b', "x": "\xff"}',               # ... in a sender's own field
    enc(beacon(0))[:-1] + b', "x": 1e400}',                 # a number orjson refuses
    enc(beacon(0))[:-1] + b', "page": "\\ud800"}',        # a lone surrogate
    enc(beacon(0))[:-1] + b', "x": ' + b"[" * 2000 + b"]" * 2000 + b"}",  # nested too deep
    b"\xef\xbb\xbf" + enc(beacon(0)),                    # a byte-order mark
    enc(beacon(0)) + b"\x0c",                              # trailing bytes JSON does not count as space
    enc(beacon(0)) + b"\n" + enc(beacon(1, ts="x")),       # NDJSON with an invalid line
    enc(beacon(0)) + b"\n" + enc([beacon(1)]),             # NDJSON with an array for a line
    enc(beacon(0)) + b"\n{oops",                           # NDJSON with a broken line
], ids=["own-field", "page-list", "client-ts-float", "id-int", "id-empty", "id-long", "unknown-metric",
        "bad-errors", "blank-app", "control-release", "control-cohort", "control-view", "int", "int-array",
        "text", "empty", "bad-utf8", "bad-utf8-own", "1e400", "surrogate", "deep", "bom",
        "form-feed", "ndjson-invalid", "ndjson-array", "ndjson-broken"])
def test_what_the_typed_path_cannot_decide_goes_to_the_general_path(record):
    rows = decode_typed([enc(beacon(9)), record])
    assert rows.undecided == [1] and rows.origin.tolist() == [[0, -1]]
    assert_typed_same_as_general([enc(beacon(9)), record])


@pytest.mark.parametrize("record", [
    b'{"ts": 1763856000000, "ts": 1763856000001, "app": "a", "release": "r"}',   # the last key wins
    b'{"ts": 1, "ts": 1763856000001, "app": "a", "release": "r"}',               # ... so an invalid first one
    b'{"ts": 1763856000001, "ts": 1, "app": "a", "release": "r"}',               # ... or last one
    b'{"t\\u0073": 1763856000000, "app": "a", "release": "r"}',                  # an escaped key
    b'{"ts": 1763856000000, "app": "a", "release": "r", "metrics": {"LCP": 5, "LCP": null}}',
    b'{"ts": 1763856000000, "app": "a", "release": "r", "metrics": {"LCP": -1, "LCP": 5}}',
    b'{"ts": 1763856000000, "app": "a", "release": "r", "client_ts": 18446744073709551616}',  # float to orjson
    b'{"ts": 1763856000000, "app": "a", "release": "r", "metrics": {"CLS": -0.0, "LCP": 600000}}',
    b'{"ts": 1763856000000, "app": "a", "release": "r", "metrics": {"TTFB": 1e-400}}',  # underflows to 0
    b'{"ts": 1763856000000, "app": "\\ud83d\\ude00", "release": "' + "\U0001F600".encode() * 128 + b'"}',
    b'{"ts": 1763856000000, "app": "a", "release": "' + "\U0001F600".encode() * 129 + b'"}',
    b' \\r\\n\\t{"ts": 1763856000000, "app": "a", "release": "r"}\\r\\n ',         # JSON's whitespace
    b'{\\n  "ts": 1763856000000,\\n  "app": "a",\\n  "release": "r"\\n}',          # one object on lines
    b'{"ts": 1763856000000, "app": "a", "release": "r", "device": "", "view": "", "cohort": ""}',
    b'{"ts": 1763856000000, "app": "a", "release": "r", "view": "v", "part": true}',
    b'{"ts": 1763856000000, "app": "a", "release": "r", "part": true, "id": "i"}',
], ids=["dup-ts", "dup-ts-bad-first", "dup-ts-bad-last", "escaped-key", "dup-metric-null",
        "dup-metric-bad-first", "client-ts-huge", "minus-zero", "underflow", "emoji-128", "emoji-129",
        "whitespace", "pretty", "empty-strings", "part-with-view", "part-without-view"])
def test_the_typed_path_reads_json_as_orjson_does(record):
    record = record.replace(b"\\r", b"\r").replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    assert_typed_same_as_general([record])
    assert_typed_same_as_general([record, enc(beacon(0)), record])


def test_the_typed_fields_are_the_canonical_ones():
    from streams.ingest.formats.canonical import FIELDS

    assert KNOWN_FIELDS == FIELDS
    assert TypedMetrics.__struct_fields__ == METRICS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=6).map(flat))
def test_the_typed_path_gives_exactly_the_general_paths_result(drawn):
    assert_typed_same_as_general([r for r, _ in drawn])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_the_typed_path_gives_the_general_paths_result_on_arbitrary_bytes(records_):
    assert_typed_same_as_general(records_)


def _canonical_beacon() -> st.SearchStrategy:
    """A valid beacon as the ingestion gateway writes it: canonical fields only, of its types."""
    def text(min_size: int, max_size: int, name: bool) -> st.SearchStrategy:
        chars = st.characters(blacklist_categories=("Cc", "Cs")) if name else st.characters(blacklist_categories=("Cs",))
        return st.one_of(st.text(chars, min_size=min_size, max_size=min(max_size, 12)),
                         st.builds(str.__mul__, st.sampled_from(["a", "é", "\U0001F600"]), st.just(max_size)))

    def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
        return st.one_of(strategy, strategy, st.none(), st.just(MISSING))

    limits = {m: st.one_of(st.floats(0, METRIC_LIMITS[m]), st.integers(0, int(METRIC_LIMITS[m])), st.none())
              for m in METRICS}
    fields = {
        "ts": st.integers(TS_MIN, TS_MAX),
        "app": st.one_of(st.sampled_from(APPS), text(1, 128, True).filter(str.strip)),
        "release": st.one_of(st.sampled_from(RELEASES), text(1, 128, True).filter(str.strip)),
        "device": st.sampled_from([*SEGMENTS, "", None, MISSING]),
        "cohort": maybe(text(0, 64, True)),
        "view": maybe(text(0, 128, True)),
        "session": maybe(text(0, 512, False)),
        "id": maybe(text(1, 512, False)),
        "part": maybe(st.booleans()),
        "client_ts": maybe(st.integers(-(2**63), UINT64_MAX)),
        "page": maybe(text(0, 20, False)), "country": maybe(text(0, 3, False)), "browser": maybe(text(0, 9, False)),
        "metrics": maybe(st.fixed_dictionaries({}, optional=limits)),
        "errors": maybe(st.integers(0, 1_000_000)),
    }
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not MISSING})


canonical_beacon = _canonical_beacon()


@st.composite
def near_valid_records(draw) -> list[bytes]:
    """Records of valid canonical beacons (sometimes one that is not), as objects, arrays and
    NDJSON, some with a few of their bytes changed."""
    shape = draw(st.sampled_from(["objects", "array", "ndjson"]))
    beacons = draw(st.lists(st.one_of(*[canonical_beacon] * 4, beacon_like(False)), min_size=1, max_size=6))
    if shape == "objects":
        recs = [orjson.dumps(b) for b in beacons]
    elif shape == "array":
        recs = [orjson.dumps(beacons)]
    else:
        recs = [b"\n".join(orjson.dumps(b) for b in beacons)]
    out = []
    for rec in recs:
        for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):  # delete, replace or insert bytes at a place
            at = draw(st.integers(0, len(rec)))
            cut = draw(st.integers(0, 3))
            new = draw(st.one_of(st.binary(max_size=3), st.sampled_from(
                [b'"', b",", b"}", b"\n", b"\\ud800", b"\xff", b"\xc3", b"1e400", b"-", b" ", b'"x":1,',
                 b'"page":"\xe2\x82",', b'"ts":1,', b"null", b"[", b"]", b"\\u0000", b"\\n"])))
            rec = rec[:at] + new + rec[at + cut:]
        out.append(rec)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid_records())
def test_the_typed_path_gives_the_general_paths_result_on_near_valid_bytes(recs):
    assert_typed_same_as_general(recs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([canonical_beacon, beacon_like(False), beacon_like(True)]).flatmap(
    lambda some: st.lists(st.one_of(canonical_beacon, some), min_size=1, max_size=12)),
       st.sampled_from(["objects", "array", "ndjson"]))
def test_the_typed_path_agrees_with_validate_beacon(objs, shape):
    objs = [orjson.loads(orjson.dumps(o)) for o in objs]  # as read back (±inf → null)
    if shape != "array":  # a record or lone line that is an array is a record of its items
        objs = [o for o in objs if type(o) is not list] or [beacon(0)]
    if shape == "objects":
        recs, places = [orjson.dumps(o) for o in objs], [(r, None) for r in range(len(objs))]
    elif shape == "array":
        recs, places = [orjson.dumps(objs)], [(0, i) for i in range(len(objs))]
    else:
        recs = [b"\n".join(orjson.dumps(o) for o in objs)]
        places = [(0, i) for i in range(len(objs))] if len(objs) > 1 else [(0, None)]
    result = decode_records(recs)
    assert [(x.record, x.item, x.reason) for x in result.rejects] == [
        (*place, validate_beacon(o)[1]) for place, o in zip(places, objs) if validate_beacon(o)[0] is None]
    assert rows(result.batch) == expected_rows(objs)
    assert_typed_same_as_general(recs)
    # a record of valid beacons with canonical fields only is the typed path's to decide
    decided = {r for r, _ in places} - set(decode_typed(recs).undecided)
    for r in {r for r, _ in places}:
        mine = [o for (rr, _), o in zip(places, objs) if rr == r]
        if all(validate_beacon(o)[0] is not None and KNOWN_FIELDS.issuperset(o) and _typed_as_sent(o) for o in mine):
            assert r in decided


def _typed_as_sent(obj: dict) -> bool:
    """Whether the ignored fields of a valid beacon are of the types the typed path takes."""
    return (all(obj.get(k) is None or type(obj[k]) is str for k in ("page", "country", "browser"))
            and (obj.get("client_ts") is None or type(obj["client_ts"]) is int)
            and (obj.get("id") is None or (type(obj["id"]) is str and 0 < len(obj["id"]) <= 512))
            and (obj.get("metrics") is None or isinstance(obj["metrics"], dict)))
