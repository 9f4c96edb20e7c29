"""The verdicts of fixed backtests are byte-identical to the recorded ones.

A change meant to alter verdicts regenerates ``verdicts.json`` (see
:mod:`tests.golden.scenarios`) and says why in its commit; any other change must leave
every fingerprint as it is.
"""

from __future__ import annotations

import json

import pytest

from tests.golden.scenarios import CASES, GOLDEN, run_case

RECORDED = json.loads(GOLDEN.read_text())


def test_every_case_is_recorded():
    assert sorted(RECORDED) == sorted(c.name for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_backtest_verdicts_are_byte_identical_to_the_recording(case, tmp_path):
    assert run_case(case, tmp_path) == RECORDED[case.name]
