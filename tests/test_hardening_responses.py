"""Error answers that say what was wrong, and one structured log line per Bitrix24-facing request."""
from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings

from tests.fixtures_hardening import assert_says_why, rejection_reason, row_counts
from tests.helpers import install_payload, install_portal

pytestmark = pytest.mark.django_db
FORM = "application/x-www-form-urlencoded"
LIMIT = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
BITRIX24_PATHS = ["/portals/install/", "/portals/events/", "/placements/handler/", "/placements/action/"]


def padded(size: int) -> str:
    body = "member_id=abc&PAD="
    return body + "x" * (size - len(body))


@pytest.mark.parametrize("path", BITRIX24_PATHS)
def test_body_over_the_size_limit_is_400_too_large(client, path):
    response = client.generic("POST", path, padded(LIMIT + 1), content_type=FORM)
    assert response.status_code == 400
    assert "too large" in rejection_reason(response)
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize("path", BITRIX24_PATHS)
def test_body_at_the_size_limit_is_read_and_answered_on_its_merits(client, path):
    response = client.generic("POST", path, padded(LIMIT), content_type=FORM)
    assert 400 <= response.status_code < 500
    assert "too large" not in rejection_reason(response)
    assert_says_why(response)


def test_install_of_a_real_payload_padded_to_the_limit_succeeds(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="shop.example.com")
    query, body = install_payload(fake_b24, fake_portal, fake_b24.issue_tokens(fake_portal))
    data = urlencode(body) + "&PAD="
    response = client.generic(
        "POST", "/portals/install/?" + urlencode(query), data + "x" * (LIMIT - len(data)), content_type=FORM
    )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/portals/install/", "/portals/events/"])
def test_too_many_fields_is_400_and_says_so(client, path):
    data = "&".join(f"f{i}=1" for i in range(django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = client.generic("POST", path, data, content_type=FORM)
    assert response.status_code == 400 and "too many fields" in rejection_reason(response)


@pytest.mark.parametrize("path", BITRIX24_PATHS)
def test_malformed_multipart_is_400_and_says_so(client, path):
    response = client.generic("POST", path, b"--x\r\nnonsense", content_type="multipart/form-data")
    assert response.status_code == 400
    assert_says_why(response)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", BITRIX24_PATHS)
def test_other_methods_are_405_with_a_reason_and_allow_header(client, path, method):
    response = client.generic(method, path)
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert rejection_reason(response).endswith(f"{method} is not allowed here; use POST.")


def test_json_endpoints_answer_errors_in_json_and_pages_in_html(client):
    events = client.generic("GET", "/portals/events/")
    assert events["Content-Type"] == "application/json" and events.json()["status"] == "error"
    install = client.generic("GET", "/portals/install/")
    assert install["Content-Type"].startswith("text/html")
    # The framed pages' refusals may be shown inside the portal's iframe (they name no portal).
    assert "X-Frame-Options" not in install and install["Content-Security-Policy"] == "frame-ancestors 'self' *"


def test_unknown_address_is_404_with_a_reason(client):
    page = client.get("/nothing-here/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    assert page["X-Frame-Options"] == "DENY"
    assert_says_why(page)
    api = client.get("/nothing-here/", headers={"Accept": "application/json"})
    assert api.status_code == 404 and api.json()["message"] == "Nothing is served at this address."


def test_an_uncaught_error_is_500_with_a_short_message_and_no_detail(client, fake_b24, monkeypatch):
    from portals import views

    def broken(**kwargs):
        raise RuntimeError("a bug with a secret inside: AUTH_ID=abc")

    monkeypatch.setattr(views, "portal_install", broken)
    client.raise_request_exception = False
    fake_portal = fake_b24.add_portal(domain="shop.example.com")
    query, body = install_payload(fake_b24, fake_portal, fake_b24.issue_tokens(fake_portal))
    response = client.generic("POST", "/portals/install/?" + urlencode(query), urlencode(body), content_type=FORM)
    assert response.status_code == 500
    assert "Something went wrong on our side" in rejection_reason(response)
    assert b"secret" not in response.content and b"Traceback" not in response.content


# --- the request log line -------------------------------------------------------------------------


def request_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "bitrix_widget.request"]


def test_each_bitrix24_facing_request_logs_one_json_line_with_portal_and_outcome(client, fake_b24, caplog):
    caplog.set_level(logging.INFO, logger="bitrix_widget.request")
    portal, fake_portal = install_portal(client, fake_b24)
    (line,) = request_lines(caplog)
    assert line["path"] == "/portals/install/" and line["status"] == 200 and line["outcome"] == "ok"
    assert line["member_id"] == portal.member_id and line["domain"] == portal.domain
    assert line["method"] == "POST" and isinstance(line["duration_ms"], int)
    credential = portal.admin_credential()
    for secret in (credential.access_token, credential.refresh_token, portal.application_token):
        assert secret not in caplog.text


def test_rejections_are_logged_with_their_outcome_and_no_token(client, caplog):
    caplog.set_level(logging.INFO, logger="bitrix_widget.request")
    client.generic("GET", "/placements/handler/")
    client.generic(
        "POST", "/portals/events/",
        urlencode({"event": "ONAPPINSTALL", "auth[member_id]": "m1", "auth[access_token]": "tok" * 10}),
        content_type=FORM,
    )
    client.generic("POST", "/placements/action/", padded(LIMIT + 1), content_type=FORM)
    lines = request_lines(caplog)
    assert [(line["path"], line["status"], line["outcome"]) for line in lines] == [
        ("/placements/handler/", 405, "rejected"),
        ("/portals/events/", 400, "rejected"),
        ("/placements/action/", 400, "rejected"),
    ]
    assert lines[1]["member_id"] == "m1"
    assert "tok" * 10 not in caplog.text


def test_requests_that_are_not_bitrix24_facing_are_not_logged(client, caplog):
    caplog.set_level(logging.INFO, logger="bitrix_widget.request")
    client.get("/healthz")
    client.get("/admin/login/")
    assert request_lines(caplog) == []


def test_a_hostile_posted_member_id_stays_on_one_line(client, caplog):
    caplog.set_level(logging.INFO, logger="bitrix_widget.request")
    client.generic("POST", "/portals/install/", urlencode({"member_id": "x\n2026 INFO forged line\u2028"}),
                   content_type=FORM)
    (record,) = [r for r in caplog.records if r.name == "bitrix_widget.request"]
    assert "\n" not in record.getMessage() and "\u2028" not in record.getMessage()
