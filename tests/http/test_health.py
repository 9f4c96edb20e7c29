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
