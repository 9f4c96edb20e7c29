"""PUT /v1/rollouts/{id} (idempotent registration, superseding the app's stale rollouts) and
POST /v1/rollouts/{id}/share (the expected share as the deployment tool ramps it)."""

from __future__ import annotations

from detectors.rollout import SHARE_SETTLE_MS
from streams.http.registration import live_release
from tests.http.serve import NOW, api, backend, rollout, verdict

IMAGE = "ghcr.io/acme/shop:r3"


def test_a_registration_creates_the_rollout_once_and_supersedes_the_apps_stale_ones():
    stale, other_app = rollout("shop:r2", started_at=NOW - 3_600_000), rollout("cart:r9")
    b, rec = backend(stale, other_app)
    served = api(b)
    created = served.call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "image": IMAGE, "baseline": "r2"})
    assert created.status == 201 and created.body["registered"] == "created"
    assert created.body["canary"] == "r3" and created.body["baseline"] == "r2"  # the image's tag is the release
    assert created.body["superseded"] == ["shop:r2"]
    ended = b.rollouts["shop:r2"]
    assert ended.ended_at == NOW and ended.end_reason == "superseded by shop:r3"
    assert b.rollouts["cart:r9"].ended_at is None  # another app's rollout is not this deploy's business
    assert [r.id for r in rec.rollouts] == ["shop:r3", "shop:r2"]
    again = served.call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "image": IMAGE, "baseline": "r2"})
    assert again.status == 200 and again.body["registered"] == "existing" and again.body["superseded"] == []
    assert len(rec.rollouts) == 2  # nothing published the second time


def test_supersede_false_keeps_the_other_rollouts_running():
    b, _ = backend(rollout("shop:r2"))
    put = api(b).call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "canary": "r3", "baseline": "r1",
                                                      "supersede": False})
    assert put.status == 201 and put.body["superseded"] == [] and b.rollouts["shop:r2"].ended_at is None


def test_without_a_baseline_the_release_the_last_rollout_left_live_is_the_baseline():
    promoted = rollout("shop:r2", started_at=NOW - 7_200_000, ended_at=NOW - 3_600_000, end_reason="decided")
    b, _ = backend(promoted, latest={"shop:r2": verdict("shop:r2", "promote")})
    assert live_release(b, "shop") == "r2"  # promoted: its canary is live
    put = api(b).call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "image": IMAGE})
    assert put.status == 201 and put.body["baseline"] == "r2"
    rolled_back, _ = backend(promoted, latest={"shop:r2": verdict("shop:r2", "rollback")})
    assert live_release(rolled_back, "shop") == "r1"  # rolled back: its baseline stayed live
    assert live_release(rolled_back, "cart") is None
    unknown = api(backend()[0]).call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "image": IMAGE})
    assert unknown.status == 400 and unknown.error == (
        "baseline: required, as app 'shop' has had no rollout to tell which release is live")


def test_the_same_registration_with_a_new_share_changes_the_share_from_now_on():
    b, rec = backend(rollout("shop:r3", expected_share=0.05))
    served = api(b)
    body = {"app": "shop", "canary": "r3", "baseline": "r1"}
    assert served.call("PUT", "/v1/rollouts/shop:r3", {**body, "expected_share": 0.05}).body["registered"] == "existing"
    ramp = served.call("PUT", "/v1/rollouts/shop:r3", {**body, "expected_share": 0.25})
    assert ramp.status == 200 and ramp.body["registered"] == "share changed"
    assert ramp.body["share_changes"] == [[NOW, 0.25]]
    settled = NOW + SHARE_SETTLE_MS
    assert b.rollouts["shop:r3"].share_for(settled, settled + 5_000) == 0.25
    assert b.rollouts["shop:r3"].share_for(NOW - 5_000, NOW) == 0.05  # the windows before keep theirs
    assert len(rec.rollouts) == 1


def test_a_registration_that_names_another_rollout_is_refused_with_the_field_that_differs():
    b, rec = backend(rollout("shop:r3"))
    served = api(b)
    other = served.call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "canary": "r3", "baseline": "r0"})
    assert other.status == 409 and other.error == "rollout 'shop:r3' judges baseline 'r1', not 'r0': an id names one rollout"
    stale = served.call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "image": "ghcr.io/acme/shop:r4", "baseline": "r1"})
    assert stale.status == 409 and stale.error.startswith("rollout 'shop:r3' judges canary 'r3', not 'r4'")
    policy = served.call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "canary": "r3", "baseline": "r1",
                                                         "policy": "name: strict\nmetrics:\n  - metric: LCP\n"})
    assert policy.status == 409 and "not the policy given ('strict'" in policy.error
    assert rec.rollouts == []


def test_a_bare_registration_names_the_rollout_ci_started_with_its_own_policy_and_baseline():
    from dataclasses import replace

    from detectors.policy import parse_policy

    strict = parse_policy("name: strict\nmetrics:\n  - metric: LCP\n")
    b, rec = backend(replace(rollout("shop:r3"), policy=strict, baseline="r0"))
    put = api(b).call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "image": IMAGE})
    assert put.status == 200 and put.body["registered"] == "existing" and put.body["policy"]["name"] == "strict"
    assert rec.rollouts == []


def test_registration_bodies_that_are_wrong_get_a_400_saying_why():
    served = api(backend()[0])
    for body, message in (
            ({"app": "shop", "canary": "r3", "image": IMAGE, "baseline": "r1"},
             "give canary (the release) or image (whose tag is the release), one of them"),
            ({"app": "shop", "baseline": "r1"}, "give canary (the release) or image (whose tag is the release), one of them"),
            ({"app": "shop", "image": "ghcr.io/acme/shop", "baseline": "r1"},
             "image: 'ghcr.io/acme/shop' has no tag: the tag is the release rumgate judges"),
            ({"app": "shop", "canary": "r3", "baseline": "r1", "colour": "red"}, "unknown field(s): colour"),
            ({"app": "shop", "canary": "r3", "baseline": "r1", "supersede": "yes"}, "supersede: must be true or false"),
            ({"app": "shop", "canary": "r3", "baseline": "r1", "expected_share": 2},
             "expected_share: must be a number between 0 and 1, got 2"),
            (["shop"], 'body: must be a JSON object, e.g. {"app": "shop-web", "image": "...:2026.11.23-abc"}')):
        reply = served.call("PUT", "/v1/rollouts/shop:r3", body)
        assert reply.status == 400 and reply.error == message, (body, reply.body)
    assert served.call("PUT", "/v1/rollouts/shop:r3", {"app": "shop", "canary": "r3", "baseline": "r1"},
                       headers={}).status == 401


def test_the_share_endpoint_changes_the_share_in_time_order_of_a_running_rollout():
    b, rec = backend(rollout("shop:r3", expected_share=0.05), rollout("shop:r1", ended_at=NOW - 1))
    served = api(b)
    changed = served.call("POST", "/v1/rollouts/shop:r3/share", {"expected_share": 0.5, "at": NOW - 10_000})
    assert changed.status == 200 and changed.body["share_changes"] == [[NOW - 10_000, 0.5]]
    earlier = served.call("POST", "/v1/rollouts/shop:r3/share", {"expected_share": 0.75, "at": NOW - 20_000})
    assert earlier.status == 400 and earlier.error.startswith("at: 1763855980000 is before the last change")
    for bad in ({"expected_share": 0}, {"expected_share": True}, {}, {"expected_share": 0.5, "why": "x"}):
        assert served.call("POST", "/v1/rollouts/shop:r3/share", bad).status == 400, bad
    ended = served.call("POST", "/v1/rollouts/shop:r1/share", {"expected_share": 0.5})
    assert ended.status == 409 and ended.error == "rollout 'shop:r1' has ended (by a person)"
    assert served.call("POST", "/v1/rollouts/nope/share", {"expected_share": 0.5}).status == 404
    assert [r.share_changes for r in rec.rollouts] == [((NOW - 10_000, 0.5),)]


def test_a_day_of_registered_deploys_leaves_one_running_rollout_per_app():
    from dataclasses import replace

    b, _ = backend(replace(rollout("shop:r1", started_at=NOW - 86_400_000), baseline="r0"))
    served = api(b)
    for i in range(2, 26):
        put = served.call("PUT", f"/v1/rollouts/shop:r{i}", {"app": "shop", "image": f"ghcr.io/acme/shop:r{i}"})
        assert put.status == 201 and put.body["baseline"] == "r0"  # none was promoted: r0 stays live
        assert put.body["superseded"] == [f"shop:r{i - 1}"]
    assert [r.id for r in b.rollouts.values() if r.ended_at is None] == ["shop:r25"]
