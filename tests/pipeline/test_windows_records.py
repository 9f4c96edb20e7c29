"""windows_records splits a window over records within a byte budget, and the judge still
sees each window whole: only once its last part is in, with the verdicts of one record."""

from __future__ import annotations

import orjson
from hypothesis import given, settings, strategies as st

from detectors.beacon import CohortKey
from detectors.pipeline.aggregate import PartitionAggregator, windows_records
from detectors.pipeline.judge import Judge
from detectors.windows import WindowSummary
from tests.pipeline.test_judge import ROLLOUT, _core, backtest_verdicts, partitioned, records, round_robin  # noqa: F401

SIZE = 5000


def _summaries(windows: list[list[int]]) -> list[WindowSummary]:
    """Window ``i`` holds one summary per entry, that many page views, a long invented cohort."""
    out = []
    for i, views in enumerate(windows):
        for c, n in enumerate(views):
            s = WindowSummary.empty(CohortKey("shop-web", "r" * 40 + str(c), "c" * 400, "mobile"), i * SIZE, SIZE)
            s.page_views = n
            out.append(s)
    return out


def _size(record) -> int:
    return len(orjson.dumps(record.to_dict()))


def test_a_window_of_thousands_of_cohorts_goes_out_in_records_under_the_budget():
    closed = _summaries([[1] * 3000])
    budget = 64 * 1024
    records = windows_records(0, SIZE, closed, max_bytes=budget)
    assert len(records) > 2
    assert all(_size(r) <= budget for r in records)
    assert sum(len(r.summaries) for r in records) == 3000
    # every part but the last holds the judge at the window's start; the last lets it past
    assert [r.closed_before for r in records[:-2]] == [0] * (len(records) - 2)
    assert records[-2].closed_before == SIZE


@settings(max_examples=60, deadline=None)
@given(windows=st.lists(st.lists(st.integers(1, 5), min_size=0, max_size=12), min_size=1, max_size=4),
       budget=st.integers(600, 8000))
def test_split_records_stay_under_budget_and_the_judge_sees_each_window_whole(windows, budget):
    closed = _summaries(windows)
    end = len(windows) * SIZE
    records = windows_records(0, end, closed, max_bytes=budget)
    for r in records:
        assert _size(r) <= budget or len(r.summaries) == 1
    judge = Judge(1)
    seen = []
    for r in records:
        before = judge.judged_before
        judge.add(r)
        if judge.judged_before != before:
            # what the judge took as complete has all its summaries in
            seen.append(judge.judged_before)
            sent = sum(len(x.summaries) for x in records[:records.index(r) + 1])
            assert sent >= sum(1 for s in closed if s.start < judge.judged_before)
    whole = Judge(1)
    for r in windows_records(0, end, closed, max_bytes=1 << 30):
        whole.add(r)
    assert judge.judged_before == whole.judged_before


def test_split_records_give_the_verdicts_of_one_record_per_window(records):  # noqa: F811
    """The beacons of a real rollout through stage 1 and the judge, each window in records of
    at most 2 KB (several parts a window): the backtest's verdicts, unchanged."""
    want = backtest_verdicts(records)
    parts = partitioned(records, 3)
    judge = Judge(len(parts))
    verdicts = judge.apply_rollout(ROLLOUT)
    aggs = [PartitionAggregator(p) for p in range(len(parts))]
    split = 0
    for p, batch in round_robin(parts, 200):
        step = aggs[p].process(batch)
        out = windows_records(p, aggs[p].closed_before, step.closed, max_bytes=2048)
        split += len(out) - 1 - len({s.start for s in step.closed})
        for r in out:
            verdicts += judge.add(r)
    assert split > 0  # windows did go out in several parts
    got = [_core(v) for v in verdicts]
    assert got[:len(want)] == want
