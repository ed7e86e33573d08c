"""A task card on another origin, framing the widget the way Bitrix24 does, for browser tests.

The host page (127.0.0.2, playing the portal) embeds an iframe and auto-submits the Bitrix24 form
POST into it. It forwards the portal's REST calls to the fake, so the stored client_endpoint, and
with it the frame-ancestors origin, is the host page's own origin, as on a real portal.

It also serves the sandbox's stand-in for Bitrix24's JS library (``//api.bitrix24.com/api/v1/`` is
routed to it): like the real one (protocol 9 and 17), ``fitWindow`` asks for the document's scrollHeight,
``resizeWindow`` asks for a given height, ``reloadWindow`` reloads the whole card and ``openPath``
opens a slider; the host page really resizes its iframe, so a test sees what a user would.
"""
from __future__ import annotations

import html
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
HOST_ADDRESS = "127.0.0.2"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
BX24_LIBRARY_URL = "**/api.bitrix24.com/**"

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Task card</title>
<style>
  body {{ margin: 0; background: #eef2f4; font: 13px "Helvetica Neue", Arial, sans-serif; color: #333; }}
  header {{ padding: 10px 20px; background: #fff; border-bottom: 1px solid #e6e9ec; font-size: 16px; }}
  .card {{ margin: 12px 20px; width: {width}px; background: #fff; border-radius: 4px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }}
  .card h2 {{ margin: 0; padding: 8px 14px; font-size: 11px; text-transform: uppercase; color: #6a737f;
             border-bottom: 1px solid #e6e9ec; letter-spacing: .04em; }}
  iframe {{ display: block; width: 100%; height: {height}px; border: 0; }}
</style></head>
<body>
<header>Task #{task_id} &mdash; {width} px</header>
<div class="card" id="card"><h2>Applications</h2><iframe name="b24frame" title="widget"></iframe></div>
<form method="post" action="{action}" target="b24frame">{fields}</form>
<script>
  window.bx24Log = [];
  var frame = document.querySelector("iframe");
  window.addEventListener("message", function (event) {{
    var data = event.data || {{}};
    if (event.source !== frame.contentWindow || !data.bx24) {{ return; }}
    window.bx24Log.push(data);
    if (data.bx24 === "resizeWindow") {{
      var height = parseInt(data.params.height, 10);
      if (height > 0) {{ frame.style.height = height + "px"; }}
    }} else if (data.bx24 === "reloadWindow") {{
      location.reload();
    }}
  }});
  document.forms[0].submit();
</script>
</body></html>
"""

# The stand-in BX24 library the sandbox serves too: each call posted to the parent, as real BX24 does.
BX24_STAND_IN = (Path(__file__).resolve().parent.parent / "sandbox" / "static" / "sandbox" / "bx24.js").read_text()


class HostPage:
    """The 'portal' origin: the task card page, the stand-in library, and REST forwarded to the fake."""

    def __init__(self, *, fake_portal_base: str):
        self.fake_portal_base = fake_portal_base
        self.page = b""
        self.library_delay = 0.0  # seconds the stand-in library takes to arrive
        self.rest_broken = False  # drop REST calls unanswered: the app's server cannot reach the portal
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
                pass

            def do_GET(self):
                if self.path == "/":
                    return self._answer(200, "text/html; charset=utf-8", host.page)
                if self.path.startswith("/bx24.js"):
                    time.sleep(host.library_delay)
                    return self._answer(200, "application/javascript", BX24_STAND_IN.encode(), cache=False)
                return self._forward()

            def do_POST(self):
                return self._forward()

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if host.rest_broken:
                    self.close_connection = True
                    return
                request = urllib.request.Request(
                    host.fake_portal_base + self.path, data=body, method=self.command,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, content_type, data = answer.status, answer.headers["Content-Type"], answer.read()
                except urllib.error.HTTPError as error:
                    status, content_type, data = error.code, error.headers["Content-Type"], error.read()
                self._answer(status, content_type or "application/json", data)

            def _answer(self, status, content_type, data, cache=True):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if not cache:  # every test's page fetches the library anew, with its own delay
                    self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((HOST_ADDRESS, 0), Handler)
        self.origin = f"http://{HOST_ADDRESS}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def set_card(self, *, action: str, fields: dict, task_id, width: int = 380, height: int = 120) -> None:
        """The next load of "/" frames the widget at ``width`` px, the iframe starting ``height`` px tall."""
        self.page = host_page_html(action=action, fields=fields, task_id=task_id, width=width, height=height)

    def route_library(self, page) -> None:
        """Serve Bitrix24's library from this host (delayed by ``library_delay``): no internet in tests."""
        page.route(BX24_LIBRARY_URL, lambda route: route.continue_(url=self.origin + "/bx24.js"))


def host_page_html(*, action: str, fields: dict, origin: str = "", task_id="", width: int = 380,
                   height: int = 230) -> bytes:
    """The card page whose form POSTs ``fields`` into the iframe (``origin`` is only informative)."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    return HOST_PAGE.format(
        task_id=task_id, width=width, height=height, action=html.escape(action), fields=inputs
    ).encode()


def card_for(host: HostPage, *, live_server_url: str, widget, width: int = 380, height: int = 120, **overrides):
    """Point the host page at the widget handler with ``widget``'s POST (fields overridable)."""
    query, body = widget.payload(**overrides)
    host.set_card(
        action=f"{live_server_url}/placements/handler/?{urlencode(query)}", fields=body,
        task_id=widget.task.id, width=width, height=height,
    )


def frame_height(page) -> int:
    return page.evaluate("document.querySelector('iframe').getBoundingClientRect().height")


def bx24_log(page) -> list:
    return page.evaluate("window.bx24Log")


def allow_orm_beside_playwright() -> None:
    """Playwright's sync API runs an event loop in this thread; the ORM calls a test makes between
    browser steps are still plain synchronous calls."""
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

