"""The widget in a real browser, framed the way a Bitrix24 task card frames it.

Headless Chromium (Debian's package, driven by Playwright) opens a task card on another loopback
origin (tests/browser_host.py) whose stand-in BX24 library really resizes the card's iframe. The
tests do what people do: click before Bitrix24's library has arrived, narrow the window, act on a
task someone else changed, and use every action from the keyboard.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from portals.models import Portal
from tests.browser_host import (
    ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, HostPage, allow_orm_beside_playwright, bx24_log, card_for, frame_height,
)
from tests.fixtures_placements import VIEWER_ID, widget_setup

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian's 'chromium' package)"),
]

WAIT = 15000  # ms


@pytest.fixture(scope="module")
def chromium():
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    allow_orm_beside_playwright()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Card:
    """A task card framing the widget: ``open`` loads it in a new browser page."""

    browser: object
    host: HostPage
    widget: object
    live_server_url: str

    def open(self, *, width: int = 380, **overrides):
        card_for(self.host, live_server_url=self.live_server_url, widget=self.widget, width=width, **overrides)
        page = self.browser.new_page(viewport={"width": width + 40, "height": 700})
        self.host.route_library(page)
        # Not "load": that waits for the frame's scripts, Bitrix24's slow library among them.
        page.goto(self.host.origin + "/", wait_until="domcontentloaded")
        frame = page.frame_locator("iframe[name=b24frame]")
        frame.locator("#b24-widget").wait_for(state="attached", timeout=WAIT)
        return page, frame

    def fitted(self, page, frame) -> int:
        """Wait until the frame is exactly as tall as the widget (the stand-in library has fitted it)."""
        page.wait_for_function("window.bx24Log.some(m => m.bx24 === 'resizeWindow')", timeout=WAIT)
        widget_height = frame.locator("#b24-widget").evaluate("e => Math.ceil(e.getBoundingClientRect().height)")
        page.wait_for_function(
            "h => Math.round(document.querySelector('iframe').getBoundingClientRect().height) === h",
            arg=widget_height, timeout=WAIT,
        )
        return widget_height


@pytest.fixture
def card(chromium, live_server, fake_b24, client, settings, transactional_db):
    settings.ALLOWED_HOSTS = ["*"]
    widget = widget_setup(fake_b24, client, status="2")
    with HostPage(fake_portal_base=fake_b24.portal_base) as host:
        # The portal lives on the host page's origin: that is the origin allowed to frame the widget.
        Portal.objects.filter(pk=widget.portal.pk).update(
            client_endpoint=f"{host.origin}/{widget.fake_portal.domain}/rest/"
        )
        yield Card(browser=chromium, host=host, widget=widget, live_server_url=live_server.url)


def status_of(frame) -> str:
    return frame.locator("[data-field=status]").get_attribute("data-status")


def wait_status(frame, status: str) -> None:
    frame.locator(f'[data-field=status][data-status="{status}"]').wait_for(timeout=WAIT)
    frame.locator('#b24-widget[aria-busy="false"]').wait_for(state="attached", timeout=WAIT)


def test_widget_in_a_cross_origin_iframe_completes_the_task(card):
    card.widget.task.status = "3"
    page, frame = card.open(width=440)
    frame.get_by_text("Prepare the quarterly report").wait_for(state="visible", timeout=WAIT)
    assert frame.locator("[data-field=status]").inner_text().lower() == "in progress"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget-open.png"))

    frame.get_by_role("button", name="Complete").click()
    wait_status(frame, "5")
    assert card.widget.task.status == "5"
    assert frame.locator("[data-field=status]").inner_text().lower() == "completed"
    assert frame.get_by_role("button", name="Complete").is_hidden()
    assert frame.locator("[data-field=note]").inner_text() == "Task completed."
    page.screenshot(path=str(ARTIFACTS / "widget.png"))
    page.close()


def test_a_click_while_the_bitrix24_library_is_still_loading_is_not_lost(card):
    card.host.library_delay = 6.0
    page, frame = card.open()
    start = frame.get_by_role("button", name="Start")
    start.wait_for(state="visible", timeout=WAIT)
    assert frame.locator("body").evaluate("() => typeof window.BX24") == "undefined"
    start.click()
    wait_status(frame, "3")
    assert card.widget.task.status == "3"
    # The library was still on its way when the task started; sizing waited for it, the click did not.
    assert frame.locator("body").evaluate("() => typeof window.BX24") == "undefined"
    assert bx24_log(page) == []
    card.fitted(page, frame)  # once it arrives, the frame fits the widget
    page.close()


def test_the_frame_refits_when_the_width_changes_and_shrinks_after_a_short_state(card):
    page, frame = card.open(width=1000)
    wide = card.fitted(page, frame)
    # The window narrows to a phone's width: the card wraps and the frame grows to show all of it.
    page.set_viewport_size({"width": 400, "height": 700})
    page.evaluate("document.getElementById('card').style.width = '360px'")
    page.wait_for_function("h => document.querySelector('iframe').getBoundingClientRect().height > h",
                           arg=wide + 20, timeout=WAIT)
    narrow = card.fitted(page, frame)
    reload_bottom = frame.get_by_role("button", name="Reload").evaluate("e => e.getBoundingClientRect().bottom")
    assert reload_bottom <= frame_height(page), "the action bar is cut off"
    # The task goes out of reach: the short "not found" state replaces the card and the frame shrinks.
    card.widget.task.visible_to = {1}
    frame.get_by_role("button", name="Reload").click()
    frame.get_by_text("Task not found").wait_for(state="visible", timeout=WAIT)
    short = card.fitted(page, frame)
    assert short < narrow / 2, (short, narrow)
    assert frame_height(page) == short
    page.close()


def test_after_a_refused_action_the_widget_shows_the_task_as_it_is_now(card):
    page, frame = card.open(LANG="ru")
    frame.get_by_role("button", name="Начать").wait_for(state="visible", timeout=WAIT)
    card.widget.task.status = "5"  # someone completed the task elsewhere meanwhile
    frame.get_by_role("button", name="Начать").click()
    wait_status(frame, "5")
    assert frame.locator("[data-field=status]").inner_text().lower() == "завершена"
    assert frame.get_by_role("button", name="Начать").is_hidden()
    assert frame.get_by_role("button", name="Возобновить").is_visible()
    note = frame.locator("[data-field=note]").inner_text()
    assert note == "Битрикс24 не разрешил это действие. Показано текущее состояние задачи."
    page.close()


def test_focus_stays_in_the_widget_when_the_clicked_button_hides(card):
    page, frame = card.open()
    start = frame.get_by_role("button", name="Start")
    start.focus()
    page.keyboard.press("Enter")
    wait_status(frame, "3")
    assert start.is_hidden()
    focused = frame.locator(":focus")
    assert focused.count() == 1 and focused.is_visible()
    assert focused.get_attribute("data-action") in ("pause", "complete", "defer", "reload")
    page.close()


def _tab_to(page, frame, action: str) -> None:
    """Press Tab until the button for ``action`` has the focus, as a keyboard user would."""
    for _ in range(20):
        page.keyboard.press("Tab")
        if frame.locator(f'[data-action="{action}"]:focus').count():
            return
    raise AssertionError(f"Tab never reached the {action} button")


def test_every_action_works_from_the_keyboard(card):
    task = card.widget.task
    task.created_by = VIEWER_ID  # the viewer controls the task, so Approve/Return to work apply
    page, frame = card.open(width=700)
    page.locator("iframe").focus()
    steps = [  # (action, key, status after it)
        ("start", "Enter", "3"), ("pause", " ", "2"), ("defer", "Enter", "6"), ("renew", " ", "2"),
        ("start", "Enter", "3"), ("complete", " ", "5"), ("renew", "Enter", "2"),
    ]
    for action, key, status in steps:
        _tab_to(page, frame, action)
        page.keyboard.press(key)
        wait_status(frame, status)
        assert task.status == status, action
    for action, status in (("approve", "5"), ("disapprove", "2")):
        task.status = "4"  # completed by the responsible, now awaiting the viewer's control
        _tab_to(page, frame, "reload")
        page.keyboard.press("Enter")
        wait_status(frame, "4")
        _tab_to(page, frame, action)
        page.keyboard.press("Enter")
        wait_status(frame, status)
        assert task.status == status, action
    assert frame.locator("[data-field=note]").inner_text() == "Task returned to work."
    page.close()


def test_a_person_opens_in_the_portals_slider_and_try_again_reloads_the_card(card):
    page, frame = card.open()
    card.fitted(page, frame)
    frame.get_by_role("link", name="Anna Petrova").click()
    page.wait_for_function("window.bx24Log.some(m => m.bx24 === 'openPath')", timeout=WAIT)
    opened = [m["params"]["path"] for m in bx24_log(page) if m["bx24"] == "openPath"]
    assert opened == [f"/company/personal/user/{VIEWER_ID}/"]
    assert len(page.context.pages) == 1  # no new tab
    page.close()

    card.widget.fake.expire_access_token(card.widget.tokens["access_token"])
    page, frame = card.open()
    frame.get_by_text("Your session has expired").wait_for(state="visible", timeout=WAIT)
    card.fitted(page, frame)
    card.widget.tokens = card.widget.fake.issue_tokens(card.widget.fake_portal, user_id=VIEWER_ID)
    card_for(card.host, live_server_url=card.live_server_url, widget=card.widget)  # the card's next POST
    frame.get_by_role("button", name="Try again").click()
    frame.get_by_role("button", name="Start").wait_for(state="visible", timeout=WAIT)
    page.close()
