"""POST /portals/install/: verified with the OAuth server before anything is written."""
import datetime as dt
import json
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.utils import timezone

from portals.models import Credential, Portal
from tests.helpers import ONLINE_EVENTS_BOUND, install_payload, install_portal, post_install

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh(fake_b24):
    """A portal known to the fake but not installed here yet, with the admin's tokens."""
    fake_portal = fake_b24.add_portal(domain="shop.example.com")
    return fake_portal, fake_b24.issue_tokens(fake_portal, user_id=1)


def nothing_written():
    return Portal.objects.count() == 0 and Credential.objects.count() == 0


def test_install_stores_portal_credential_and_binds_handlers(client, fake_b24, fresh):
    fake_portal, tokens = fresh
    response = post_install(client, fake_b24, fake_portal, tokens)

    assert response.status_code == 200
    assert b"BX24.installFinish()" in response.content
    portal = Portal.objects.get(member_id=fake_portal.member_id)
    assert portal.domain == "shop.example.com"
    assert portal.client_endpoint == fake_portal.client_endpoint  # from the OAuth server
    assert portal.status == Portal.Status.ACTIVE
    assert portal.app_status == "L"
    assert portal.application_token == fake_portal.application_token
    credential = portal.credentials.get()
    assert credential.is_admin and credential.user_id == 1
    assert credential.access_token == tokens["access_token"]
    assert credential.refresh_token == tokens["refresh_token"]
    assert [p["placement"] for p in fake_portal.placements] == ["TASK_VIEW_TOP_PANEL"]
    assert fake_portal.placements[0]["handler"] == "https://app.example.com/placements/handler/"
    assert sorted(e["event"] for e in fake_portal.events if not e["offline"]) == ONLINE_EVENTS_BOUND
    # One verification call to the OAuth server; the portal's profile (the admin proven), then
    # the bind batch: nothing else.
    assert fake_b24.count(server="oauth") == 1
    assert [call.method for call in fake_b24.calls if call.server == "portal" and not call.in_batch] == [
        "profile", "batch"
    ]


def test_install_page_may_be_framed_only_by_the_portal(client, fake_b24, fresh):
    response = post_install(client, fake_b24, *fresh)
    assert "X-Frame-Options" not in response.headers
    origin = fresh[0].client_endpoint.split("/portal")[0].split("/shop")[0]
    assert response.headers["Content-Security-Policy"].endswith(f"; frame-ancestors 'self' {origin}")


def test_tokens_are_encrypted_at_rest(client, fake_b24, fresh):
    fake_portal, tokens = fresh
    post_install(client, fake_b24, fake_portal, tokens)
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM portals_credential")
        raw_access, raw_refresh = cursor.fetchone()
        cursor.execute("SELECT application_token FROM portals_portal")
        (raw_application,) = cursor.fetchone()
    assert tokens["access_token"] not in raw_access
    assert tokens["refresh_token"] not in raw_refresh
    assert fake_portal.application_token not in raw_application
    assert raw_access.startswith("gAAAA")  # a Fernet token


def test_reinstall_is_idempotent_and_keeps_one_row(client, fake_b24, fresh):
    fake_portal, tokens = fresh
    assert post_install(client, fake_b24, fake_portal, tokens).status_code == 200
    again = fake_b24.issue_tokens(fake_portal, user_id=1)
    response = post_install(client, fake_b24, fake_portal, again)
    assert response.status_code == 200  # "Handler already binded" counts as success
    assert Portal.objects.count() == 1 and Credential.objects.count() == 1
    assert Credential.objects.get().access_token == again["access_token"]
    assert len(fake_portal.placements) == 1


def test_empty_refresh_id_never_overwrites_the_stored_refresh_token(client, fake_b24, fresh):
    fake_portal, tokens = fresh
    post_install(client, fake_b24, fake_portal, tokens)
    again = fake_b24.issue_tokens(fake_portal, user_id=1)
    assert post_install(client, fake_b24, fake_portal, again, REFRESH_ID="").status_code == 200
    assert Credential.objects.get().refresh_token == tokens["refresh_token"]


def test_install_without_the_optional_newer_fields_works(client, fake_b24, fresh):
    """Older portals send no SERVER_ENDPOINT, APPLICATION_TOKEN or APPLICATION_SCOPE."""
    fake_portal, tokens = fresh
    response = post_install(
        client, fake_b24, fake_portal, tokens,
        SERVER_ENDPOINT=None, APPLICATION_TOKEN=None, APPLICATION_SCOPE=None, PLACEMENT_OPTIONS=None,
    )
    assert response.status_code == 200
    assert Portal.objects.get().application_token == ""


def test_forged_member_id_is_403_and_writes_nothing(client, fake_b24, fresh):
    fake_portal, tokens = fresh
    victim = fake_b24.add_portal(domain="victim.example.com")
    response = post_install(client, fake_b24, fake_portal, tokens, member_id=victim.member_id)
    assert response.status_code == 403
    assert b"another portal" in response.content
    assert nothing_written()


def test_token_of_another_app_is_403_and_writes_nothing(client, fake_b24, fresh, settings):
    settings.B24_CLIENT_ID = "app.someone-else.0001"  # the token's client_id is no longer ours
    response = post_install(client, fake_b24, *fresh)
    assert response.status_code == 403
    assert b"another application" in response.content
    assert nothing_written()


def test_domain_mismatch_is_403_and_writes_nothing(client, fake_b24, fresh):
    response = post_install(client, fake_b24, *fresh, DOMAIN="other.example.com")
    assert response.status_code == 403
    assert nothing_written()


def test_untrusted_server_endpoint_is_403_before_any_outbound_call(client, fake_b24, fresh):
    """Our client secret and the user's token must never reach a host a request names."""
    response = post_install(client, fake_b24, *fresh, SERVER_ENDPOINT="https://evil.example.net/rest/")
    assert response.status_code == 403
    assert b"does not trust" in response.content
    assert fake_b24.calls == []
    assert nothing_written()


def test_invalid_auth_id_is_403_and_writes_nothing(client, fake_b24, fresh):
    fake_portal, tokens = fresh
    response = post_install(client, fake_b24, fake_portal, tokens, AUTH_ID="f" * 64)
    assert response.status_code == 403
    assert b"refused the token" in response.content
    assert nothing_written()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("AUTH_ID", None, b"AUTH_ID is missing"),
        ("member_id", None, b"member_id is missing"),
        ("DOMAIN", "", b"DOMAIN is missing"),
        ("AUTH_ID", "not a token!", b"AUTH_ID is not a valid token"),
        ("member_id", "../../etc", b"member_id is not a valid portal id"),
        ("DOMAIN", "evil.example.com/path", b"DOMAIN is not a valid domain name"),
        ("AUTH_EXPIRES", "soon", b"AUTH_EXPIRES must be a number"),
        ("PLACEMENT", "TASK_VIEW_TOP_PANEL", b"PLACEMENT must be DEFAULT"),
        ("PLACEMENT_OPTIONS", "{not json", b"PLACEMENT_OPTIONS is not valid JSON"),
        ("PLACEMENT_OPTIONS", json.dumps({"x": "y" * 5000}), b"PLACEMENT_OPTIONS is too large"),
        ("PLACEMENT_OPTIONS", "[1, 2]", b"PLACEMENT_OPTIONS must be a JSON object"),
        ("PLACEMENT_OPTIONS", '{"a": {"b": {"c": {"d": {}}}}}', b"PLACEMENT_OPTIONS is nested too deeply"),
    ],
)
def test_missing_or_malformed_field_is_400_and_writes_nothing(client, fake_b24, fresh, field, value, message):
    response = post_install(client, fake_b24, *fresh, **{field: value})
    assert response.status_code == 400
    assert message in response.content
    assert fake_b24.calls == []
    assert nothing_written()


def test_get_is_405(client, fake_b24):
    assert client.get("/portals/install/").status_code == 405


def test_oauth_server_down_is_502_and_writes_nothing(client, fake_b24, fresh):
    fake_b24.oauth_down = True
    response = post_install(client, fake_b24, *fresh)
    assert response.status_code == 502
    assert b"open the app again" in response.content
    assert nothing_written()


def test_oauth_server_timeout_is_504(client, fake_b24, fresh):
    fake_b24.hang("oauth/app.info", 3)
    response = post_install(client, fake_b24, *fresh)
    assert response.status_code == 504
    assert nothing_written()


def test_binding_refused_is_502_and_does_not_finish_the_install(client, fake_b24):
    """Without the task scope Bitrix24 does not know TASK_VIEW_TOP_PANEL: say so, don't finish."""
    fake_portal = fake_b24.add_portal(domain="noscope.example.com", scope="placement")
    tokens = fake_b24.issue_tokens(fake_portal)
    response = post_install(client, fake_b24, fake_portal, tokens)
    assert response.status_code == 502
    assert b"installFinish" not in response.content
    assert b"scopes" in response.content
    # The verified portal is kept, so opening the app again retries the binding.
    assert Portal.objects.filter(member_id=fake_portal.member_id).exists()


def test_missing_client_credentials_answer_a_clear_error(client, fake_b24, fresh, settings):
    settings.B24_CLIENT_ID = ""
    settings.B24_CLIENT_SECRET = ""
    response = post_install(client, fake_b24, *fresh)
    assert response.status_code == 503
    assert b"not configured yet" in response.content
    assert fake_b24.calls == []
    assert nothing_written()


def test_query_string_and_body_are_both_read(client, fake_b24, fresh):
    fake_portal, tokens = fresh
    query, body = install_payload(fake_b24, fake_portal, tokens)
    assert "DOMAIN" not in body and "DOMAIN" in query
    response = client.post("/portals/install/?" + urlencode(query), body)
    assert response.status_code == 200


def test_install_portal_helper_installs(client, fake_b24):
    portal, fake_portal = install_portal(client, fake_b24, domain="helper.example.com")
    assert portal.domain == "helper.example.com"


def test_domain_with_trailing_dot_and_capitals_is_the_same_portal(client, fake_b24, fresh):
    response = post_install(client, fake_b24, *fresh, DOMAIN="Shop.Example.com.")
    assert response.status_code == 200
    assert Portal.objects.get().domain == "shop.example.com"


def test_oauth_server_naming_an_unacceptable_rest_address_is_403_and_writes_nothing(client, fake_b24, fresh, settings):
    """Outside development a loopback http endpoint is refused even from the OAuth server."""
    settings.B24_ALLOW_PRIVATE_ENDPOINTS = False
    response = post_install(client, fake_b24, *fresh)
    assert response.status_code == 403
    assert b"REST address is not acceptable" in response.content
    assert fake_b24.count(server="portal") == 0
    assert nothing_written()


def test_posted_auth_expires_0_is_not_believed_over_the_oauth_servers_expiry(client, fake_b24):
    """The OAuth server's app.info says when the verified token expires: a posted AUTH_EXPIRES=0
    must not send the install's bind to a refresh (which, with a spent refresh token, would
    refuse the install after writing it; the fuzz test found that)."""
    fake_portal = fake_b24.add_portal(domain="zero.example.com")
    tokens = fake_b24.issue_tokens(fake_portal, user_id=1, expires_in=86400)
    fake_b24.reset_calls()
    response = post_install(client, fake_b24, fake_portal, tokens, AUTH_EXPIRES="0", REFRESH_ID=None)
    assert response.status_code == 200, response.content.decode()[:300]
    assert fake_b24.count("oauth/token") == 0
    credential = Portal.objects.get(member_id=fake_portal.member_id).credentials.get()
    assert credential.expires_at > timezone.now() + dt.timedelta(hours=23)
