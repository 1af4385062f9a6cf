"""Real receivers on loopback: an HTTP webhook receiver that checks the HMAC signature and
counts duplicates by delivery id, and an aiosmtpd SMTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alerts_kit import SECRET


class Receiver:
    """What the webhook received: ``bodies`` (first copy per delivery id), ``duplicates``,
    ``bad_signatures``; ``fail_next`` answers 500 to that many requests first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.duplicates = 0
        self.bad_signatures = 0
        self.requests = 0
        self.fail_next = 0
        self.arrived: list[float] = []
        self.url = ""

    def wait_for(self, n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.bodies) >= n:
                    return list(self.bodies)
            time.sleep(0.02)
        raise AssertionError(f"the webhook got {len(self.bodies)} notification(s) in {timeout} s, expected {n}")


@pytest.fixture
def webhook() -> Any:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                receiver.requests += 1
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(self.headers.get("X-Keel-Signature", ""), expected):
                    receiver.bad_signatures += 1
                delivery = self.headers["X-Keel-Delivery"]
                if delivery in receiver.seen:
                    receiver.duplicates += 1
                else:
                    receiver.seen.add(delivery)
                    receiver.bodies.append(json.loads(body))
                    receiver.arrived.append(time.time())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp(monkeypatch) -> Any:
    """An aiosmtpd server on loopback; KEEL_SMTP_URL points at it. Yields the received messages."""
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received.append(envelope)
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd's start() connects to its own port: it needs a real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("KEEL_SMTP_URL", f"smtp://127.0.0.1:{port}")
    yield received
    controller.stop()
