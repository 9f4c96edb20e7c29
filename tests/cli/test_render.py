"""The one rendering of a verdict (:mod:`streams.cli.common`), byte for byte as each command prints it.

The expected texts were printed by the code before the rendering was shared: ``backtest``'s
final verdict, ``gate wait``'s outcome, ``rollout status``'s block, the demo's ending.
"""

from __future__ import annotations

import ast
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

from detectors.verdict import EXIT_CODES, Verdict
from streams.cli import common
from streams.cli.common import describe, echo_outcome, evidence_line, exit_code, headline, outcome_lines

HERE = Path(__file__).parent
CLI_DIR = HERE.parents[1] / "streams" / "cli"
RAW = orjson.loads((HERE / "verdict_rollback.json").read_bytes())
REASON = "JS-error page views worse (e = 121 ≥ 80) and measured +48.0%, beyond the 20% tolerance"


@pytest.fixture
def verdict() -> Verdict:
    return Verdict.from_dict(RAW)


def _printed(fn) -> tuple[int, str]:
    @click.command()
    def run() -> None:
        fn()

    result = CliRunner().invoke(run, [])
    return result.exit_code, result.output


def test_timeline_line(verdict) -> None:
    assert describe(verdict) == (
        "  +11:50  rollback  LCP p75 -3.0% e=1/80  INP p75 +0.0% e=1/80  "
        "CLS not-good share ×0.97 e=4.81/80  JS-error page views ×1.48 e=121/80")


def test_timeline_line_before_any_data() -> None:
    raw = {**RAW, "verdict": "continue", "severity": "none", "inputs": {"elapsed_ms": 5000},
           "metrics": [{**m, "ratio": None, "n_canary": 0} for m in RAW["metrics"]]}
    assert describe(Verdict.from_dict(raw)) == (
        "  +00:05  continue  LCP p75: n=0  INP p75: n=0  CLS not-good share: n=0  JS-error page views: n=0")


def test_headline() -> None:
    assert headline("rollback", "minor") == "ROLLBACK (minor)"
    assert headline("promote", "none") == "PROMOTE"


def test_outcome_as_backtest_and_gate_wait_print_it(verdict) -> None:
    assert _printed(lambda: echo_outcome("final verdict: ", verdict)) == (
        0, f"final verdict: ROLLBACK (minor)\n  - {REASON}\n")
    assert outcome_lines("shop-web:2026.11.23-canary: ", verdict) == [
        "shop-web:2026.11.23-canary: ROLLBACK (minor)", f"  - {REASON}"]


def test_outcome_from_the_json_form_as_rollout_status_prints_it() -> None:
    head = "shop-web:c  shop-web: c vs b  (active, policy default)"
    raw = {**RAW, "reasons": ["one", "two"]}
    assert _printed(lambda: echo_outcome(f"{head}\n  verdict #{raw['seq']}: ", raw, indent="    ")) == (
        0, f"{head}\n  verdict #142: ROLLBACK (minor)\n    - one\n    - two\n")
    assert outcome_lines("x: ", Verdict.from_dict(raw)) == outcome_lines("x: ", raw)


def test_the_demo_ending(verdict) -> None:
    from streams.cli.demo import _finish

    code, out = _printed(lambda: _finish(verdict, 12.3, 45678))
    assert code == 1
    assert out == (
        "\n"
        "final verdict after 11.8 simulated min (12 s, 45,678 beacons through rum.beacons): ROLLBACK (minor)\n"
        f"  - {REASON}\n"
        "evidence:\n"
        "  LCP p75                      not_worse    canary 1988 vs baseline 2049; e 1/80, n=3013; "
        "not worse than 2%\n"
        "  INP p75                      inconclusive canary 168 vs baseline 168; e 1/80, n=1907; "
        "not worse than 20%\n"
        "  CLS not-good share           not_worse    canary 15.72% vs baseline 16.23%; e 4.81/80, n=3277; "
        "not worse than 10%\n"
        "  JS-error page views          worse        canary 2.96% vs baseline 2.00%; e 121/80, n=3277; "
        "proven worse, not worse than 50%\n")
    assert [evidence_line(m) for m in verdict.metrics] == out.splitlines()[4:]


def test_evidence_line_without_values_and_with_a_bound(verdict) -> None:
    from dataclasses import replace

    m = replace(verdict.metrics[0], canary=None, worse_by_at_least=0.05, not_worse_than=None)
    assert evidence_line(m) == "  LCP p75                      not_worse    e 1/80, n=3013; worse by ≥ 5%"


def test_exit_codes() -> None:
    assert common.EXIT_ERROR == 3
    assert [exit_code(k) for k in ("promote", "rollback", "hold", "continue", None)] == [0, 1, 2, 2, 2]
    assert common.EXIT_CODES is EXIT_CODES


def _module_imports(path: Path) -> list[tuple[str, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names]
    return out


def test_command_modules_share_through_common_only() -> None:
    """No command module imports a private name of another, nor the package (no cycle)."""
    commands = {p.stem for p in CLI_DIR.glob("*.py")} - {"__init__", "common"}
    for path in CLI_DIR.glob("*.py"):
        for module, name in _module_imports(path):
            if module.startswith("streams.cli.") and module.removeprefix("streams.cli.") in commands:
                assert not name.startswith("_"), f"{path.name} imports {module}.{name}"
                assert path.stem != "__init__", f"__init__ imports the command module {module}"
            if path.stem != "__init__":
                assert module != "streams.cli", f"{path.name} imports the package streams.cli"
    from_common = {m for m, _ in _module_imports(CLI_DIR / "common.py")}
    assert not {m for m in from_common if m == "streams.cli" or m.startswith("streams.cli.")}


def test_one_definition_of_the_error_exit_code() -> None:
    defined = [p.name for p in CLI_DIR.glob("*.py")
               if any(isinstance(n, ast.Assign) and any(getattr(t, "id", "").startswith("EXIT_") for t in n.targets)
                      for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert defined == ["common.py"]
