"""Shared pieces of the hardening tests: row snapshots, "says why" checks, expiry, and the figures
the issue's closing note reports (printed with ``pytest -s`` and kept in test-artifacts/)."""
from __future__ import annotations

import datetime as dt
import json
import re
import socket
from http import HTTPStatus
from pathlib import Path

import pytest
from django.db import connection

from placements.models import Invocation
from portals.models import Credential, Portal

PAST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
FIGURES_FILE = Path(__file__).resolve().parent.parent / "test-artifacts" / "hardening-figures.json"


def record_figures(name: str, **figures) -> None:
    """Print one test's figures and keep them, per database vendor, for the closing note."""
    print(f"\n[figures] {name} ({connection.vendor}): {json.dumps(figures)}")
    FIGURES_FILE.parent.mkdir(exist_ok=True)
    try:
        stored = json.loads(FIGURES_FILE.read_text())
    except (OSError, ValueError):
        stored = {}
    stored.setdefault(connection.vendor, {})[name] = figures
    FIGURES_FILE.write_text(json.dumps(stored, indent=2, sort_keys=True))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rows_snapshot() -> tuple:
    """Every column of every Portal, Credential and Invocation row: equal before and after means
    nothing was written."""
    return (
        tuple(Portal.objects.order_by("pk").values_list()),
        tuple(Credential.objects.order_by("pk").values_list()),
        tuple(Invocation.objects.order_by("pk").values_list()),
    )


def row_counts() -> tuple[int, int, int]:
    return Portal.objects.count(), Credential.objects.count(), Invocation.objects.count()


_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)


def rejection_reason(response) -> str:
    """The human message of a rejection: JSON ``message``, or the text of the page."""
    content = response.content.decode("utf-8", "replace")
    if response.get("Content-Type", "").startswith("application/json"):
        return str(json.loads(content).get("message", "")).strip()
    return " ".join(_TAGS.sub(" ", content).split())


_BARE_STATUSES = {phrase.lower() for phrase in (s.phrase for s in HTTPStatus)} | {
    f"{s.value} {s.phrase}".lower() for s in HTTPStatus
}


def assert_says_why(response) -> None:
    """The answer gives a reason a person can act on, not a bare status like "Bad Request"."""
    reason = rejection_reason(response)
    assert reason.lower().rstrip(".") not in _BARE_STATUSES, response.content[:300]
    assert len(reason.split()) >= 2, response.content[:300]


def expire(credential) -> None:
    """Make the stored access token look expired to our side (the fake still takes it)."""
    Credential.objects.filter(pk=credential.pk).update(expires_at=PAST)
    credential.refresh_from_db()


class Trap:
    """A loopback HTTP server that must never be called: it records whatever reaches it and
    answers like a friendly OAuth server, to tempt code into trusting it."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        trap = self
        self.requests: list[tuple[str, str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                trap.requests.append((self.command, self.path, self.rfile.read(length) if length else b""))
                body = b'{"result": {"client_id": "x", "install": {}}, "access_token": "a", "refresh_token": "r"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap():
    server = Trap()
    yield server
    server.stop()
