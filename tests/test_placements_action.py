"""POST /placements/action/: the page's buttons, before and after the viewer's AUTH_EXPIRES."""
from __future__ import annotations

import datetime as dt
import time
from unittest import mock

import pytest
from django.core import signing
from django.utils import timezone

from placements.signing import ActionGrant, action_token_issue
from portals.models import Credential, Portal
from tests.fixtures_placements import TASK_ID, VIEWER_ID

pytestmark = pytest.mark.django_db


def act(client, token, action="complete"):
    return client.post("/placements/action/", {"action": action, "token": token})


def viewer_credential(widget) -> Credential:
    return Credential.objects.get(portal=widget.portal, user_id=VIEWER_ID)


def test_complete_before_expiry_needs_no_refresh(widget, client):
    token = widget.action_token(client)
    widget.fake.reset_calls()
    response = act(client, token, "complete")
    assert response.status_code == 200, response.content
    task = response.json()["task"]
    assert (task["id"], task["status"], task["status_label"]) == (str(TASK_ID), "5", "Completed")
    assert task["can"]["complete"] is False
    assert widget.task.status == "5"
    assert widget.fake.count("oauth/token") == 0
    assert widget.fake.count() == 1  # the action and the fresh task in one batch
    assert all(call.params["auth"] == widget.tokens["access_token"] for call in widget.fake.calls)


@pytest.mark.parametrize("action, status", [("start", "3"), ("defer", "6")])
def test_start_and_defer_change_the_task(widget, client, action, status):
    response = act(client, widget.action_token(client), action)
    assert response.status_code == 200
    assert response.json()["task"]["status"] == status
    assert widget.task.status == status


def test_reload_answers_the_current_task(widget, client):
    token = widget.action_token(client)
    widget.task.title = "Renamed in Bitrix24"
    response = act(client, token, "reload")
    assert response.status_code == 200
    assert response.json()["task"]["title"] == "Renamed in Bitrix24"
    assert widget.task.status == "2"


def test_action_after_auth_expires_refreshes_exactly_once(widget, client):
    token = widget.action_token(client)
    Credential.objects.filter(portal=widget.portal, user_id=VIEWER_ID).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    widget.fake.reset_calls()
    response = act(client, token, "complete")
    assert response.status_code == 200, response.content
    assert widget.task.status == "5"
    assert widget.fake.count("oauth/token") == 1
    credential = viewer_credential(widget)
    assert credential.access_token != widget.tokens["access_token"]
    assert credential.refresh_token != widget.tokens["refresh_token"]
    assert credential.expires_at > timezone.now()
    # The next action uses the new pair: no second refresh.
    assert act(client, token, "reload").status_code == 200
    assert widget.fake.count("oauth/token") == 1


def test_action_with_the_clock_moved_past_expiry_refreshes_once(widget, client):
    token = widget.action_token(client)
    later = timezone.now() + dt.timedelta(hours=2)
    widget.fake.reset_calls()
    with mock.patch("django.utils.timezone.now", return_value=later):
        response = act(client, token, "start")
    assert response.status_code == 200, response.content
    assert widget.fake.count("oauth/token") == 1
    assert widget.task.status == "3"


def test_early_expired_token_refreshes_once_and_retries(widget, client):
    token = widget.action_token(client)
    widget.fake.expire_access_token(widget.tokens["access_token"])
    widget.fake.reset_calls()
    response = act(client, token, "complete")
    assert response.status_code == 200, response.content
    assert widget.task.status == "5"
    assert widget.fake.count("oauth/token") == 1
    assert widget.fake.count("batch") == 2  # refused once, then retried with the new token


def test_dead_refresh_token_is_403(widget, client):
    token = widget.action_token(client)
    credential = viewer_credential(widget)
    credential.refresh_token = "0" * 40
    credential.expires_at = timezone.now() - dt.timedelta(seconds=1)
    credential.save()
    response = act(client, token, "complete")
    assert response.status_code == 403
    assert response.json()["state"] == "session_expired" and "Reload the page" in response.json()["message"]
    assert widget.task.status == "2"
    # A viewer's dead chain is not the portal's problem.
    assert Portal.objects.get(pk=widget.portal.pk).status == Portal.Status.ACTIVE


def test_missing_token_is_403(widget, client):
    response = client.post("/placements/action/", {"action": "complete"})
    assert response.status_code == 403
    assert response.json()["state"] == "session_expired"
    assert widget.fake.count() == 0


def test_tampered_token_is_403(widget, client):
    token = widget.action_token(client)
    payload, rest = token.split(":", 1)
    forged = signing.b64_encode(
        signing.b64_decode(payload.encode()).replace(b'"u":2', b'"u":1')
    ).decode()
    assert forged != payload
    widget.fake.reset_calls()
    for bad in (forged + ":" + rest, token[:-2] + "xx", "garbage"):
        response = act(client, bad)
        assert response.status_code == 403
    assert widget.fake.count() == 0
    assert widget.task.status == "2"


def test_token_with_another_salt_is_403(widget, client):
    widget.action_token(client)
    token = signing.dumps({"p": widget.portal.pk, "u": VIEWER_ID, "c": "TASK_VIEW_TOP_PANEL", "e": "31"})
    assert act(client, token).status_code == 403


def test_expired_action_token_is_403(widget, client):
    widget.action_token(client)
    grant = ActionGrant(widget.portal.pk, VIEWER_ID, "TASK_VIEW_TOP_PANEL", str(TASK_ID), "en")
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 9 * 3600):
        token = action_token_issue(grant=grant)
    widget.fake.reset_calls()
    response = act(client, token)
    assert response.status_code == 403
    assert "expired" in response.json()["message"]
    assert widget.fake.count() == 0


def test_token_lasts_well_past_auth_expires(widget, client):
    widget.action_token(client)
    grant = ActionGrant(widget.portal.pk, VIEWER_ID, "TASK_VIEW_TOP_PANEL", str(TASK_ID), "en")
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 3 * 3600):
        token = action_token_issue(grant=grant)
    assert act(client, token, "reload").status_code == 200


def test_unknown_action_is_400(widget, client):
    response = act(client, widget.action_token(client), "delete")
    assert response.status_code == 400
    assert response.json()["state"] == "bad_request" and "delete" not in response.json()["message"]
    assert widget.task.status == "2"


def test_action_for_an_uninstalled_portal_is_403(widget, client):
    token = widget.action_token(client)
    Portal.objects.filter(pk=widget.portal.pk).update(status=Portal.Status.UNINSTALLED)
    widget.fake.reset_calls()
    assert act(client, token).status_code == 403
    assert widget.fake.count() == 0


def test_action_bitrix24_refuses_is_403(widget, client):
    token = widget.action_token(client)
    widget.task.status = "5"  # completed elsewhere meanwhile: completing it again is not allowed
    widget.fake.reset_calls()
    response = act(client, token, "complete")
    assert response.status_code == 403
    answer = response.json()
    assert answer["state"] == "refused" and "ERROR_CORE" not in answer["message"]
    # The refusal comes with the task as it is now, so the widget never shows a stale state.
    assert answer["task"]["status"] == "5" and answer["task"]["can"]["complete"] is False
    assert widget.fake.count("batch") == 1


def test_action_refusal_is_in_the_viewers_language(widget, client):
    widget.task.status = "5"
    response = act(client, widget.action_token(client, LANG="de"), "start")
    assert response.status_code == 403
    assert response.json()["message"].startswith("Bitrix24 hat das nicht erlaubt")
    assert response.json()["task"]["status_label"] == "Abgeschlossen"


def test_action_on_a_task_gone_from_view_is_403(widget, client):
    token = widget.action_token(client)
    widget.task.visible_to = {1}
    response = act(client, token, "reload")
    assert response.status_code == 403
    assert response.json()["state"] == "not_found" and "no longer have access" in response.json()["message"]


def test_action_when_bitrix24_hangs_is_504(widget, client):
    token = widget.action_token(client)
    widget.fake.hang("batch", 3.0)
    response = act(client, token, "reload")
    assert response.status_code == 504
    assert response.json()["status"] == "error"


def test_action_when_bitrix24_fails_is_502(widget, client):
    token = widget.action_token(client)
    widget.fake.fail_next("batch", status=500, error="INTERNAL_SERVER_ERROR")
    assert act(client, token, "reload").status_code == 502


def test_action_answer_is_localised_like_the_page(widget, client):
    token = widget.action_token(client, LANG="ru")
    response = act(client, token, "complete")
    assert response.json()["task"]["status_label"] == "Завершена"


def test_action_needs_no_cookie_and_no_csrf_token(widget):
    from django.test import Client

    page_client = Client()
    token = widget.action_token(page_client)
    csrf_client = Client(enforce_csrf_checks=True)
    assert act(csrf_client, token, "reload").status_code == 200


def test_get_action_is_405(client):
    assert client.get("/placements/action/").status_code == 405
