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


# -- readiness: the broker connection and the judge's catch-up -------------------------------------

from dataclasses import dataclass, field  # noqa: E402

from streams.http.health import READINESS, Readiness  # noqa: E402
from tests.http.serve import Served  # noqa: E402


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class ServedReady(Served):
    """The API with a worker's :class:`Readiness` on it, as ``streams.live.serving`` puts it."""

    readiness: Readiness = field(default_factory=Readiness)

    def app(self):
        app = super().app()
        app[READINESS] = self.readiness
        return app


def ready_worker(clock: Clock) -> tuple[ServedReady, Readiness]:
    """A worker that owns its partitions, whose broker answered just now and whose judge owns
    no rum.windows partition: ready."""
    b, _ = backend()
    b.partitions = ["rum.beacons[0]"]
    r = Readiness(clock=clock)
    r.probed(None, started_at=clock.t - 0.1)
    return ServedReady(b, readiness=r), r


def readyz(served: ServedReady):
    return served.call("GET", "/readyz", headers={})


def test_readyz_is_200_when_the_broker_answers_and_says_what_it_knows():
    served, _ = ready_worker(Clock())
    answer = readyz(served)
    assert answer.status == 200
    assert answer.body == {"ready": True, "partitions": ["rum.beacons[0]"],
                           "broker": {"reachable": True, "last_send_failed": None},
                           "judge": {"caught_up": True, "lag": {}}}


def test_a_broker_that_does_not_answer_makes_readyz_503_while_healthz_stays_200():
    clock = Clock()
    served, r = ready_worker(clock)
    r.probed("no answer within 3 s", started_at=clock.t - 3)
    answer = readyz(served)
    assert answer.status == 503
    assert answer.body["ready"] is False and answer.body["reason"] == "broker unreachable: no answer within 3 s"
    assert answer.body["broker"] == {"reachable": False, "last_send_failed": None}
    assert "failing" not in answer.body  # no stage-1 partition failed: only the broker
    health = served.call("GET", "/healthz", headers={})
    assert health.status == 200 and health.body["status"] == "ok"  # liveness: the process serves
    clock.t += 2
    r.probed(None, started_at=clock.t - 0.01)  # it answers again
    assert readyz(served).status == 200


def test_a_broker_never_checked_or_not_checked_lately_is_not_ready():
    clock = Clock()
    b, _ = backend()
    b.partitions = []
    r = Readiness(clock=clock)
    served = ServedReady(b, readiness=r)
    answer = readyz(served)
    assert (answer.status, answer.body["reason"]) == (503, "broker not checked yet")
    r.probed(None, started_at=clock.t)
    assert readyz(served).status == 200
    clock.t += r.stale_after_s + 5  # the prober stopped: its last answer proves nothing now
    answer = readyz(served)
    assert (answer.status, answer.body["reason"]) == (503, "broker not checked for 20 s")


def test_a_failed_send_is_not_ready_until_a_send_or_a_later_probe_succeeds():
    clock = Clock()
    served, r = ready_worker(clock)
    probe_began = clock.t
    clock.t += 1
    r.sent("KafkaTimeoutError: Batch for TopicPartition(topic='rum.beacons', partition=0) made no progress")
    answer = readyz(served)
    assert answer.status == 503
    assert answer.body["reason"] == ("the last send to the broker failed (KafkaTimeoutError: Batch for "
                                     "TopicPartition(topic='rum.beacons', partition=0) made no progress) "
                                     "and none has succeeded since")
    assert answer.body["broker"]["last_send_failed"].startswith("KafkaTimeoutError")
    r.probed(None, started_at=probe_began)  # a probe under way before the failure proves nothing about it
    assert readyz(served).status == 503
    r.sent(None)  # a send acknowledged since
    assert readyz(served).status == 200
    r.sent("KafkaConnectionError: Unable to bootstrap")
    assert readyz(served).status == 503
    clock.t += 2
    r.probed(None, started_at=clock.t - 0.1)  # a probe begun after it: the broker answers again
    assert readyz(served).status == 200  # (a worker out of service that sends nothing comes back)


def test_readyz_is_503_while_the_judge_re_reads_rum_windows_after_an_assignment():
    clock = Clock()
    served, r = ready_worker(clock)
    r.assigned([0, 1])  # a (re)start: the judge reads both partitions from the start
    answer = readyz(served)
    assert (answer.status, answer.body["reason"]) == (503, "judge catching up on rum.windows: end offsets not read yet")
    r.ends({0: 500, 1: 0})  # what was there when it started; partition 1 is empty
    r.judged(0, 99)
    answer = readyz(served)
    assert answer.status == 503
    assert answer.body["reason"] == "judge catching up on rum.windows: partition 0 at offset 100 of 500 (lag 400)"
    assert answer.body["judge"] == {"caught_up": False, "lag": {"0": 400, "1": 0}}
    r.judged(7, 10_000)  # a partition it does not own: not its progress
    r.judged(0, 498)
    assert readyz(served).status == 503
    r.judged(0, 499)  # the last record there at the start
    answer = readyz(served)
    assert answer.status == 200 and answer.body["judge"] == {"caught_up": True, "lag": {"0": 0, "1": 0}}
    # Caught up once, it stays ready while traffic comes in; the lag is reported.
    r.ends({0: 530, 1: 4})
    answer = readyz(served)
    assert answer.status == 200 and answer.body["judge"] == {"caught_up": True, "lag": {"0": 30, "1": 4}}
    # A rebalance: re-read again, not ready again until caught up with the new ends.
    r.assigned([1])
    assert readyz(served).status == 503
    r.ends({1: 4})
    r.judged(1, 3)
    assert readyz(served).body == {"ready": True, "partitions": ["rum.beacons[0]"],
                                   "broker": {"reachable": True, "last_send_failed": None},
                                   "judge": {"caught_up": True, "lag": {"1": 0}}}


def test_every_reason_is_given_at_once():
    clock = Clock()
    b, _ = backend()
    b.failing[2] = "partition 2: stage-1 send failed (KafkaTimeoutError: )"
    r = Readiness(clock=clock)
    r.probed("KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 9092)]", started_at=clock.t)
    r.assigned([0])
    answer = readyz(ServedReady(b, readiness=r))  # b.partitions is None: still joining
    assert answer.status == 503 and answer.body["failing"] == [2]
    assert answer.body["reason"].split("; ") == [
        "not ready: joining the consumer group",
        "partition 2: stage-1 send failed (KafkaTimeoutError: )",
        "broker unreachable: KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 9092)]",
        "judge catching up on rum.windows: end offsets not read yet",
    ]


# -- on a real worker and the real embedded broker ---------------------------------------------------

import asyncio  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

import orjson  # noqa: E402

from tests.integration.conftest import broker  # noqa: E402,F401 - the real broker fixture

WINDOWS_BEFORE_START = 20_000  # rum.windows records the judge must re-read when it starts


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def _poll_readyz(http: str, until, timeout_s: float, what: str) -> list[tuple[int, dict]]:
    """/readyz every 50 ms until ``until(status, body)``; every answer seen, the last one last."""
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status, body = _get(http + "/readyz")
        except OSError:  # not serving yet
            time.sleep(0.05)
            continue
        seen.append((status, body))
        if until(status, body):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"/readyz never {what} within {timeout_s} s; last answers: {seen[-3:]}")


async def _fill_windows(servers: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=20)
    await producer.start()
    try:
        for i in range(n):  # progress records of source 0: cheap to judge, but each one is read
            await producer.send(topic, orjson.dumps({"source": 0, "closed_before": 5000 * (i + 1),
                                                     "idle": False, "summaries": []}), key=b"0", partition=0)
        await producer.flush()
    finally:
        await producer.stop()


def test_readyz_on_a_real_worker_waits_for_the_judge_and_follows_a_frozen_broker(broker, tmp_path):  # noqa: F811
    """A worker started on a ``rum.windows`` that already holds 20,000 records is not ready until
    its judge has re-read them; ready, it turns 503 naming the broker within a few seconds of the
    broker freezing (SIGSTOP), while ``/healthz`` stays 200, and ready again once it thaws."""
    from tests.integration.conftest import Pipeline

    pipeline = Pipeline(broker, tmp_path, partitions=1)
    asyncio.run(_fill_windows(broker.servers, pipeline.topics.windows, WINDOWS_BEFORE_START))
    worker = pipeline.start_worker()
    try:
        seen = _poll_readyz(worker.http, lambda status, _: status == 200, 120, "200")
        reasons = [body["reason"] for status, body in seen if status == 503]
        assert any("judge catching up on rum.windows" in r for r in reasons), reasons
        ready = seen[-1][1]
        assert ready["judge"]["caught_up"] is True and ready["broker"]["reachable"] is True, ready
        assert ready["judge"]["lag"] == {"0": 0}, ready  # nothing new since: every record judged

        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            seen = _poll_readyz(worker.http, lambda status, body: status == 503 and "broker unreachable"
                                in body["reason"], 20, "503 for the frozen broker")
            took = time.monotonic() - frozen_at
            status, health = _get(worker.http + "/healthz")
            assert status == 200 and health["status"] == "ok"  # liveness: the process still serves
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        assert took < 10, took  # a probe every 2 s, 3 s without an answer
        assert seen[-1][1]["broker"]["reachable"] is False
        _poll_readyz(worker.http, lambda status, _: status == 200, 120, "200 again after the thaw")
    finally:
        pipeline.stop()
