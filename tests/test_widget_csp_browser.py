"""The framed pages under their full Content-Security-Policy, in real headless Chromium (issue 10).

The policy allows nothing but Bitrix24's library and the page's own nonce-marked script and
style: the widget must still look right and act, the app page's repair form must still post,
and a script slipped into the page must not run.
"""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from portals.models import Portal
from tests.fixtures_placements import widget_setup
from tests.helpers import install_payload
from tests.browser_host import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, HostPage, host_page_html

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH")]


def csp_messages(messages: list[str]) -> list[str]:
    return [text for text in messages if "Content Security Policy" in text]


def frame_on_the_portal(host, widget, *, url: str, query: dict, body: dict) -> None:
    """The stored portal lives on the host page's origin, which frames ``url`` with Bitrix24's POST."""
    Portal.objects.filter(pk=widget.portal.pk).update(client_endpoint=f"{host.origin}/{widget.fake_portal.domain}/rest/")
    host.page = host_page_html(origin=host.origin, action=f"{url}?{urlencode(query)}", fields=body)


def open_framed(playwright, host, messages):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 520, "height": 520})
    page.on("console", lambda message: messages.append(message.text))
    page.route("**/api.bitrix24.com/**", lambda route: route.abort())  # no internet here
    page.goto(host.origin + "/")
    return browser, page


def test_the_widget_works_under_its_policy_and_an_injected_script_does_not_run(
    live_server, fake_b24, client, settings, transactional_db
):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    settings.ALLOWED_HOSTS = ["*"]
    widget = widget_setup(fake_b24, client, status="3")
    messages: list[str] = []
    with HostPage(fake_portal_base=fake_b24.portal_base) as host:
        query, body = widget.payload()
        frame_on_the_portal(host, widget, url=f"{live_server.url}/placements/handler/", query=query, body=body)
        with sync_playwright() as playwright:
            browser, page = open_framed(playwright, host, messages)
            try:
                frame = page.frame_locator("iframe[name=b24frame]")
                frame.get_by_text("Prepare the quarterly report").wait_for(state="visible", timeout=15000)
                complete = frame.get_by_role("button", name="Complete")
                # The page's own <style> applied (a refused stylesheet leaves a plain grey button).
                assert complete.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(187, 237, 33)"
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "widget-under-csp.png"))
                complete.click()  # the page's own script, and its fetch to /placements/action/
                frame.locator('[data-field=status][data-status="5"]').wait_for(timeout=15000)
                assert csp_messages(messages) == []  # nothing of the page itself was refused

                inner = page.frame(name="b24frame")
                inner.evaluate("""() => { const s = document.createElement('script');
                    s.textContent = 'window.__injected = 1'; document.body.appendChild(s); }""")
                page.wait_for_timeout(200)
                assert inner.evaluate("() => window.__injected") is None
                assert csp_messages(messages)  # Chromium reports the refusal
            finally:
                browser.close()


def test_the_app_pages_repair_form_posts_under_its_policy(live_server, fake_b24, client, settings, transactional_db):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    settings.ALLOWED_HOSTS = ["*"]
    widget = widget_setup(fake_b24, client)
    widget.fake_portal.placements.clear()  # something for the repair to do
    messages: list[str] = []
    with HostPage(fake_portal_base=fake_b24.portal_base) as host:
        query, body = install_payload(fake_b24, widget.fake_portal, fake_b24.issue_tokens(widget.fake_portal, user_id=1))
        frame_on_the_portal(host, widget, url=f"{live_server.url}/portals/app/", query=query, body=body)
        with sync_playwright() as playwright:
            browser, page = open_framed(playwright, host, messages)
            try:
                frame = page.frame_locator("iframe[name=b24frame]")
                frame.locator('[data-binding="placement_TASK_VIEW_TOP_PANEL"][data-bound="0"]').wait_for(timeout=15000)
                frame.get_by_role("button", name="Repair the installation").click()
                frame.locator('#repair-result[data-ok="1"]').wait_for(timeout=15000)
                assert frame.locator('[data-binding="placement_TASK_VIEW_TOP_PANEL"]').get_attribute("data-bound") == "1"
                assert csp_messages(messages) == []
            finally:
                browser.close()
