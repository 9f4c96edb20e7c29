"""Webhooks on verdict change: signed with HMAC-SHA256, retried after a failure, in order."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streams.live.broker import free_port
from streams.offline.simulate import generate_beacons
from tests.integration.conftest import decided, make_rollout
from tests.integration.test_pipeline import POLICY, REGRESSED

SECRET = "hook-secret"


class Receiver(BaseHTTPRequestHandler):
    deliveries: list[tuple[bytes, str]] = []
    attempts = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).attempts += 1
        if type(self).attempts == 1:  # the first delivery fails: it must be retried
            self.send_response(503)
            self.end_headers()
            return
        type(self).deliveries.append((body, self.headers.get("X-Rumgate-Signature", "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_verdict_changes_are_posted_signed_and_retried(pipeline):
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pipeline.start_rollout(make_rollout(REGRESSED, POLICY))
        pipeline.start_worker(RUMGATE_WEBHOOK_URLS=f"http://127.0.0.1:{port}/hook", RUMGATE_WEBHOOK_SECRET=SECRET)
        pipeline.produce(generate_beacons(REGRESSED, seed=11))
        verdicts = pipeline.wait_for_verdict(decided)
        deadline = time.monotonic() + 30
        while len(Receiver.deliveries) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.shutdown()
    kinds = [json.loads(body)["verdict"] for body, _ in Receiver.deliveries]
    assert kinds == ["continue", "rollback"]  # only changes: not one per window
    assert len([v for v in verdicts if v["verdict"] == "continue"]) > 1
    assert Receiver.attempts == 3  # the failed first attempt was retried
    for body, sig in Receiver.deliveries:
        assert sig == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
