"""``rumgate detect``: anomaly scores for a ``timestamp,value`` CSV (the NAB format).

Registered in the ``rumgate`` group by :mod:`streams.cli`; the detectors are in
:mod:`detectors.anomaly`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import IO, TextIO

import click

from detectors.anomaly import DETECTORS, GATE_DETECTOR
from streams.cli.common import EXIT_ERROR

__all__ = ["BadRow", "detect_command", "make_detect_command", "parse_timestamp", "parse_value",
           "score_rows"]

PROGRESS_EVERY = 100_000
_EPOCH_MS_FROM = 100_000_000_000  # |number| >= 1e11 is epoch ms (1973-03-03), below it seconds


class BadRow(ValueError):
    """A CSV row that cannot be scored."""


class BadInput(click.ClickException):
    """Refused input; exits 3 even outside :func:`streams.cli.main`."""

    exit_code = EXIT_ERROR


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds of a timestamp: NAB's ``2014-04-01 00:00:00``, ISO 8601, or epoch.

    Times without an offset are UTC. A bare number is epoch ms when its magnitude is at
    least 1e11 (the year 1973 in ms, the year 5138 in seconds), else epoch seconds.

    >>> parse_timestamp("2014-04-01 00:00:00")
    1396310400000
    >>> parse_timestamp("2014-04-01T02:00:00+02:00"), parse_timestamp("2014-04-01T00:00:00.5Z")
    (1396310400000, 1396310400500)
    >>> parse_timestamp("1396310400"), parse_timestamp("1396310400000")
    (1396310400000, 1396310400000)
    """
    s = text.strip()
    if not s:
        raise BadRow("empty timestamp")
    try:
        number = float(s)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise BadRow(f"bad timestamp {text!r}")
        return round(number) if abs(number) >= _EPOCH_MS_FROM else round(number * 1000)
    try:
        if len(s) > 10 and s[4] == "-" and s[10] not in "Tt ":
            raise ValueError("date and time separated by neither T nor a space")
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise BadRow(f"bad timestamp {text!r} (expected e.g. 2014-04-01 00:00:00, "
                     "2014-04-01T00:00:00Z or epoch seconds/ms)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_value(text: str) -> float | None:
    """The value of a cell; ``None`` (missing) when empty or NaN.

    >>> parse_value(" 1.5 "), parse_value(""), parse_value("NaN")
    (1.5, None, None)
    """
    s = text.strip()
    if not s:
        return None
    try:
        x = float(s)
    except ValueError:
        raise BadRow(f"bad value {text!r} (expected a number, or nothing for a missing value)") from None
    return None if math.isnan(x) else x


def _is_header(row: list[str]) -> bool:
    return [c.strip().lower() for c in row] == ["timestamp", "value"]


def score_rows(lines: IO[str], source: str, detector: object, *, skip_bad: bool = False,
               warn: Callable[[str], None] = lambda m: None) -> Iterator[tuple[str, str, float]]:
    """Score then learn each row of a ``timestamp,value`` CSV; yield (timestamp, value, score).

    The timestamp and value are yielded as written (stripped); a header ``timestamp,value``
    on the first line is skipped, blank lines are ignored. A bad row raises :class:`BadInput`
    naming ``source:LINE``, or with ``skip_bad`` is passed to ``warn`` and skipped.
    """
    reader = csv.reader(lines, strict=True)
    first = True
    while True:
        line = reader.line_num + 1  # where the record starts (a quoted field may span lines)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row = None
            error = f"bad CSV: {exc}"
        except UnicodeDecodeError as exc:
            raise BadInput(f"{source}:{line}: not UTF-8 text ({exc.reason})") from None
        try:
            if row is None:
                raise BadRow(error)
            if first:
                first = False
                if _is_header(row):
                    continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2:
                raise BadRow(f"expected 2 columns (timestamp,value), got {len(row)}")
            t = parse_timestamp(row[0])
            x = parse_value(row[1])
        except BadRow as exc:
            message = f"{source}:{line}: {exc}"
            if line == 1 and row is not None:
                message += " (the first line should be the header timestamp,value)"
            if not skip_bad:
                raise BadInput(message) from None
            warn(message + " (skipped)")
            continue
        score = float(detector.score_one(t, x))  # type: ignore[attr-defined]
        detector.learn_one(t, x)  # type: ignore[attr-defined]
        yield row[0].strip(), row[1].strip(), score


def _open_input(path: str) -> tuple[TextIO, str]:
    if path == "-":
        return click.get_text_stream("stdin", encoding="utf-8-sig", errors="surrogateescape"), "<stdin>"
    try:
        # undecodable bytes end up in a field, refused as a bad timestamp or value of that line
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline=""), path  # noqa: SIM115 - closed by caller
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None


def make_detect_command(registry: dict[str, Callable[[], object]], default: str) -> click.Command:
    """The ``detect`` command over a detector registry (the tests use fake registries)."""
    names = sorted(registry)
    other = next((n for n in names if n != default), default)
    help_text = f"""Score every row of a timestamp,value CSV with an online anomaly detector.

    Reads the NAB format (header timestamp,value; timestamps like 2014-04-01 00:00:00,
    UTC), also ISO 8601 (2014-04-01T00:00:00Z, offsets allowed) and epoch seconds or ms.
    Rows are scored one at a time in file order, each before it is learned, so a score
    only depends on the rows before it; the same file gives the same bytes. Writes
    timestamp,value,anomaly_score (scores in [0, 1], high = anomalous). An empty or NaN
    value is missing: it scores 0 and is not learned. A bad row (wrong column count,
    unparseable timestamp or value) stops with FILE:LINE and exit code 3, unless
    --skip-bad reports it on stderr and goes on.

    \b
    Detectors (default {default}):
      {", ".join(names)}

    \b
    Examples:
      rumgate detect --csv nab/data/realKnownCause/nyc_taxi.csv -o scores.csv
      rumgate detect --csv series.csv --detector {other} --skip-bad
    """

    @click.command(help=help_text, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
                  help="Input CSV with columns timestamp,value ('-' for stdin).")
    @click.option("--detector", "detector_name", type=click.Choice(names), default=default,
                  show_default=True, help="Detector to score with.")
    @click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
                  help="Write the scored CSV here (default: stdout).")
    @click.option("--skip-bad", is_flag=True, help="Report bad rows on stderr and skip them.")
    def detect(csv_path: str, detector_name: str, output: str | None, skip_bad: bool) -> None:
        detector = registry[detector_name]()
        source, name = _open_input(csv_path)
        bad = 0

        def warn(message: str) -> None:
            nonlocal bad
            bad += 1
            click.echo(message, err=True)

        tmp = f"{output}.tmp-{os.getpid()}" if output else None
        try:
            out = open(tmp, "w", encoding="utf-8", newline="") if tmp else click.get_text_stream("stdout")  # noqa: SIM115
            try:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(("timestamp", "value", "anomaly_score"))
                n = 0
                for t, x, score in score_rows(source, name, detector, skip_bad=skip_bad, warn=warn):
                    writer.writerow((t, x, repr(score)))
                    n += 1
                    if n % PROGRESS_EVERY == 0:
                        click.echo(f"{name}: {n:,} rows scored", err=True)
            finally:
                if tmp:
                    out.close()
            if tmp:
                os.replace(tmp, output)  # type: ignore[arg-type]
                tmp = None
        except OSError as exc:
            raise BadInput(f"cannot write {output or 'stdout'}: {exc.strerror or exc}") from None
        finally:
            if csv_path != "-":
                source.close()
            if tmp and os.path.exists(tmp):
                os.remove(tmp)
        if bad:
            click.echo(f"{name}: {bad} bad row{'s' if bad != 1 else ''} skipped", err=True)
        if n >= PROGRESS_EVERY:
            click.echo(f"{name}: {n:,} rows scored with {detector_name}", err=True)

    return detect


detect_command = make_detect_command(DETECTORS, GATE_DETECTOR)
