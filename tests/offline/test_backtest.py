"""`rumgate backtest` end to end: files in, verdicts and exit codes out."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streams.cli import cli, main
from streams.offline.simulate import SCENARIOS, Regression, write_ndjson

SC = SCENARIOS["stationary"]
ARGS = ["--app", SC.app, "--canary", SC.canary, "--baseline", SC.baseline]
FAST_POLICY = "name: fast\nmetrics:\n  - metric: LCP\nwarmup: 0s\nmin_duration: 2m\n"


@pytest.fixture(scope="module")
def regressed(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bt") / "regressed.ndjson.gz"
    write_ndjson(path, replace(SC, duration_s=900.0, regressions=(Regression("LCP", 1.25),)), seed=3)
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bt") / "clean.ndjson"
    write_ndjson(path, replace(SC, duration_s=600.0), seed=4)
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)  # click >= 8.2 splits stderr


def test_a_regressed_canary_rolls_back_with_exit_code_1(regressed, tmp_path):
    out = tmp_path / "verdicts.ndjson"
    result = invoke("backtest", str(regressed), *ARGS, "--output", str(out))
    assert result.exit_code == 1, result.output
    assert "final verdict: ROLLBACK" in result.output and "LCP p75" in result.output
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["verdict"] == "rollback"
    assert all(e["verdict"] == "continue" for e in events[:-1])
    assert events[-1]["rollout"] == f"{SC.app}:{SC.canary}"


def test_the_same_files_give_byte_identical_verdicts(regressed, tmp_path):
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    invoke("backtest", str(regressed), *ARGS, "-q", "-o", str(a))
    invoke("backtest", str(regressed), *ARGS, "-q", "-o", str(b))
    assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 0


def test_a_clean_canary_promotes_with_exit_code_0(clean, tmp_path):
    policy = tmp_path / "fast.yaml"
    policy.write_text(FAST_POLICY)
    result = invoke("backtest", str(clean), *ARGS, "--policy", str(policy))
    assert result.exit_code == 0, result.output
    assert "final verdict: PROMOTE" in result.output


def test_no_decision_before_the_data_ends_is_exit_code_2(clean):
    # The default policy needs far more than 10 minutes to prove every metric non-inferior.
    result = invoke("backtest", str(clean), *ARGS)
    assert result.exit_code == 2
    assert "final verdict: CONTINUE" in result.output


def test_invalid_lines_are_skipped_and_reported_not_fatal(clean, tmp_path):
    lines = clean.read_bytes().splitlines()
    corrupt = tmp_path / "corrupt.ndjson"
    corrupt.write_bytes(b"\n".join(lines[:500] + [b'{"ts": "late", "app": "x"}', b"garbage"] + lines[500:]))
    policy = tmp_path / "fast.yaml"
    policy.write_text(FAST_POLICY)
    result = invoke("backtest", str(corrupt), *ARGS, "--policy", str(policy))
    assert result.exit_code == 0
    assert "2 invalid beacons skipped" in result.stderr
    assert "ts: must be an integer" in result.stderr


def test_a_bad_policy_is_refused_with_its_line_and_exit_code_3(clean, tmp_path, monkeypatch, capsys):
    policy = tmp_path / "bad.yaml"
    policy.write_text("name: bad\nalpha: 2\n")
    monkeypatch.setattr("sys.argv", ["rumgate", "backtest", str(clean), *ARGS, "--policy", str(policy)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 3
    assert f"{policy}:2:8: alpha: must be in (0, 1), got 2" in capsys.readouterr().err


def test_usage_errors_exit_3_not_2(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["rumgate", "backtest", "does-not-exist.ndjson", *ARGS])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 3
    assert "does not exist" in capsys.readouterr().err


def test_data_of_another_app_gives_no_verdict(clean):
    result = invoke("backtest", str(clean), "--app", "other", "--canary", "a", "--baseline", "b")
    assert result.exit_code == 2 and "no verdict" in result.output


def test_gzip_and_plain_inputs_agree(clean, tmp_path):
    gz = tmp_path / "clean.ndjson.gz"
    with gzip.open(gz, "wb") as f:
        f.write(clean.read_bytes())
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    invoke("backtest", str(clean), *ARGS, "-q", "-o", str(a))
    invoke("backtest", str(gz), *ARGS, "-q", "-o", str(b))
    assert a.read_bytes() == b.read_bytes()
