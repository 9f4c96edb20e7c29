"""`rumgate demo` as a newcomer runs it: the real command, the embedded broker, a worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.conftest import REPO


@pytest.mark.parametrize("scenario, code, verdict", [("lcp-regression", 1, "ROLLBACK"), ("clean", 0, "PROMOTE")])
def test_demo_ends_with_the_verdict_and_its_exit_code(scenario, code, verdict):
    run = subprocess.run([sys.executable, "-m", "streams", "demo", "--scenario", scenario, "--speed", "400"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == code, run.stdout + run.stderr
    out = run.stdout
    assert "embedded broker at kafka://127.0.0.1:" in out
    assert "final verdict after" in out and verdict in out
    assert out.count(" continue ") >= 2  # the live view showed the evidence growing
    assert "evidence:" in out and "LCP p75" in out
