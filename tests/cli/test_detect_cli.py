"""``rumgate detect``: scoring a ``timestamp,value`` CSV (tests/cli/nab_small_noise_600.csv
is the first 600 rows of NAB's artificialNoAnomaly/art_daily_small_noise.csv)."""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import streams.cli.detect as detect_cli
from detectors.anomaly import DETECTORS, GATE_DETECTOR
from streams.cli.detect import detect_command, make_detect_command, parse_timestamp

FIXTURE = Path(__file__).parent / "nab_small_noise_600.csv"
HEADER = "timestamp,value,anomaly_score"
SPIKE_ROW = 450  # data row index (0-based) of the injected spike in the fixture


def invoke(*args: str, input: str | None = None, command: click.Command = detect_command):
    return CliRunner().invoke(command, list(args), input=input, catch_exceptions=False)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def fixture_rows() -> list[list[str]]:
    return rows_of(FIXTURE.read_text(encoding="utf-8"))


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def scores_of(text: str) -> list[float]:
    rows = rows_of(text)
    assert rows[0] == HEADER.split(",")
    return [float(r[2]) for r in rows[1:]]


def test_output_shape_and_header() -> None:
    result = invoke("--csv", str(FIXTURE))
    assert result.exit_code == 0, result.output
    out = rows_of(result.stdout)
    src = fixture_rows()
    assert result.stdout.startswith(HEADER + "\n")
    assert len(out) == len(src) == 601
    for o, s in zip(out[1:], src[1:]):
        assert len(o) == 3
        assert o[:2] == s  # timestamp and value as written
        score = float(o[2])
        assert 0.0 <= score <= 1.0
    assert result.stderr == ""


def test_deterministic_and_output_file(tmp_path: Path) -> None:
    first = invoke("--csv", str(FIXTURE))
    second = invoke("--csv", str(FIXTURE))
    assert first.stdout_bytes == second.stdout_bytes
    out = tmp_path / "scores.csv"
    result = invoke("--csv", str(FIXTURE), "--output", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_bytes() == first.stdout_bytes
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_default_detector_is_the_gate_detector() -> None:
    default = invoke("--csv", str(FIXTURE))
    explicit = invoke("--csv", str(FIXTURE), "--detector", GATE_DETECTOR)
    assert default.stdout_bytes == explicit.stdout_bytes
    assert f"default {GATE_DETECTOR}" in invoke("--help").output


def test_help_lists_detectors_and_an_example() -> None:
    text = invoke("--help").output
    for name in DETECTORS:
        assert name in text
    assert "rumgate detect --csv" in text


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_detector_runs(name: str) -> None:
    result = invoke("--csv", str(FIXTURE), "--detector", name)
    assert result.exit_code == 0, result.output
    scores = scores_of(result.stdout)
    assert len(scores) == 600 and all(0.0 <= s <= 1.0 for s in scores)


def test_unknown_detector_is_refused() -> None:
    result = CliRunner().invoke(detect_command, ["--csv", str(FIXTURE), "--detector", "nope"])
    assert result.exit_code != 0
    assert "Invalid value for '--detector'" in result.output
    for name in DETECTORS:
        assert name in result.output
    assert result.stdout.count("\n") <= 5  # no scores were written


def _main_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``rumgate detect ARGS`` through the project's ``main()`` (its exit-code mapping)."""
    import streams.cli

    group = click.Group("rumgate")
    group.add_command(detect_command, "detect")
    monkeypatch.setattr(streams.cli, "cli", group)
    monkeypatch.setattr(sys, "argv", ["rumgate", "detect", *args])
    with pytest.raises(SystemExit) as exc:
        streams.cli.main()
        raise SystemExit(0)
    return int(exc.value.code or 0), capsys.readouterr().err


def test_main_maps_errors_to_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main_exit_code(monkeypatch, capsys, "--csv", str(FIXTURE), "--detector", "nope")
    assert code == 3 and "--detector" in err
    bad = write_csv(tmp_path / "bad.csv", [["timestamp", "value"], ["2014-04-01 00:00:00", "x"]])
    code, err = _main_exit_code(monkeypatch, capsys, "--csv", str(bad))
    assert code == 3 and f"{bad}:2: bad value 'x'" in err
    code, err = _main_exit_code(monkeypatch, capsys, "--csv", str(tmp_path / "missing.csv"))
    assert code == 3 and "cannot read" in err


@pytest.mark.parametrize(("bad_row", "message"), [
    (["2014-04-01 00:25:00", "abc"], "bad value 'abc'"),
    (["2014-04-01 25:00:00", "1.0"], "bad timestamp '2014-04-01 25:00:00'"),
    (["yesterday", "1.0"], "bad timestamp 'yesterday'"),
    (["", "1.0"], "empty timestamp"),
    (["2014-04-01 00:25:00", "1.0", "extra"], "expected 2 columns (timestamp,value), got 3"),
    (["2014-04-01 00:25:00"], "expected 2 columns (timestamp,value), got 1"),
])
def test_bad_row_is_refused_with_its_line(tmp_path: Path, bad_row: list[str], message: str) -> None:
    rows = fixture_rows()[:20]
    rows[5] = bad_row  # line 6 of the file
    path = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(detect_command, ["--csv", str(path), "-o", str(out)])
    assert result.exit_code == 3
    assert f"Error: {path}:6: {message}" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [path]  # nothing half-written


def test_skip_bad_reports_and_skips(tmp_path: Path) -> None:
    rows = fixture_rows()[:20]
    rows[5] = ["2014-04-01 00:25:00", "abc"]
    rows[9] = ["not a time", "1"]
    path = write_csv(tmp_path / "in.csv", rows)
    result = invoke("--csv", str(path), "--skip-bad")
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{path}:6: bad value 'abc'") and lines[0].endswith("(skipped)")
    assert lines[1].startswith(f"{path}:10: bad timestamp 'not a time'") and lines[1].endswith("(skipped)")
    assert lines[2] == f"{path}: 2 bad rows skipped"
    out = rows_of(result.stdout)
    assert [r[:2] for r in out[1:]] == [r for i, r in enumerate(rows) if i not in (0, 5, 9)]


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('timestamp,value\n\n2014-04-01 00:00:00,1\n"2014-04-01\n00:05:00",2\n'
                    "2014-04-01 00:10:00,oops\n", encoding="utf-8")
    result = CliRunner().invoke(detect_command, ["--csv", str(path)])
    assert result.exit_code == 3
    assert f"{path}:4: bad timestamp" in result.stderr  # the record starts on line 4
    path.write_text('timestamp,value\n\n2014-04-01 00:00:00,1\n2014-04-01 00:10:00,oops\n', encoding="utf-8")
    result = CliRunner().invoke(detect_command, ["--csv", str(path)])
    assert f"{path}:4: bad value 'oops'" in result.stderr


def test_undecodable_bytes_are_a_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"timestamp,value\n" + b"".join(b"%d,1\n" % (1_396_310_400 + 60 * i) for i in range(3000))
                     + b"2014-04-03 00:00:00,1\xff\n")
    result = CliRunner().invoke(detect_command, ["--csv", str(path), "--detector", "robust_z"])
    assert result.exit_code == 3
    assert f"{path}:3002: bad value" in result.stderr


def test_bad_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", [["time", "val"], ["2014-04-01 00:00:00", "1"]])
    result = CliRunner().invoke(detect_command, ["--csv", str(path)])
    assert result.exit_code == 3
    assert f"{path}:1: bad timestamp 'time'" in result.stderr and "header timestamp,value" in result.stderr


def test_missing_values(tmp_path: Path) -> None:
    rows = fixture_rows()
    gaps = {5, 100, 350, 351, 352, 500}
    holey = [[r[0], ""] if i in gaps else r for i, r in enumerate(rows)]
    holey[200] = [holey[200][0], "NaN"]
    gaps.add(200)
    with_gaps = invoke("--csv", str(write_csv(tmp_path / "gaps.csv", holey)))
    assert with_gaps.exit_code == 0, with_gaps.output
    out = rows_of(with_gaps.stdout)
    for i in gaps:
        assert out[i][1] in ("", "NaN") and float(out[i][2]) == 0.0
    # missing values are not learned: the other rows score as if those rows were absent
    kept = [r for i, r in enumerate(rows) if i not in gaps]
    without = invoke("--csv", str(write_csv(tmp_path / "kept.csv", kept)))
    assert [r for i, r in enumerate(out) if i not in gaps] == rows_of(without.stdout)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_spike_scores_higher_than_quiet_rows_around_it(tmp_path: Path, name: str) -> None:
    # the fixture twice (5-minute steps throughout): the spike at row 600 + 450 comes after
    # every warm-up, including ContextualAnomaly's 750 points
    header, *data = fixture_rows()
    start = datetime(2014, 4, 1)
    rows = [header] + [[(start + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S"), r[1]]
                       for i, r in enumerate(data + data)]
    at = len(data) + SPIKE_ROW
    rows[at + 1] = [rows[at + 1][0], str(float(rows[at + 1][1]) + 160.0)]  # the series spans ~18..88
    result = invoke("--csv", str(write_csv(tmp_path / "spike.csv", rows)), "--detector", name)
    scores = scores_of(result.stdout)
    quiet = scores[at - 50:at] + scores[at + 20:at + 70]
    assert scores[at] > max(quiet), (name, scores[at], max(quiet))


def test_timestamp_formats_score_alike(tmp_path: Path) -> None:
    rows = fixture_rows()[:400]
    reference = invoke("--csv", str(write_csv(tmp_path / "nab.csv", rows)))
    ms = [parse_timestamp(r[0]) for r in rows[1:]]
    from datetime import datetime, timedelta, timezone

    def iso(t: int, fmt: str) -> str:
        return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=t)).strftime(fmt)

    variants = {
        "epoch_ms": [str(t) for t in ms],
        "epoch_s": [str(t // 1000) for t in ms],
        "iso_z": [iso(t, "%Y-%m-%dT%H:%M:%SZ") for t in ms],
        "iso_offset": [(datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=t))
                       .astimezone(timezone(timedelta(hours=-5))).isoformat() for t in ms],
    }
    expected = scores_of(reference.stdout)
    for label, stamps in variants.items():
        changed = [rows[0]] + [[s, r[1]] for s, r in zip(stamps, rows[1:])]
        result = invoke("--csv", str(write_csv(tmp_path / f"{label}.csv", changed)))
        assert result.exit_code == 0, (label, result.output)
        out = rows_of(result.stdout)
        assert [r[0] for r in out[1:]] == stamps
        assert scores_of(result.stdout) == expected, label


def test_parse_timestamp() -> None:
    t = 1_396_310_400_000
    assert parse_timestamp("2014-04-01 00:00:00") == t
    assert parse_timestamp("2014-04-01 00:00:00.000000") == t
    assert parse_timestamp("2014-04-01T00:00:00Z") == t
    assert parse_timestamp("2014-04-01T00:00:00+00:00") == t
    assert parse_timestamp("2014-04-01T05:30:00+05:30") == t
    assert parse_timestamp(" 1396310400 ") == t
    assert parse_timestamp("1396310400.25") == t + 250
    assert parse_timestamp("1396310400000") == t
    assert parse_timestamp("1969-12-31T23:59:59Z") == -1000
    for bad in ("", "nan", "inf", "2014-13-01", "today", "2014-04-01x00:00:00", "2014-04-01\n00:00:00"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_headerless_crlf_bom_and_stdin(tmp_path: Path) -> None:
    rows = fixture_rows()[:50]
    reference = invoke("--csv", str(write_csv(tmp_path / "a.csv", rows)))
    path = tmp_path / "b.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(",".join(r) + "\r\n" for r in rows[1:]).encode())
    assert invoke("--csv", str(path)).stdout_bytes == reference.stdout_bytes
    text = "".join(",".join(r) + "\n" for r in rows)
    assert invoke("--csv", "-", input=text).stdout_bytes == reference.stdout_bytes


def test_progress_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect_cli, "PROGRESS_EVERY", 250)
    result = invoke("--csv", str(FIXTURE))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [f"{FIXTURE}: 250 rows scored", f"{FIXTURE}: 500 rows scored",
                                          f"{FIXTURE}: 600 rows scored with {GATE_DETECTOR}"]
    assert HEADER in result.stdout and "rows scored" not in result.stdout


class _Echo:
    """A fake detector: the score is the value squashed, so the CLI plumbing is visible."""

    def learn_one(self, t: int, x: float | None) -> None:
        pass

    def score_one(self, t: int, x: float | None) -> float:
        return 0.0 if x is None else abs(x) / (1.0 + abs(x))


def test_fake_registry_and_score_format(tmp_path: Path) -> None:
    command = make_detect_command({"echo": _Echo}, "echo")
    path = write_csv(tmp_path / "in.csv", [["timestamp", "value"], ["0", "1"], ["1000", ""], ["2000", "3"]])
    result = invoke("--csv", str(path), command=command)
    assert result.stdout == "timestamp,value,anomaly_score\n0,1,0.5\n1000,,0.0\n2000,3,0.75\n"
