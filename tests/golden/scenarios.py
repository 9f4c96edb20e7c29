"""The fixed backtests whose verdict NDJSON must not change when the code around them moves.

Each case simulates traffic with :mod:`streams.offline.simulate` (deterministic for a seed), runs
``rumgate backtest`` over it through the CLI, and fingerprints the verdict file: its SHA-256,
the number of verdicts and the last one (the hash without the ``reason_codes`` added since the
recording: see :func:`_without_reason_codes`). ``tests/golden/verdicts.json`` holds the
fingerprints; regenerate it only for a change that is meant to alter verdicts, and say so::

    python -m tests.golden.scenarios --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
from click.testing import CliRunner

from streams.offline.simulate import SCENARIOS, Regression, write_ndjson

GOLDEN = Path(__file__).with_name("verdicts.json")
SEGMENTS_POLICY = ("name: segments\nsegments: [mobile, desktop]\nmetrics:\n"
                   "  - metric: LCP\n  - metric: INP\n  - metric: errors\n")
FAST_POLICY = "name: fast\nwarmup: 0s\nmin_duration: 2m\nmetrics:\n  - metric: LCP\n  - metric: CLS\n"


@dataclass(frozen=True)
class Case:
    name: str
    scenario: str
    seed: int
    duration_s: float
    regressions: tuple[Regression, ...] = ()
    args: tuple[str, ...] = ()  # extra `rumgate backtest` flags
    policy: str | None = None  # policy text, written to a file
    canary_from_s: float = 0.0  # canary beacons before this are dropped: a late start

    def write_traffic(self, path: Path) -> None:
        sc = SCENARIOS[self.scenario]
        sc = replace(sc, duration_s=self.duration_s, regressions=sc.regressions + self.regressions)
        write_ndjson(path, sc, seed=self.seed)
        if self.canary_from_s:
            cut = sc.start_ms + int(self.canary_from_s * 1000)
            lines = [line for line in path.read_bytes().splitlines()
                     if not _is_early_canary(orjson.loads(line), sc.canary, cut)]
            path.write_bytes(b"\n".join(lines) + b"\n")


def _is_early_canary(beacon: dict, canary: str, cut_ms: int) -> bool:
    return beacon.get("release") == canary and beacon["ts"] < cut_ms


CASES = (
    Case("lcp-regression", "lcp-regression", seed=1, duration_s=600),
    Case("aa-no-stop", "stationary", seed=2, duration_s=600, args=("--no-stop",)),
    Case("aa-promote", "clean", seed=3, duration_s=600, policy=FAST_POLICY),
    Case("ramp-split", "ramp", seed=4, duration_s=600, args=("--no-stop", "--expected-share", "0.05")),
    Case("inp-mobile-segments", "inp-mobile", seed=5, duration_s=600, policy=SEGMENTS_POLICY),
    Case("errors", "errors", seed=6, duration_s=600, args=("--no-stop",)),
    Case("rollback-no-stop", "lcp-regression-25", seed=9, duration_s=300, args=("--no-stop",)),
    Case("late-start", "lcp-regression-25", seed=7, duration_s=600, canary_from_s=180,
         regressions=(Regression("INP", 1.3, None, 240.0),)),
    Case("late-regression-window", "stationary", seed=8, duration_s=600,
         regressions=(Regression("LCP", 1.25, None, 300.0),), args=("--window", "10s", "--lateness", "2s")),
)


def run_case(case: Case, workdir: Path) -> dict:
    """Simulate, backtest through the CLI, and fingerprint the verdicts."""
    from streams.cli import cli

    workdir.mkdir(parents=True, exist_ok=True)
    traffic, out = workdir / f"{case.name}.ndjson", workdir / f"{case.name}.verdicts.ndjson"
    case.write_traffic(traffic)
    sc = SCENARIOS[case.scenario]
    args = ["backtest", str(traffic), "--app", sc.app, "--canary", sc.canary, "--baseline", sc.baseline,
            "-q", "-o", str(out), *case.args]
    if case.policy is not None:
        policy = workdir / f"{case.name}.yaml"
        policy.write_text(case.policy)
        args += ["--policy", str(policy)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    lines = out.read_bytes().splitlines()
    last = orjson.loads(lines[-1]) if lines else {}
    return {"sha256": hashlib.sha256(_without_reason_codes(lines)).hexdigest(), "verdicts": len(lines),
            "final": last.get("verdict"), "exit_code": result.exit_code}


def _without_reason_codes(lines: list[bytes]) -> bytes:
    """The verdict NDJSON with each line's ``reason_codes`` taken out, as the CLI writes it.

    The fingerprints were recorded before verdicts carried reason codes, each metric its
    window's own values, and the data quality the window's page views; without those keys,
    every other byte of every line must be as recorded. Each line must carry one code per
    reason, every metric both window values, and the window's page views.
    """
    body = bytearray()
    for line in lines:
        d = orjson.loads(line)
        codes = d.pop("reason_codes")
        assert isinstance(codes, list) and len(codes) == len(d["reasons"]), (codes, d["reasons"])
        views = d["data_quality"].pop("window_page_views")
        assert set(views) == {"canary", "baseline"} and all(isinstance(n, int) for n in views.values()), views
        for m in d["metrics"]:
            values = m.pop("window_canary"), m.pop("window_baseline")
            assert all(v is None or isinstance(v, (int, float)) for v in values), values
        body += orjson.dumps(d) + b"\n"
    return bytes(body)


def main(argv: list[str]) -> int:
    import tempfile

    if argv != ["--write"]:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        golden = {case.name: run_case(case, Path(tmp)) for case in CASES}
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    for name, fp in golden.items():
        print(f"{name:<24} {fp['verdicts']:>4} verdicts, final {fp['final']}, exit {fp['exit_code']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
