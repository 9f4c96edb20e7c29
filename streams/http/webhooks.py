"""Webhooks on verdict change (the kill switch): signed, retried, never blocking the judge.

The judge calls :meth:`Notifier.notify`, which only queues; a background task POSTs the
verdict event to every configured URL with ``X-Rumgate-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body under the configured secret, retrying with exponential
backoff. A receiver checks the signature with :func:`signature` over the raw body.

>>> signature(b"secret", b'{"verdict":"rollback"}')
'sha256=b5ff9e772539aeba5d75a303fad59ecc9b58458cd56cc8990dd680bbe4a417c3'
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Sequence

import aiohttp

__all__ = ["Notifier", "signature"]

log = logging.getLogger("rumgate")


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Notifier:
    """Deliver verdict changes to ``urls``; ``attempts`` tries each, waiting ``backoff_s·2^k``."""

    def __init__(self, urls: Sequence[str], secret: str, attempts: int = 5, backoff_s: float = 1.0,
                 timeout_s: float = 5.0, queue_size: int = 1000, on_give_up=None) -> None:
        self.urls = [u.strip() for u in urls if u.strip()]
        self.secret = secret.encode()
        self.attempts, self.backoff_s, self.timeout_s = attempts, backoff_s, timeout_s
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self.on_give_up = on_give_up
        self.delivered = 0

    def notify(self, body: bytes) -> None:
        """Queue a verdict event for delivery; drops (and logs) when the queue is full."""
        if not self.urls:
            return
        try:
            self.queue.put_nowait(body)
        except asyncio.QueueFull:
            log.warning("webhook queue full: a verdict change was not delivered")
            if self.on_give_up:
                self.on_give_up()

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
            while True:
                body = await self.queue.get()
                await asyncio.gather(*(self._deliver(session, url, body) for url in self.urls))

    async def _deliver(self, session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "X-Rumgate-Signature": signature(self.secret, body)}
        for attempt in range(self.attempts):
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        log.warning("webhook %s: gave up after %d attempts (%s)", url, self.attempts, problem)
        if self.on_give_up:
            self.on_give_up()
