"""HTTP plumbing: a threading server per side (OAuth, portals) that hands each request to the fake."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeBitrix24/1.0"
    timeout = 30  # idle keep-alive connections end on their own
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed
    # ACK (40 ms on Linux) on a kept-alive connection. Real Bitrix24 (nginx) answers at once.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def _go(self):
        self.server.fake._dispatch(self, self.server.kind)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = _go


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # many concurrent workers must not get connection refused

    def handle_error(self, request, client_address):  # client went away mid-answer: not our problem
        pass


@dataclass
class Resp:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict = field(default_factory=dict)


def json_resp(status: int, obj: Any, headers: dict | None = None) -> Resp:
    return Resp(status, json.dumps(obj).encode(), headers=headers or {})


def send(h: BaseHTTPRequestHandler, resp: Resp) -> None:
    try:
        h.send_response(resp.status)
        h.send_header("Content-Type", resp.content_type)
        h.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(resp.body)
    except (BrokenPipeError, ConnectionResetError, OSError):
        h.close_connection = True
