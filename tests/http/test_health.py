"""/healthz and /metrics: open on every worker, tokenless or not."""

from __future__ import annotations

from tests.http.serve import api, backend, rollout


def test_healthz_counts_the_rollouts_and_is_open():
    b, _ = backend(rollout("a:r2"), rollout("b:r2"))
    for served in (api(b), api(b, token="")):
        answer = served.call("GET", "/healthz", headers={})
        assert answer.status == 200
        assert answer.body == {"status": "ok", "rollouts": 2, "ready": False, "partitions": []}
        assert answer.content_type.startswith("application/json")
    assert api(backend()[0]).call("GET", "/healthz", headers={}).body["rollouts"] == 0


def test_healthz_says_ready_once_the_worker_owns_its_partitions():
    b, _ = backend()
    assert api(b).call("GET", "/healthz", headers={}).body["ready"] is False
    b.partitions = ["rum.beacons[0]", "rum.windows[0]"]
    body = api(b).call("GET", "/healthz", headers={}).body
    assert body["ready"] is True and body["partitions"] == ["rum.beacons[0]", "rum.windows[0]"]
    b.partitions = []  # a worker of a group with more members than partitions: ready, owning none
    assert api(b).call("GET", "/healthz", headers={}).body == {"status": "ok", "rollouts": 0, "ready": True,
                                                              "partitions": []}


def test_metrics_render_the_backends_registry_as_prometheus_text():
    b, _ = backend()
    b.metrics.beacons.inc(5)
    b.metrics.verdicts.labels(verdict="promote", dry_run="false").inc()
    for served in (api(b), api(b, token="")):
        answer = served.call("GET", "/metrics", headers={})
        assert answer.status == 200 and answer.content_type.startswith("text/plain")
        assert "charset=utf-8" in answer.content_type
        assert "# TYPE rumgate_beacons_total counter" in answer.body
        assert "rumgate_beacons_total 5.0" in answer.body.splitlines()
        assert 'rumgate_verdicts_total{dry_run="false",verdict="promote"} 1.0' in answer.body.splitlines()
    assert answer.body == b.metrics.render().decode()


def test_readyz_is_503_with_the_reason_until_ready_and_while_a_stage1_partition_fails():
    b, _ = backend()
    for served in (api(b), api(b, token="")):  # open, like /healthz
        answer = served.call("GET", "/readyz", headers={})
        assert answer.status == 503 and answer.body["ready"] is False and "joining" in answer.body["reason"]
    b.partitions = ["rum.beacons[0]"]
    assert api(b).call("GET", "/readyz", headers={}).status == 200
    b.failing[0] = "partition 0: stage-1 send failed (MessageSizeTooLargeError: too big)"
    answer = api(b).call("GET", "/readyz", headers={})
    assert answer.status == 503
    assert answer.body == {"ready": False, "failing": [0], "reason": b.failing[0]}
    health = api(b).call("GET", "/healthz", headers={})  # liveness is unchanged: the process serves
    assert health.status == 200 and health.body["status"] == "ok"
    b.failing.clear()
    assert api(b).call("GET", "/readyz", headers={}).body == {"ready": True, "partitions": ["rum.beacons[0]"]}


def test_metrics_count_stage1_send_failures():
    b, _ = backend()
    b.metrics.stage1_send_failures.inc()
    assert "rumgate_stage1_send_failures_total 1.0" in api(b).call("GET", "/metrics", headers={}).body.splitlines()
