"""The Backend: the latest verdict per key by seq, and the verdict before the first."""

from __future__ import annotations

from streams.http.api import Backend, no_verdict
from streams.http.backend import BACKEND, CLOCK
from tests.http.serve import NOW, api, backend, rollout, verdict


def test_a_verdict_is_kept_unless_a_later_seq_is_held():
    b = Backend()
    assert b.offer_verdict("a", verdict("a", "continue", seq=2))
    assert not b.offer_verdict("a", verdict("a", "promote", seq=1))  # older: ignored
    assert b.latest["a"]["seq"] == 2 and b.latest["a"]["verdict"] == "continue"
    assert b.offer_verdict("a", verdict("a", "hold", seq=2))  # the same seq read back: replaces
    assert b.latest["a"]["verdict"] == "hold"
    assert b.offer_verdict("a", verdict("a", "rollback", seq=5))
    assert b.latest["a"]["verdict"] == "rollback"
    assert not b.offer_verdict("b", {"rollout": "b", "verdict": "continue"})  # no seq: not a verdict
    assert not b.offer_verdict("a", {"rollout": "a", "verdict": "promote", "seq": "9"})
    assert set(b.latest) == {"a"} and b.latest["a"]["verdict"] == "rollback"


def test_the_verdict_before_the_first_is_continue():
    b = Backend()
    assert b.verdict("x:1") == no_verdict("x:1")
    assert no_verdict("x:1")["verdict"] == "continue" and no_verdict("x:1")["seq"] == 0
    b.latest["x:1"] = verdict("x:1", "promote")
    assert b.verdict("x:1")["verdict"] == "promote"


def test_the_app_carries_its_backend_and_clock():
    one, _ = backend(rollout("a:r2"))
    two, _ = backend(rollout("b:r2"), rollout("c:r2"))
    served_one, served_two = api(one), api(two)
    app_one, app_two = served_one.app(), served_two.app()
    assert app_one[BACKEND] is one and app_two[BACKEND] is two and app_one[CLOCK]() == app_two[CLOCK]() == NOW
    assert served_one.call("GET", "/healthz").body["rollouts"] == 1
    assert served_two.call("GET", "/healthz").body["rollouts"] == 2
