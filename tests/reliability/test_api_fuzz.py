"""Schemathesis against /v1/openapi.json, served on a loopback port: no 5xx, no token echoed,
errors that say what is wrong, and no Flagger answer for an app whose rollout is ambiguous.

A bounded run (a few dozen cases per operation and mode, seeded); ``benchmarks/fuzz_api.py
--examples N`` is the long one. The backend holds two running rollouts of ``shop-web``: a
hook asked ``?app=shop-web`` must refuse rather than pick one.
"""

from __future__ import annotations

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is in the dev extras")

from benchmarks.fuzz_api import SKIPPED, fuzz  # noqa: E402

EXAMPLES = 25


def test_the_control_plane_survives_its_own_description():
    tallies = fuzz(EXAMPLES, seed_value=1)
    failures = [f"{op} ({mode}): {f}" for (op, mode), t in sorted(tallies.items()) for f in t.failures]
    assert failures == [], "\n".join(failures[:20])
    # Every control-plane operation was exercised, and the fuzz got past the checks too:
    # rollouts were started and overrides recorded from generated bodies.
    ops = {op for op, _ in tallies}
    assert {"POST /v1/rollouts", "POST /v1/rollouts/{id}/overrides", "POST /v1/flagger/rollback",
            "GET /v1/rollouts/{id}/verdict"} <= ops
    assert not any(path in op for op in ops for path in SKIPPED)
    positive = {op: t for (op, mode), t in tallies.items() if mode == "positive"}
    assert all(t.cases > 0 for t in positive.values())
    assert positive["POST /v1/rollouts"].statuses[201] > 0
    assert sum(t.statuses[400] for t in tallies.values()) > 0  # and bad input was refused as such
