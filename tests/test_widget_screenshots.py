"""Screenshots of the widget as people meet it: every state, at 360/700/1000 px, in several languages.

Not a check (nothing is asserted about the pictures): run it to look at the widget, e.g.
``WIDGET_SHOTS_DIR=/tmp/shots .venv/bin/python -m pytest -q tests/test_widget_screenshots.py``.
Skipped unless WIDGET_SHOTS_DIR names a directory; WIDGET_SHOTS_LANGS picks the languages.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from portals.models import Portal
from tests.browser_host import (
    CHROMIUM, CHROMIUM_ARGS, HostPage, allow_orm_beside_playwright, card_for,
)
from tests.fixtures_placements import widget_setup

SHOTS_DIR = os.environ.get("WIDGET_SHOTS_DIR", "")
LANGS = os.environ.get("WIDGET_SHOTS_LANGS", "en,ru,de").split(",")
WIDTHS = (360, 700, 1000)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not SHOTS_DIR, reason="set WIDGET_SHOTS_DIR to take screenshots"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian's 'chromium' package)"),
]


def _no_access(widget, host, fake):
    widget.task.visible_to = {1}


def _portal_unreachable(widget, host, fake):
    host.rest_broken = True


def _bitrix_error(widget, host, fake):
    fake.fail_next("batch", status=500, error="INTERNAL_SERVER_ERROR", description="Internal error", times=1000)


def _session_expired(widget, host, fake):
    fake.expire_access_token(widget.tokens["access_token"])


def _completed_elsewhere(widget, host, fake):
    widget.task.status = "5"


def _action_rate_limited(widget, host, fake):
    fake.fail_next("batch", status=503, error="QUERY_LIMIT_EXCEEDED", description="Too many requests", times=1000)


# name: (setup before the open, POST overrides, setup after the open, button clicked, block the action URL)
STATES = {
    "ok": (None, {}, None, None, False),
    "not_found": (_no_access, {}, None, None, False),
    "unreachable": (_portal_unreachable, {}, None, None, False),
    "error": (_bitrix_error, {}, None, None, False),
    "session_expired": (_session_expired, {}, None, None, False),
    "bad_request": (None, {"PLACEMENT_OPTIONS": "{}"}, None, None, False),
    "not_installed": (None, {"member_id": "0" * 32}, None, None, False),
    "too_large": (None, {"EXTRA": "y" * (70 * 1024)}, None, None, False),
    "action_refused": (None, {}, _completed_elsewhere, "start", False),
    "action_rate_limited": (None, {}, _action_rate_limited, "start", False),
    "action_offline": (None, {}, None, "start", True),
}


@pytest.mark.parametrize("state", list(STATES))
def test_screenshots(state, live_server, fake_b24, client, settings, transactional_db):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    allow_orm_beside_playwright()
    settings.ALLOWED_HOSTS = ["*"]
    before, overrides, after_open, click, offline = STATES[state]
    out = Path(SHOTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    widget = widget_setup(fake_b24, client, status="2")
    with HostPage(fake_portal_base=fake_b24.portal_base) as host, sync_playwright() as playwright:
        Portal.objects.filter(pk=widget.portal.pk).update(
            client_endpoint=f"{host.origin}/{widget.fake_portal.domain}/rest/"
        )
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for lang in LANGS:
                for width in WIDTHS:
                    widget.task.status, widget.task.visible_to = "2", None
                    host.rest_broken = False
                    fake_b24.clear_faults()
                    widget.tokens = fake_b24.issue_tokens(widget.fake_portal, user_id=2)
                    if before:
                        before(widget, host, fake_b24)
                    card_for(host, live_server_url=live_server.url, widget=widget, width=width,
                             LANG=lang, **overrides)
                    # Tall: Chromium paints a cross-origin frame only inside the viewport, even in a full-page shot.
                    page = browser.new_page(viewport={"width": width + 40, "height": 900})
                    host.route_library(page)
                    if offline:
                        page.route("**/placements/action/**", lambda route: route.abort())
                    page.goto(host.origin + "/")
                    frame = page.frame_locator("iframe[name=b24frame]")
                    frame.locator("#b24-widget").wait_for(state="attached", timeout=20000)
                    if click:
                        if after_open:
                            after_open(widget, host, fake_b24)
                        frame.locator(f'[data-action="{click}"]').click()
                        frame.locator('#b24-widget[aria-busy="false"]').wait_for(state="attached", timeout=20000)
                    page.wait_for_timeout(400)  # let the frame settle to its fitted height
                    bottom = page.evaluate("document.getElementById('card').getBoundingClientRect().bottom")
                    page.screenshot(path=str(out / f"{state}-{lang}-{width}.png"),
                                    clip={"x": 0, "y": 0, "width": width + 40, "height": bottom + 12})
                    page.close()
        finally:
            browser.close()
