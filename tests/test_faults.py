"""Faults: the fake Bitrix24 down, slow, failing or moved. The widget shows a clear state within
its timeout, retries stay bounded, and no stored token is lost or overwritten with garbage.

Every injected fault is counted; ``pytest -s`` prints the list of faults survived.
"""
from __future__ import annotations

import logging
import re
import time

import pytest
import requests
from django.conf import settings as django_settings

from placements.models import Invocation
from portals import tokens
from portals.bitrix import client as bitrix_client
from portals.models import Credential, Portal
from tests.fixtures_hardening import assert_says_why, expire, record_figures, row_counts
from tests.fixtures_placements import VIEWER_ID
from tests.helpers import post_install

pytestmark = pytest.mark.django_db

# A call that times out returns after the read timeout (tests/settings.py: 2 s); allow scheduling.
WITHIN = django_settings.B24_READ_TIMEOUT + 1.5
SURVIVED: list[str] = []


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """Rate-limit retries without the real sleeps; their number stays the length of the tuple."""
    monkeypatch.setattr(bitrix_client, "RATE_LIMIT_BACKOFF", (0.01, 0.01, 0.01))


def survived(name: str) -> None:
    SURVIVED.append(name)
    record_figures("faults", survived=len(SURVIVED), faults=SURVIVED)


def stored_tokens() -> dict:
    return {c.pk: (c.access_token, c.refresh_token) for c in Credential.objects.all()}


def state_of(response) -> str:
    match = re.search(r'data-state="([^"]*)"', response.content.decode())
    return match.group(1) if match else ""


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


# --- the widget open: one batch to the portal with the viewer's posted token ------------------------


@pytest.mark.parametrize(
    "fault, status, state",
    [
        ({"status": 500, "error": "INTERNAL_SERVER_ERROR", "description": "Internal error"}, 502, "unreachable"),
        ({"status": 503, "error": "", "body": "<html>Service Unavailable</html>"}, 502, "unreachable"),
        ({"status": 200, "error": "", "body": "not json at all"}, 502, "unreachable"),
        ({"status": 500, "error": "PORTAL_DELETED", "description": "Portal was deleted"}, 403, ""),
    ],
    ids=["5xx_json", "5xx_html", "200_garbage", "portal_deleted"],
)
def test_widget_with_portal_failing_shows_a_clear_state(client, widget, fault, status, state):
    before = stored_tokens()
    widget.fake.fail_next("batch", **fault)
    response, elapsed = timed(lambda: widget.post(client))
    assert response.status_code == status
    assert elapsed < WITHIN
    if state:
        assert state_of(response) == state
    assert "Bitrix24" in response.content.decode()
    assert stored_tokens() == before
    survived(f"portal batch answered {fault['status']} {fault.get('error') or fault.get('body', '')[:20]}")


def test_widget_with_portal_hanging_past_the_timeout_is_504_within_it(client, widget):
    before = stored_tokens()
    widget.fake.hang("batch", django_settings.B24_READ_TIMEOUT + 3, times=1)
    response, elapsed = timed(lambda: widget.post(client))
    assert response.status_code == 504 and state_of(response) == "unreachable"
    assert elapsed < WITHIN, elapsed
    assert stored_tokens() == before
    assert Invocation.objects.get().outcome == Invocation.Outcome.ERROR
    survived("portal batch hung past the read timeout")


def test_widget_with_portal_unreachable_is_502(client, widget):
    Portal.objects.update(client_endpoint="http://127.0.0.1:9/portal.example.com/rest/")  # discard port
    response, elapsed = timed(lambda: widget.post(client))
    assert response.status_code == 502 and state_of(response) == "unreachable"
    assert elapsed < WITHIN
    survived("portal connection refused")


def test_widget_with_query_limit_exceeded_answers_busy_at_once_without_retrying(client, widget):
    """A widget request never sleeps on QUERY_LIMIT_EXCEEDED (a person waits, a thread is held):
    one batch, then the clear "Bitrix24 is slow to answer" state; retries are for commands."""
    fake = widget.fake
    fake.fail_next("batch", status=503, error="QUERY_LIMIT_EXCEEDED", times=100)
    response, elapsed = timed(lambda: widget.post(client))
    assert response.status_code == 503 and state_of(response) == "busy"
    assert "slow to answer" in response.content.decode() and response["Retry-After"] == "5"
    assert fake.count(method="batch") == 1 and elapsed < 1.0
    record_figures("rate_limit_retries", batch_calls=fake.count(method="batch"), injected=100)
    survived("QUERY_LIMIT_EXCEEDED on every call")


def test_widget_with_query_limit_exceeded_once_serves_the_next_open(client, widget):
    widget.fake.fail_next("batch", status=503, error="QUERY_LIMIT_EXCEEDED", times=1)
    assert state_of(widget.post(client)) == "busy"
    response = widget.post(client)
    assert response.status_code == 200 and state_of(response) == "ok"
    assert widget.fake.count(method="batch") == 2
    survived("QUERY_LIMIT_EXCEEDED once, then an answer")


@pytest.mark.parametrize("posted_domain", ["portal-1.example.com", "moved.example.com"])
def test_widget_of_a_moved_portal_relearns_the_address_and_never_follows_the_redirect(client, widget, posted_domain):
    """The stored endpoint answers 302: the new address comes from the trusted OAuth server
    (app.info with the posted token), the open is retried there once, and Location is never called."""
    fake = widget.fake
    fake.move_portal(widget.fake_portal, "moved.example.com")
    response, elapsed = timed(lambda: widget.post(client, DOMAIN=posted_domain))
    portal = Portal.objects.get()
    if posted_domain == "moved.example.com":
        assert response.status_code == 200 and state_of(response) == "ok"
        assert portal.domain == "moved.example.com"
        assert portal.client_endpoint == widget.fake_portal.client_endpoint
    else:  # Bitrix24 still posts the old name: the address is re-learned, the stale DOMAIN refused
        assert response.status_code == 403
        assert_says_why(response)
    assert elapsed < WITHIN
    assert fake.count(method="oauth/app.info") == 1
    assert fake.count(method="batch") == 2  # the 302, then the retry at the new address
    survived(f"portal answered 302 (domain changed), widget open with DOMAIN={posted_domain}")


# --- the action: the viewer's stored credential, refreshed through the token service ----------------


def _action(client, token: str, action: str = "reload"):
    return client.post("/placements/action/", {"action": action, "token": token})


@pytest.fixture
def expired_viewer(client, widget):
    """The widget's action token, with the viewer's stored access token past its expiry."""
    token = widget.action_token(client)
    credential = Credential.objects.get(user_id=VIEWER_ID)
    expire(credential)
    widget.fake.reset_calls()
    return token, credential


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "error": "INTERNAL_SERVER_ERROR"},
        {"status": 502, "error": "", "body": "<html>Bad gateway</html>"},
        {"status": 200, "error": "wrong_client", "description": "Wrong client"},
        {"status": 200, "error": "", "body": '{"access_token": "", "refresh_token": ""}',
         "content_type": "application/json"},
        {"status": 200, "error": "", "body": '{"result": true}', "content_type": "application/json"},
        {"status": 400, "error": "invalid_client", "description": "Invalid client credentials"},
    ],
    ids=["5xx", "5xx_html", "wrong_client_200", "200_empty_tokens", "200_no_tokens", "invalid_client"],
)
def test_action_with_oauth_server_failing_keeps_the_tokens_and_recovers(client, widget, expired_viewer, fault):
    token, credential = expired_viewer
    before = stored_tokens()
    widget.fake.fail_next("oauth/token", **fault)
    response, elapsed = timed(lambda: _action(client, token))
    assert response.status_code == 502 and response.json()["message"]
    assert elapsed < WITHIN
    assert stored_tokens() == before  # nothing lost, nothing overwritten with garbage
    assert Portal.objects.get().status == Portal.Status.ACTIVE
    # The fault is gone: the same stored refresh token still works, once.
    assert _action(client, token).status_code == 200
    assert widget.fake.count(method="oauth/token") == 2
    survived(f"OAuth server answered {fault['status']} {fault.get('error') or fault['body'][:24]} on refresh")


def test_action_with_oauth_server_down_keeps_the_tokens(client, widget, expired_viewer):
    token, _ = expired_viewer
    before = stored_tokens()
    widget.fake.oauth_down = True
    response, elapsed = timed(lambda: _action(client, token))
    assert response.status_code == 502 and "Bitrix24" in response.json()["message"]
    assert elapsed < WITHIN
    assert stored_tokens() == before
    widget.fake.oauth_down = False
    assert _action(client, token).status_code == 200
    survived("OAuth server down during refresh")


def test_action_with_oauth_server_hanging_answers_504_within_the_timeout(client, widget, expired_viewer):
    """The OAuth server may still rotate the pair after we gave up: the stored pair is kept, and the
    next use says plainly that the session must be reopened instead of failing silently."""
    token, _ = expired_viewer
    before = stored_tokens()
    widget.fake.hang("oauth/token", django_settings.B24_READ_TIMEOUT + 1, times=1)
    response, elapsed = timed(lambda: _action(client, token))
    assert response.status_code == 504 and response.json()["state"] == "unreachable"
    assert elapsed < WITHIN, elapsed
    assert stored_tokens() == before
    time.sleep(1.5)  # the fake finishes the rotation we no longer wait for
    response = _action(client, token)
    assert response.status_code == 403 and response.json()["state"] == "session_expired"
    assert stored_tokens() == before
    survived("OAuth server hung past the timeout during refresh (and rotated anyway)")


def test_action_with_portal_query_limit_exceeded_answers_503_without_retrying(client, widget):
    token = widget.action_token(client)
    widget.fake.reset_calls()
    widget.fake.fail_next("batch", status=503, error="QUERY_LIMIT_EXCEEDED", times=100)
    response = _action(client, token)
    assert response.status_code == 503 and "slow to answer" in response.json()["message"]
    assert widget.fake.count(method="batch") == 1
    survived("QUERY_LIMIT_EXCEEDED on every action call")


def test_action_of_a_moved_portal_relearns_the_address_from_the_oauth_server(client, widget):
    token = widget.action_token(client)
    widget.fake.move_portal(widget.fake_portal, "moved.example.com")
    widget.fake.reset_calls()
    response = _action(client, token)
    assert response.status_code == 200, response.content
    portal = Portal.objects.get()
    assert portal.domain == "moved.example.com"
    assert portal.client_endpoint == widget.fake_portal.client_endpoint
    assert widget.fake.count(method="oauth/app.info") == 1
    survived("portal answered 302 (domain changed), action")


# --- install while Bitrix24 misbehaves ----------------------------------------------------------------


@pytest.fixture
def fresh(fake_b24):
    fake_portal = fake_b24.add_portal(domain="shop.example.com")
    return fake_portal, fake_b24.issue_tokens(fake_portal)


def test_install_with_oauth_server_down_is_502_and_writes_nothing(client, fake_b24, fresh):
    fake_b24.oauth_down = True
    response = post_install(client, fake_b24, *fresh)
    assert response.status_code == 502 and b"retry" in response.content
    assert row_counts() == (0, 0, 0)
    survived("OAuth server down during install")


def test_install_with_oauth_server_hanging_is_504_within_the_timeout(client, fake_b24, fresh):
    fake_b24.hang("oauth/app.info", django_settings.B24_READ_TIMEOUT + 1, times=1)
    response, elapsed = timed(lambda: post_install(client, fake_b24, *fresh))
    assert response.status_code == 504 and b"in time" in response.content
    assert elapsed < WITHIN
    assert row_counts() == (0, 0, 0)
    survived("OAuth server hung past the timeout during install")


def test_install_with_portal_failing_the_binding_says_what_to_retry(client, fake_b24, fresh):
    fake_b24.fail_next("batch", status=500, error="INTERNAL_SERVER_ERROR")
    response = post_install(client, fake_b24, *fresh)
    assert response.status_code == 502 and b"open the app again" in response.content
    # Verified and stored: opening the app again binds what is missing.
    assert post_install(client, fake_b24, *fresh).status_code == 200
    assert row_counts()[:2] == (1, 1)
    survived("portal 5xx while binding handlers at install")


# --- the crash between rotation and save -----------------------------------------------------------


def test_refresh_token_rotated_but_never_saved_marks_the_portal_needs_reauth_with_a_log_line(
    client, widget, caplog, admin_client
):
    """The OAuth server rotated the admin's pair (our process died before saving it). The next
    use must not fail silently: needs_reauth, a status_detail an operator reads, a log line."""
    fake = widget.fake
    admin = Credential.objects.select_related("portal").get(is_admin=True)
    spent = requests.get(fake.oauth_url + "/oauth/token/", params={
        "grant_type": "refresh_token", "client_id": fake.client_id, "client_secret": fake.client_secret,
        "refresh_token": admin.refresh_token,
    }, timeout=5)
    assert spent.status_code == 200  # rotated on the server; our database still has the old pair
    before = stored_tokens()
    expire(admin)
    with caplog.at_level(logging.WARNING, logger="portals.tokens"):
        with pytest.raises(tokens.ReauthRequired):
            tokens.portal_call(credential=admin, method="profile")
    portal = Portal.objects.get()
    assert portal.status == Portal.Status.NEEDS_REAUTH
    assert "invalid_grant" in portal.status_detail and "administrator must open the app" in portal.status_detail
    (line,) = [r for r in caplog.records if "needs re-authorisation" in r.getMessage()]
    assert portal.member_id in line.getMessage()
    assert admin.refresh_token not in line.getMessage() and admin.access_token not in line.getMessage()
    assert stored_tokens() == before  # kept for the operator to see, not blanked or garbled
    # The admin shows why.
    page = admin_client.get(f"/admin/portals/portal/{portal.pk}/change/")
    assert page.status_code == 200 and "administrator must open the app" in page.content.decode()
    # The widget keeps working with the viewer's own token (needs_reauth is still installed).
    assert widget.post(client).status_code == 200
    survived("refresh token rotated on the server but never saved (crash)")
