"""The widget in a real browser, framed the way a Bitrix24 task card frames it.

A host page on another loopback origin (127.0.0.2, playing the portal) embeds an iframe and
auto-submits the Bitrix24 form POST into it; headless Chromium (Debian's package, driven by
Playwright) must show the task inside the frame and complete it with a click. The host server
also forwards the portal's REST calls to the fake, so the stored client_endpoint, and with it
the frame-ancestors origin, is the host page's own origin, as on a real portal.
"""
from __future__ import annotations

import html
import shutil
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

from portals.models import Portal
from tests.fixtures_placements import TASK_ID, widget_setup

pytestmark = [pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
HOST_ADDRESS = "127.0.0.2"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Task card</title>
<style>
  body {{ margin: 0; background: #eef2f4; font: 13px "Helvetica Neue", Arial, sans-serif; color: #333; }}
  header {{ padding: 14px 20px; background: #fff; border-bottom: 1px solid #e6e9ec; font-size: 18px; }}
  .card {{ margin: 16px 20px; width: 380px; background: #fff; border-radius: 4px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }}
  .card h2 {{ margin: 0; padding: 10px 14px; font-size: 11px; text-transform: uppercase; color: #80868e;
             border-bottom: 1px solid #e6e9ec; letter-spacing: .04em; }}
  iframe {{ display: block; width: 100%; height: 230px; border: 0; }}
</style></head>
<body>
<header>Task #{task_id} &mdash; host page on {origin}</header>
<div class="card"><h2>Applications</h2><iframe name="b24frame" title="widget"></iframe></div>
<form method="post" action="{action}" target="b24frame">{fields}</form>
<script>document.forms[0].submit();</script>
</body></html>
"""


class HostPage:
    """The 'portal' origin: serves the task card page and forwards REST calls to the fake."""

    def __init__(self, *, fake_portal_base: str):
        self.fake_portal_base = fake_portal_base
        self.page = b""
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
                pass

            def do_GET(self):
                if self.path == "/":
                    return self._answer(200, "text/html; charset=utf-8", host.page)
                return self._forward()

            def do_POST(self):
                return self._forward()

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
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

            def _answer(self, status, content_type, data):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
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


def host_page_html(*, origin: str, action: str, fields: dict) -> bytes:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    return HOST_PAGE.format(task_id=TASK_ID, origin=origin, action=html.escape(action), fields=inputs).encode()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian's 'chromium' package)")
def test_widget_in_a_cross_origin_iframe_completes_the_task(live_server, fake_b24, client, settings, transactional_db):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    settings.ALLOWED_HOSTS = ["*"]
    widget = widget_setup(fake_b24, client, status="3")

    with HostPage(fake_portal_base=fake_b24.portal_base) as host:
        # The portal lives on the host page's origin: that is the origin allowed to frame the widget.
        Portal.objects.filter(pk=widget.portal.pk).update(
            client_endpoint=f"{host.origin}/{widget.fake_portal.domain}/rest/"
        )
        query, body = widget.payload()
        host.page = host_page_html(
            origin=host.origin, action=f"{live_server.url}/placements/handler/?{urlencode(query)}", fields=body
        )
        fake_b24.reset_calls()
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 440, "height": 340}, device_scale_factor=2)
                # No internet here: Bitrix24's library fails fast, as the page must tolerate.
                page.route("**/api.bitrix24.com/**", lambda route: route.abort())
                page.goto(host.origin + "/")
                frame = page.frame_locator("iframe[name=b24frame]")
                frame.get_by_text("Prepare the quarterly report").wait_for(state="visible", timeout=15000)
                assert fake_b24.count("batch") == 1
                assert frame.locator("[data-field=status]").inner_text().lower() == "in progress"
                page.screenshot(path=str(ARTIFACTS / "widget-open.png"))

                frame.get_by_role("button", name="Complete").click()
                frame.locator('[data-field=status][data-status="5"]').wait_for(timeout=15000)
                assert widget.task.status == "5"
                assert frame.locator("[data-field=status]").inner_text().lower() == "completed"
                assert frame.get_by_role("button", name="Complete").is_hidden()
                page.screenshot(path=str(ARTIFACTS / "widget.png"))
            finally:
                browser.close()
