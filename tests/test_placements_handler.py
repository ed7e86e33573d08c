"""POST /placements/handler/ against the fake Bitrix24 over HTTP: what is served, what is refused."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from placements import registry
from placements.kinds.tasks import TaskPlacement
from placements.models import Invocation
from portals.models import Credential, Portal
from tests.fixtures_placements import TASK_ID, VIEWER_ID, action_token_from
from tests.helpers import install_portal

pytestmark = pytest.mark.django_db


def assert_refused(response, widget, status: int, *, outbound: int = 0, text: str = "", state: str = "",
                   logged: str = "", caplog=None):
    """A refusal: the status, a page saying why (``state``) in words a person reads, nothing
    written, and no (or the given) call out; the technical reason (``logged``) is in the log only."""
    assert response.status_code == status, response.content.decode()[:500]
    body = response.content.decode()
    assert 'id="b24-widget"' in body and "data-action-token" not in body
    if text:
        assert text in body
    if state:
        assert f'data-state="{state}"' in body
    if logged:
        assert logged in caplog.text and logged not in body
    assert Invocation.objects.count() == 0
    assert not Credential.objects.filter(user_id=VIEWER_ID).exists()
    assert widget.fake.count() == outbound


# --- served ---------------------------------------------------------------------------------------


def test_open_shows_the_task(widget, client):
    response = widget.post(client)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Prepare the quarterly report" in body
    assert 'data-status="2"' in body and ">Pending<" in body
    assert ">High<" in body
    assert "w-deadline w-overdue" in body  # 15 Jan 2025 is past
    assert "Anna Petrova" in body and "Admin User" in body
    # Relative picture paths resolve against the stored portal origin.
    assert f'src="{widget.portal.origin}/upload/anna.png"' in body
    assert f'src="{widget.portal.origin}/bitrix/images/tasks/default_avatar.png"' in body
    # No link to the card the user is already in; people open in the portal's slider (data-path).
    assert "/tasks/task/view/" not in body
    assert f'href="{widget.portal.origin}/company/personal/user/{VIEWER_ID}/"' in body
    assert f'data-path="/company/personal/user/{VIEWER_ID}/"' in body and 'title="Anna Petrova"' in body
    assert 'data-action-url="http://testserver/placements/action/"' in body
    assert action_token_from(body)
    assert re.search(r'<script id="b24-library" src="//api.bitrix24.com/api/v1/" nonce="[^"]+" async>', body)
    assert "resizeWindow" in body and "fitWindow()" not in body
    assert "{#" not in body and "{%" not in body  # no template comment or tag shown as text


def test_open_makes_exactly_one_outbound_request(widget, client):
    response = widget.post(client)
    assert response.status_code == 200
    assert widget.fake.count() == 1
    assert widget.fake.count("batch", server="portal", domain=widget.fake_portal.domain) == 1
    assert widget.fake.count(server="oauth") == 0
    batch = next(call for call in widget.fake.calls if call.method == "batch")
    assert batch.params["auth"] == widget.tokens["access_token"]  # the viewer's own token
    assert set(batch.params["cmd"]) == {"profile", "task"}


def _own_queries(captured) -> int:
    """The app's own queries: without Redis the portal's turn in the shared request budget is one
    more statement per outbound call (portals/ratelimit.py), counted apart."""
    budget = [query for query in captured.captured_queries if "portals_ratebucket" in query["sql"]]
    assert len(budget) <= 1
    return len(captured.captured_queries) - len(budget)


def test_open_runs_at_most_six_queries_and_a_later_open_three(widget, client, django_assert_max_num_queries):
    # The portal, the invocation, the viewer's UPDATE (0 rows), the still-installed check, the
    # INSERT, the check again (an uninstall may have committed in between).
    with django_assert_max_num_queries(7) as captured:
        response = widget.post(client)
    assert response.status_code == 200
    assert _own_queries(captured) <= 6
    # The portal, the invocation, the viewer's UPDATE (which also asks that the portal is installed).
    with django_assert_max_num_queries(4) as captured:
        response = widget.post(client)
    assert response.status_code == 200
    assert _own_queries(captured) <= 3


def test_open_stores_the_viewers_credential_encrypted(widget, client):
    before = timezone.now()
    widget.post(client, AUTH_EXPIRES="1800")
    credential = Credential.objects.get(portal=widget.portal, user_id=VIEWER_ID)
    assert credential.access_token == widget.tokens["access_token"]
    assert credential.refresh_token == widget.tokens["refresh_token"]
    assert credential.is_admin is False
    assert before + dt.timedelta(seconds=1790) <= credential.expires_at <= timezone.now() + dt.timedelta(seconds=1800)
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM portals_credential WHERE id = %s", [credential.pk])
        raw_access, raw_refresh = cursor.fetchone()
    assert widget.tokens["access_token"] not in raw_access
    assert widget.tokens["refresh_token"] not in raw_refresh


def test_open_by_the_admin_keeps_the_admin_credential(widget, client):
    tokens = widget.fake.issue_tokens(widget.fake_portal, user_id=1)
    response = widget.post(client, tokens=tokens)
    assert response.status_code == 200
    credential = Credential.objects.get(portal=widget.portal, user_id=1)
    assert credential.is_admin is True
    assert credential.access_token == tokens["access_token"]
    assert Credential.objects.filter(portal=widget.portal).count() == 1


def test_open_with_empty_refresh_id_keeps_the_stored_refresh_token(widget, client):
    widget.post(client)
    newer = widget.fake.issue_tokens(widget.fake_portal, user_id=VIEWER_ID)
    response = widget.post(client, tokens=newer, REFRESH_ID="")
    assert response.status_code == 200
    credential = Credential.objects.get(portal=widget.portal, user_id=VIEWER_ID)
    assert credential.access_token == newer["access_token"]
    assert credential.refresh_token == widget.tokens["refresh_token"]


def test_open_writes_one_invocation_without_tokens(widget, client):
    widget.post(client, LANG="de")
    invocation = Invocation.objects.get()
    assert invocation.portal == widget.portal
    assert (invocation.placement, invocation.entity_id, invocation.user_id) == ("TASK_VIEW_TOP_PANEL", "31", VIEWER_ID)
    assert (invocation.outcome, invocation.lang) == ("ok", "de")
    assert invocation.duration_ms >= 0
    row = json.dumps([str(value) for value in Invocation.objects.values_list().get()])
    assert widget.tokens["access_token"] not in row and widget.tokens["refresh_token"] not in row


def test_open_with_legacy_task_id_key_is_200(widget, client):
    response = widget.post(client, PLACEMENT_OPTIONS=json.dumps({"TASK_ID": str(TASK_ID)}))
    assert response.status_code == 200
    assert "Prepare the quarterly report" in response.content.decode()


def test_open_with_numeric_task_id_is_200(widget, client):
    response = widget.post(client, PLACEMENT_OPTIONS=json.dumps({"taskId": TASK_ID}))
    assert response.status_code == 200


def test_missing_task_shows_its_state(widget, client):
    response = widget.post(client, PLACEMENT_OPTIONS=json.dumps({"taskId": "999"}))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-state="not_found"' in body and "Task not found" in body
    assert Invocation.objects.get().detail == "not found or no access"


def test_forbidden_task_shows_the_missing_state(widget, client):
    widget.fake.add_task(widget.fake_portal, 77, title="Board only", visible_to={1})
    response = widget.post(client, PLACEMENT_OPTIONS=json.dumps({"taskId": "77"}))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-state="not_found"' in body and "Board only" not in body


def test_unreachable_bitrix24_is_504_with_its_state(widget, client):
    widget.fake.hang("batch", 3.0)  # past the 2 s read timeout of tests/settings.py
    response = widget.post(client)
    assert response.status_code == 504
    body = response.content.decode()
    assert 'data-state="unreachable"' in body and "could not reach your Bitrix24" in body and "data-reload" in body
    assert "Traceback" not in body
    invocation = Invocation.objects.get()
    assert invocation.outcome == "error" and invocation.user_id is None
    assert response["Content-Security-Policy"].endswith(f"; frame-ancestors 'self' {widget.portal.origin}")


def test_bitrix24_server_error_is_502_with_its_state(widget, client):
    widget.fake.fail_next("batch", status=500, error="INTERNAL_SERVER_ERROR", description="boom")
    response = widget.post(client)
    assert response.status_code == 502
    assert 'data-state="unreachable"' in response.content.decode()
    assert Invocation.objects.get().outcome == "error"


def test_open_for_a_portal_that_needs_reauth_is_200(widget, client):
    Portal.objects.filter(pk=widget.portal.pk).update(status=Portal.Status.NEEDS_REAUTH)
    assert widget.post(client).status_code == 200


# --- localisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lang, expected",
    [
        ("ru", ["Завершить", "Ждёт выполнения", "Высокий", "Исполнитель", '<html lang="ru">']),
        ("de", ["Abschließen", "Wartet auf Ausführung", "Hoch", "Verantwortlich", '<html lang="de">']),
        ("en", ["Complete", "Pending", "High", "Responsible", '<html lang="en">']),
    ],
)
def test_page_is_localised_from_lang(widget, client, lang, expected):
    body = widget.post(client, LANG=lang).content.decode()
    for text in expected:
        assert text in body


@pytest.mark.parametrize(
    "lang, expected",
    [("ua", ["Завершити", '<html lang="uk">']), ("pl", ["Zakończ", '<html lang="pl">'])],
)
def test_ukrainian_and_polish_are_served(widget, client, lang, expected):
    body = widget.post(client, LANG=lang).content.decode()
    for text in expected:
        assert text in body


def test_unknown_lang_falls_back_to_english(widget, client):
    body = widget.post(client, LANG="br", headers={"Accept-Language": "ru"}).content.decode()
    assert '<html lang="en">' in body and "Complete" in body and "Завершить" not in body


def test_missing_task_state_is_localised(widget, client):
    body = widget.post(client, LANG="ru", PLACEMENT_OPTIONS='{"taskId":"999"}').content.decode()
    assert "Задача не найдена" in body


# --- headers --------------------------------------------------------------------------------------


def test_widget_is_framed_by_the_portal_origin_only(widget, client):
    response = widget.post(client)
    assert "X-Frame-Options" not in response
    assert response["Content-Security-Policy"].endswith(f"; frame-ancestors 'self' {widget.portal.origin}")
    assert widget.portal.origin.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("path", ["/healthz", "/admin/login/"])
def test_other_pages_keep_x_frame_options_deny(client, path):
    response = client.get(path)
    assert response["X-Frame-Options"] == "DENY"


def test_action_answer_is_not_framed(widget, client):
    token = widget.action_token(client)
    response = client.post("/placements/action/", {"action": "reload", "token": token})
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"


def test_admin_login_still_requires_csrf(db):
    csrf_client = Client(enforce_csrf_checks=True)
    response = csrf_client.post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403


def test_handler_needs_no_csrf_token(widget):
    csrf_client = Client(enforce_csrf_checks=True)
    query, body = widget.payload()
    from urllib.parse import urlencode

    response = csrf_client.post("/placements/handler/?" + urlencode(query), body)
    assert response.status_code == 200


# --- refused --------------------------------------------------------------------------------------


def test_unknown_portal_is_403(widget, client, caplog):
    response = widget.post(client, member_id="0" * 32)
    assert_refused(response, widget, 403, state="not_installed", logged="not installed on this portal", caplog=caplog)


def test_uninstalled_portal_is_403(widget, client, caplog):
    Portal.objects.filter(pk=widget.portal.pk).update(status=Portal.Status.UNINSTALLED)
    response = widget.post(client)
    assert_refused(response, widget, 403, state="not_installed", logged="not installed on this portal", caplog=caplog)


def test_domain_mismatch_is_403(widget, client, caplog):
    """The posted token goes to the stored endpoint only (one batch), never to the posted DOMAIN."""
    response = widget.post(client, DOMAIN="evil.example.com")
    assert_refused(response, widget, 403, outbound=1, state="refused", logged="posted DOMAIN", caplog=caplog)
    assert widget.fake.count(server="oauth") == 0


def test_domain_in_other_case_with_trailing_dot_is_200(widget, client):
    response = widget.post(client, DOMAIN=widget.fake_portal.domain.upper() + ".")
    assert response.status_code == 200


def test_token_of_another_portal_is_403(widget, client, caplog):
    other = widget.fake.add_portal(domain="portal-2.example.com")
    widget.fake.add_user(other, VIEWER_ID)
    foreign = widget.fake.issue_tokens(other, user_id=VIEWER_ID)
    response = widget.post(client, tokens=foreign)
    assert_refused(response, widget, 403, outbound=1, state="session_expired", logged="posted token", caplog=caplog)
    assert 'data-state="session_expired"' in response.content.decode()


def test_expired_posted_token_is_403_with_reopen_state(widget, client, caplog):
    widget.fake.expire_access_token(widget.tokens["access_token"])
    response = widget.post(client)
    assert_refused(response, widget, 403, outbound=1, state="session_expired", logged="posted token", caplog=caplog)
    assert widget.fake.count("oauth/token") == 0  # the posted token proves the user: no refresh on open


def test_app_unpaid_on_the_portal_shows_the_payment_required_page(widget, client):
    widget.fake.fail_next("batch", status=401, error="PAYMENT_REQUIRED", description="Payment required")
    response = widget.post(client)
    assert_refused(response, widget, 402, outbound=1, text="Ask your Bitrix24 administrator to renew it")
    assert 'data-state="payment_required"' in response.content.decode()
    widget.portal.refresh_from_db()
    assert widget.portal.status == "payment_required"


def test_missing_task_id_is_400(widget, client, caplog):
    response = widget.post(client, PLACEMENT_OPTIONS=json.dumps({"URI": "/x/"}))
    assert_refused(response, widget, 400, state="bad_request", logged="taskId", caplog=caplog)


@pytest.mark.parametrize("options", ['{"taskId":"abc"}', '{"taskId":"-3"}', '{"taskId":"0"}', '{"taskId":"1.5"}',
                                     '{"taskId":true}', '{"taskId":"undefined"}', '{"taskId":{"a":1}}'])
def test_non_numeric_task_id_is_400(widget, client, options):
    assert_refused(widget.post(client, PLACEMENT_OPTIONS=options), widget, 400)


@pytest.mark.parametrize("options", ["undefined", "", None])
def test_placement_options_undefined_or_missing_is_400(widget, client, options, caplog):
    assert_refused(widget.post(client, PLACEMENT_OPTIONS=options), widget, 400, state="bad_request", logged="taskId", caplog=caplog)


@pytest.mark.parametrize("options", ["{not json", "[1,2]", '"31"', "{\"taskId\": \"31\""])
def test_malformed_placement_options_is_400(widget, client, options):
    assert_refused(widget.post(client, PLACEMENT_OPTIONS=options), widget, 400)


def test_oversized_placement_options_is_400(widget, client, caplog):
    options = json.dumps({"taskId": "31", "padding": "x" * 5000})
    assert_refused(widget.post(client, PLACEMENT_OPTIONS=options), widget, 400, state="bad_request", logged="PLACEMENT_OPTIONS is too large", caplog=caplog)


def test_deeply_nested_placement_options_is_400(widget, client, caplog):
    options = json.dumps({"taskId": "31", "a": {"b": {"c": {"d": {"e": 1}}}}})
    assert_refused(widget.post(client, PLACEMENT_OPTIONS=options), widget, 400, state="bad_request", logged="nested", caplog=caplog)


def test_placement_options_nested_hundreds_of_levels_deep_is_400_not_500(widget, client, caplog):
    options = '{"a":' * 650 + "1" + "}" * 650  # under 4 KB, deeper than Python's stack
    assert_refused(widget.post(client, PLACEMENT_OPTIONS=options), widget, 400, state="bad_request", logged="nested", caplog=caplog)


def test_unknown_placement_is_400(widget, client, caplog):
    response = widget.post(client, PLACEMENT="CRM_DEAL_DETAIL_TAB")
    assert_refused(response, widget, 400, state="bad_request", logged="no widget for the placement", caplog=caplog)


def test_missing_auth_id_is_400(widget, client, caplog):
    assert_refused(widget.post(client, AUTH_ID=None), widget, 400, state="bad_request", logged="AUTH_ID", caplog=caplog)


def test_non_numeric_auth_expires_is_400(widget, client, caplog):
    assert_refused(widget.post(client, AUTH_EXPIRES="soon"), widget, 400, state="bad_request", logged="AUTH_EXPIRES", caplog=caplog)


def test_missing_domain_is_400(widget, client, caplog):
    assert_refused(widget.post(client, DOMAIN=None), widget, 400, state="bad_request", logged="DOMAIN", caplog=caplog)


def test_oversized_body_is_400(widget, client, caplog):
    response = widget.post(client, EXTRA="y" * (70 * 1024))
    assert_refused(response, widget, 400, state="too_large", text="too large to come from Bitrix24")


def test_refusal_page_is_localised(widget, client):
    response = widget.post(client, member_id="0" * 32, LANG="de")
    assert "nicht installiert" in response.content.decode()


def test_refusal_page_shows_no_code_or_field_name(widget, client):
    body = widget.post(client, PLACEMENT_OPTIONS="{}", LANG="de").content.decode()
    assert "PLACEMENT_OPTIONS" not in body and "taskId" not in body
    assert "Dieses Widget öffnet sich nur in Bitrix24" in body


def test_get_is_405(client):
    assert client.get("/placements/handler/").status_code == 405


# --- a second placement is one class and one template ---------------------------------------------


def test_a_new_placement_needs_only_a_class_and_a_template(widget, client, settings, tmp_path):
    (tmp_path / "placements").mkdir()
    (tmp_path / "placements" / "task_view_tab.html").write_text(
        '{% extends "placements/task_view_top_panel.html" %}'
        '{% block title %}Tab: {{ entity.title }}{% endblock %}'
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]

    settings.B24_PLACEMENTS = ["TASK_VIEW_TOP_PANEL", "TASK_VIEW_TAB"]

    class TaskViewTab(TaskPlacement):
        code = "TASK_VIEW_TAB"
        title = "Task tab"
        template = "placements/task_view_tab.html"

    registry.register(TaskViewTab)
    try:
        response = widget.post(client, PLACEMENT="TASK_VIEW_TAB")
    finally:
        registry.unregister("TASK_VIEW_TAB")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<title>Tab: Prepare the quarterly report</title>" in body
    assert Invocation.objects.get().placement == "TASK_VIEW_TAB"
    token = action_token_from(body)
    action = client.post("/placements/action/", {"action": "reload", "token": token})
    assert action.status_code == 403  # the throwaway placement is gone: its tokens stop working


def test_the_page_shows_no_template_source(widget, client):
    body = widget.post(client).content.decode()
    assert "{#" not in body and "{%" not in body and "{{" not in body


def test_served_open_logs_verified_facts_and_no_token(widget, client, caplog):
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="bitrix_widget.request"):
        response = widget.post(client)
    assert response.status_code == 200
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "bitrix_widget.request"]
    assert line["placement"] == "TASK_VIEW_TOP_PANEL" and line["user_id"] == str(VIEWER_ID)
    assert line["domain"] == widget.fake_portal.domain and line["outcome"] == "ok"
    assert widget.tokens["access_token"] not in caplog.text
