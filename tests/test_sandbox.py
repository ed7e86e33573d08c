"""The sandbox, as a newcomer meets it: ``./scripts/dev`` on a fresh copy, with no environment set.

One dev server (the README's first command, on a loopback port of its own) serves every test
here; they talk to it over HTTP as a browser would (``bench.first_widget.SandboxVisitor``) and,
where Chromium is installed, in a real browser. With DEBUG off, or with credentials, there is no
sandbox at all.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bench.first_widget import (
    SandboxVisitor, copy_working_tree, frame_form, start_dev, stop_dev, wait_until_up, widget_action_target,
)
from bench.processes import free_port

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"
README_SCREENSHOT = REPO / "docs" / "sandbox.png"


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    """``./scripts/dev`` in a fresh copy of the work (no db.sqlite3, no .env), this venv linked in."""
    clone = copy_working_tree(tmp_path_factory.mktemp("fresh-clone"), venv=Path(sys.prefix))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = start_dev(clone, port)
    try:
        wait_until_up(base_url, proc)
        yield {"base_url": base_url, "started": started, "clone": clone}
    finally:
        stop_dev(proc)


def test_home_answers_200_and_leads_to_the_sandbox(dev_server):
    visitor = SandboxVisitor(dev_server["base_url"])
    home = visitor.get("/")
    assert home.status_code == 200
    assert 'id="open-sandbox" href="/sandbox/"' in home.text
    assert "/placements/handler/" in home.text  # the registration URLs are there too


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian's 'chromium' package)")
def test_in_chromium_the_widget_opens_in_the_task_card_resizes_and_completes_the_task(dev_server):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 640})
            page.goto(dev_server["base_url"] + "/")
            page.click("#open-sandbox")  # what the README says to click
            page.wait_for_url("**/sandbox/tasks/1/**", timeout=30_000)  # installed, then the card
            widget = page.frame_locator("#b24-app-frame").locator("#b24-widget")
            widget.and_(page.frame_locator("#b24-app-frame").locator('[data-state="ok"]')).wait_for(timeout=30_000)
            page.wait_for_function("window.bx24Log.some(m => m.bx24 === 'resizeWindow')", timeout=10_000)
            height = page.evaluate("document.getElementById('b24-app-frame').getBoundingClientRect().height")
            content = page.frame_locator("#b24-app-frame").locator("html").evaluate("e => e.scrollHeight")
            assert abs(height - content) <= 2, (height, content)  # the frame was really resized
            page.screenshot(path=str(ARTIFACTS / "sandbox.png"))
            if os.environ.get("UPDATE_README_SCREENSHOT"):
                page.screenshot(path=str(README_SCREENSHOT))

            page.frame_locator("#b24-app-frame").locator('[data-action="complete"]').click()
            # The card shows the task as the fake Bitrix24 now has it.
            page.locator('#task-card [data-task-field="status"][data-status="5"]').wait_for(timeout=15_000)
            page.screenshot(path=str(ARTIFACTS / "sandbox-completed.png"))
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian's 'chromium' package)")
def test_in_chromium_the_controls_expire_the_token_make_the_app_unpaid_and_uninstall_it(dev_server):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 640})
            frame = page.frame_locator("#b24-app-frame")
            page.goto(dev_server["base_url"] + "/sandbox/tasks/1/?user=2")
            frame.locator('#b24-widget[data-state="ok"]').wait_for(timeout=30_000)

            page.click('[data-control="expire-token"]')
            page.locator("#control-message", has_text="expired").wait_for(timeout=10_000)
            frame.locator('[data-action="reload"]').click()
            frame.locator('[data-field="note"]', has_text="Task updated.").wait_for(timeout=15_000)  # refreshed

            page.click('[data-control="unpaid"][data-on="1"]')
            page.locator("#control-message", has_text="PAYMENT_REQUIRED").wait_for(timeout=10_000)
            page.reload()
            frame.locator('[data-state="payment_required"]').wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "sandbox-unpaid.png"))
            page.click('[data-control="unpaid"][data-on="0"]')
            page.locator("#control-message", has_text="ONAPPPAYMENT").wait_for(timeout=15_000)
            page.reload()
            frame.locator('#b24-widget[data-state="ok"]').wait_for(timeout=30_000)

            page.click('[data-control="uninstall"]')
            page.locator("#not-installed").wait_for(timeout=15_000)  # the page reloads by itself
            page.screenshot(path=str(ARTIFACTS / "sandbox-uninstalled.png"))
            page.click("#not-installed a")  # install again, then the card
            page.wait_for_url("**/sandbox/tasks/1/**", timeout=30_000)
            frame.locator('#b24-widget[data-state="ok"]').wait_for(timeout=30_000)
        finally:
            browser.close()


def test_the_sandbox_form_yields_the_real_widget_and_complete_changes_the_fakes_task(dev_server):
    visitor = SandboxVisitor(dev_server["base_url"])
    card = visitor.open_portal("/sandbox/tasks/2/")
    assert card.status_code == 200 and 'id="task-card"' in card.text
    action, fields = frame_form(card.text)
    assert "/placements/handler/?" in action and "DOMAIN=" in action and "APP_SID=" in action
    assert fields["PLACEMENT"] == "TASK_VIEW_TOP_PANEL" and '"taskId": "2"' in fields["PLACEMENT_OPTIONS"]
    for name in ("AUTH_ID", "AUTH_EXPIRES", "REFRESH_ID", "member_id", "status", "APPLICATION_TOKEN"):
        assert fields[name]
    assert fields["SERVER_ENDPOINT"].startswith("http://127.0.0.1:")  # the fake listens on loopback

    widget = visitor.submit_frame(card.text)
    assert widget.status_code == 200
    assert 'id="b24-widget"' in widget.text and 'data-state="ok"' in widget.text
    assert "Call the supplier about the late delivery" in widget.text
    assert visitor.get("/sandbox/tasks/2/state").json()["status"] == "3"

    url, token = widget_action_target(widget.text)
    answer = requests.post(url, data={"action": "complete", "token": token}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["task"]["status"] == "5"
    assert visitor.get("/sandbox/tasks/2/state").json() == {
        "id": 2, "title": "Call the supplier about the late delivery", "status": "5", "status_label": "Completed",
    }


def test_the_deal_card_frames_the_deal_widget(dev_server):
    visitor = SandboxVisitor(dev_server["base_url"])
    card = visitor.open_portal("/sandbox/deals/1/")
    action, fields = frame_form(card.text)
    assert fields["PLACEMENT"] == "CRM_DEAL_DETAIL_TAB" and fields["PLACEMENT_OPTIONS"] == '{"ID": "1"}'
    widget = visitor.submit_frame(card.text)
    assert widget.status_code == 200 and 'data-state="ok"' in widget.text, widget.text[:2000]
    assert "Website redesign for Northwind" in widget.text
    url, token = widget_action_target(widget.text)
    answer = requests.post(url, data={"action": "reload", "token": token}, timeout=30)
    assert answer.status_code == 200 and answer.json()["deal"]["title"] == "Website redesign for Northwind"


def test_the_apps_own_page_opens_from_the_portals_menu(dev_server):
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("portals:app")
    except NoReverseMatch:
        pytest.skip("the app has no page of its own (/portals/app/) in this tree")
    visitor = SandboxVisitor(dev_server["base_url"])
    page = visitor.open_portal("/sandbox/app/")
    action, fields = frame_form(page.text)
    assert "/portals/app/?" in action and fields["PLACEMENT"] == "DEFAULT"
    assert visitor.submit_frame(page.text).status_code == 200


def test_after_make_the_token_expire_the_widget_refreshes_and_still_acts(dev_server):
    visitor = SandboxVisitor(dev_server["base_url"])
    widget = visitor.submit_frame(visitor.open_portal("/sandbox/tasks/1/?user=2").text)
    url, token = widget_action_target(widget.text)
    assert "expired" in visitor.control("expire-token")["message"]
    answer = requests.post(url, data={"action": "reload", "token": token}, timeout=30)
    assert answer.status_code == 200, answer.text  # a 403 here would mean no refresh


def test_a_slow_portal_makes_the_widget_wait(dev_server):
    visitor = SandboxVisitor(dev_server["base_url"])
    card = visitor.open_portal("/sandbox/tasks/1/")
    assert visitor.control("slow-portal", on="1")["slow"] is True
    try:
        started = time.monotonic()
        assert visitor.submit_frame(card.text).status_code == 200
        assert time.monotonic() - started >= 2.0
    finally:
        assert visitor.control("slow-portal", on="0")["slow"] is False


def test_an_unpaid_app_asks_for_renewal_and_paying_brings_it_back(dev_server):
    visitor = SandboxVisitor(dev_server["base_url"])
    visitor.open_portal()
    assert visitor.control("unpaid", on="1")["unpaid"] is True
    try:
        widget = visitor.submit_frame(visitor.get("/sandbox/tasks/1/").text)
        assert 'data-state="payment_required"' in widget.text, widget.text[:2000]
    finally:
        paid = visitor.control("unpaid", on="0")
    assert paid["unpaid"] is False and "ONAPPPAYMENT" in paid["message"] and "200" in paid["message"]
    widget = visitor.submit_frame(visitor.get("/sandbox/tasks/1/").text)
    assert 'data-state="ok"' in widget.text, widget.text[:2000]


def test_uninstall_sends_onappuninstall_and_the_portal_installs_again(dev_server):
    visitor = SandboxVisitor(dev_server["base_url"])
    visitor.open_portal()
    answer = visitor.control("uninstall")
    assert [a["status"] for a in answer["answers"]] == [200], answer
    assert 'id="not-installed"' in visitor.get("/sandbox/tasks/1/").text
    card = visitor.open_portal("/sandbox/tasks/1/")  # the install page again, then the card
    assert 'data-state="ok"' in visitor.submit_frame(card.text).text


def _run_server(env: dict) -> tuple[int, str]:
    """A server on the work tree itself with ``env`` only: (status of /sandbox/, body of /)."""
    port = free_port()
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DATABASE_URL": "sqlite:///:memory:"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=REPO,
        env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc, timeout=60)
        sandbox = requests.get(f"http://127.0.0.1:{port}/sandbox/", timeout=10, allow_redirects=False)
        home = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert home.status_code == 200
        return sandbox.status_code, home.text
    finally:
        stop_dev(proc)


def test_with_debug_off_there_is_no_sandbox():
    status, home = _run_server({
        "DEBUG": "false", "SECRET_KEY": "x" * 50, "SECURE_SSL_REDIRECT": "false",
        "TOKEN_ENCRYPTION_KEYS": "kq9C3cQfO1b1m0cB2l1tY8Q0m7dQz4mB0fX9e6aTq2s=",
    })
    assert status == 404
    assert "open-sandbox" not in home and "/portals/install/" in home


def test_with_credentials_set_there_is_no_sandbox():
    status, home = _run_server({"DEBUG": "true", "B24_CLIENT_ID": "local.abc.1", "B24_CLIENT_SECRET": "secret"})
    assert status == 404
    assert "open-sandbox" not in home
