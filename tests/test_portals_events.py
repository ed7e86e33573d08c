"""POST /portals/events/: ONAPPINSTALL, ONAPPUPDATE, ONAPPUNINSTALL and what each may change."""
import pytest

from placements.models import Invocation
from portals.models import Credential, Portal
from tests.helpers import ONLINE_EVENTS_BOUND, install_portal

pytestmark = pytest.mark.django_db


def event_body(event, fake, fake_portal, tokens=None, *, data=None, **auth_overrides):
    """The form fields Bitrix24's queue posts (protocol 1.4, 2.1)."""
    auth = {
        "domain": fake_portal.domain,
        "server_endpoint": fake.oauth_url + "/rest/",
        "client_endpoint": fake_portal.client_endpoint,
        "member_id": fake_portal.member_id,
        "application_token": fake_portal.application_token,
        "status": "L",
    }
    if tokens:
        auth.update(
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            expires=str(tokens["expires"]),
            expires_in="3600",
            scope="task,placement",
            user_id="1",
        )
    for key, value in auth_overrides.items():
        if value is None:
            auth.pop(key, None)
        else:
            auth[key] = value
    body = {"event": event, "ts": "1766047124"}
    body.update({f"auth[{k}]": v for k, v in auth.items()})
    body.update({f"data[{k}]": v for k, v in (data or {}).items()})
    return body


def post_event(client, body):
    return client.post("/portals/events/", body)


@pytest.fixture
def installed(client, fake_b24):
    return install_portal(client, fake_b24, domain="acme.example.com")


# --- ONAPPINSTALL ---------------------------------------------------------------------------------


def test_onappinstall_stores_portal_tokens_and_application_token(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="noui.example.com")
    tokens = fake_b24.issue_tokens(fake_portal)
    response = post_event(client, event_body("ONAPPINSTALL", fake_b24, fake_portal, tokens, data={"VERSION": "1"}))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "success"
    portal = Portal.objects.get(member_id=fake_portal.member_id)
    assert portal.application_token == fake_portal.application_token
    assert portal.credentials.get().refresh_token == tokens["refresh_token"]


def test_onappinstall_with_forged_member_id_is_403_and_writes_nothing(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="a.example.com")
    victim = fake_b24.add_portal(domain="b.example.com")
    tokens = fake_b24.issue_tokens(fake_portal)
    body = event_body("ONAPPINSTALL", fake_b24, fake_portal, tokens, member_id=victim.member_id)
    response = post_event(client, body)
    assert response.status_code == 403
    assert "another portal" in response.json()["message"]
    assert Portal.objects.count() == 0


def test_onappinstall_with_untrusted_server_endpoint_is_403_and_sends_nothing(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="a.example.com")
    tokens = fake_b24.issue_tokens(fake_portal)
    body = event_body("ONAPPINSTALL", fake_b24, fake_portal, tokens, server_endpoint="https://evil.example.net/rest/")
    assert post_event(client, body).status_code == 403
    assert fake_b24.calls == []
    assert Portal.objects.count() == 0


def test_onappinstall_without_access_token_is_400(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="a.example.com")
    response = post_event(client, event_body("ONAPPINSTALL", fake_b24, fake_portal))
    assert response.status_code == 400
    assert "access_token is missing" in response.json()["message"]


# --- ONAPPUPDATE ----------------------------------------------------------------------------------


def test_onappupdate_stores_the_new_application_token_and_rebinds(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_portal.events.clear()  # an update removes the app's event handlers (protocol 2.2)
    new_token = fake_b24.new_application_token(fake_portal)
    tokens = fake_b24.issue_tokens(fake_portal)
    body = event_body("ONAPPUPDATE", fake_b24, fake_portal, tokens, application_token=new_token,
                      data={"VERSION": "2", "PREVIOUS_VERSION": "1"})
    response = post_event(client, body)
    assert response.status_code == 200, response.content
    portal.refresh_from_db()
    assert portal.application_token == new_token
    assert sorted(e["event"] for e in fake_portal.events if not e["offline"]) == ONLINE_EVENTS_BOUND


def test_onappupdate_with_a_token_of_another_app_is_403(client, fake_b24, installed, settings):
    portal, fake_portal = installed
    tokens = fake_b24.issue_tokens(fake_portal)
    settings.B24_CLIENT_ID = "app.other.0001"
    body = event_body("ONAPPUPDATE", fake_b24, fake_portal, tokens, application_token="c" * 32)
    assert post_event(client, body).status_code == 403
    portal.refresh_from_db()
    assert portal.application_token == fake_portal.application_token


# --- ONAPPUNINSTALL -------------------------------------------------------------------------------


def uninstall_body(fake, fake_portal, *, clean="0", **overrides):
    return event_body("ONAPPUNINSTALL", fake, fake_portal, data={"LANGUAGE_ID": "en", "CLEAN": clean}, **overrides)


def test_onappuninstall_soft_disables_and_blanks_tokens(client, fake_b24, installed):
    portal, fake_portal = installed
    Invocation.objects.create(portal=portal, placement="TASK_VIEW_TOP_PANEL", outcome="ok")
    fake_b24.uninstall(fake_portal)
    response = post_event(client, uninstall_body(fake_b24, fake_portal))
    assert response.status_code == 200, response.content
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED and portal.uninstalled_at
    credential = portal.credentials.get()
    assert credential.access_token == "" and credential.refresh_token == ""
    assert Invocation.objects.count() == 1  # CLEAN=0 keeps the log


def test_onappuninstall_with_clean_purges_invocations(client, fake_b24, installed):
    portal, fake_portal = installed
    Invocation.objects.create(portal=portal, placement="TASK_VIEW_TOP_PANEL", outcome="ok")
    fake_b24.uninstall(fake_portal)
    assert post_event(client, uninstall_body(fake_b24, fake_portal, clean="1")).status_code == 200
    assert Invocation.objects.count() == 0


def test_onappuninstall_with_wrong_application_token_is_403(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.uninstall(fake_portal)
    response = post_event(client, uninstall_body(fake_b24, fake_portal, application_token="0" * 32))
    assert response.status_code == 403
    assert "application token does not match" in response.json()["message"]
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE and portal.credentials.get().access_token


def test_onappuninstall_without_application_token_is_403(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.uninstall(fake_portal)
    response = post_event(client, uninstall_body(fake_b24, fake_portal, application_token=None))
    assert response.status_code == 403
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE


def test_onappuninstall_forged_with_the_leaked_token_while_installed_is_403(client, fake_b24, installed):
    """Every widget user can read APPLICATION_TOKEN; the still-working admin token exposes the forgery."""
    portal, fake_portal = installed
    response = post_event(client, uninstall_body(fake_b24, fake_portal))
    assert response.status_code == 403
    assert "still installed" in response.json()["message"]
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE and portal.credentials.get().refresh_token


def test_onappuninstall_when_oauth_server_is_down_marks_needs_reauth_and_keeps_tokens(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.oauth_down = True
    response = post_event(client, uninstall_body(fake_b24, fake_portal))
    assert response.status_code == 200  # Bitrix24 never redelivers an event
    portal.refresh_from_db()
    assert portal.status == Portal.Status.NEEDS_REAUTH
    assert "could not be reached" in portal.status_detail
    assert portal.credentials.get().refresh_token


def test_onappuninstall_with_expired_admin_token_confirms_through_the_refresh(client, fake_b24, installed):
    portal, fake_portal = installed
    Credential.objects.update(expires_at="2000-01-01T00:00:00Z")
    fake_b24.uninstall(fake_portal)
    assert post_event(client, uninstall_body(fake_b24, fake_portal)).status_code == 200
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED


def test_onappuninstall_of_portal_without_application_token_uses_the_confirmation_alone(client, fake_b24, installed):
    portal, fake_portal = installed
    Portal.objects.update(application_token="")
    fake_b24.uninstall(fake_portal)
    assert post_event(client, uninstall_body(fake_b24, fake_portal, application_token=None)).status_code == 200
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED


def test_repeated_uninstall_answers_200_and_changes_nothing(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.uninstall(fake_portal)
    assert post_event(client, uninstall_body(fake_b24, fake_portal)).status_code == 200
    portal.refresh_from_db()
    first = (portal.uninstalled_at, portal.updated_at)
    fake_b24.reset_calls()
    response = post_event(client, uninstall_body(fake_b24, fake_portal))
    assert response.status_code == 200 and response.json()["result"] == "already uninstalled"
    portal.refresh_from_db()
    assert (portal.uninstalled_at, portal.updated_at) == first
    assert fake_b24.calls == []


def test_onappuninstall_of_unknown_portal_is_403(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="never.example.com")
    assert post_event(client, uninstall_body(fake_b24, fake_portal)).status_code == 403


def test_onappuninstall_with_untrusted_server_endpoint_is_403_before_any_call(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.reset_calls()
    body = uninstall_body(fake_b24, fake_portal, server_endpoint="https://evil.example.net/rest/")
    assert post_event(client, body).status_code == 403
    assert fake_b24.calls == []


# --- malformed ------------------------------------------------------------------------------------


def test_unknown_event_is_400(client, fake_b24, installed):
    portal, fake_portal = installed
    response = post_event(client, event_body("ONCRMDEALADD", fake_b24, fake_portal))
    assert response.status_code == 400
    assert "Unknown event" in response.json()["message"]


def test_missing_event_is_400(client, fake_b24):
    response = post_event(client, {"auth[member_id]": "abc"})
    assert response.status_code == 400
    assert response.json()["message"] == "event is missing."


def test_missing_auth_is_400(client, fake_b24):
    response = post_event(client, {"event": "ONAPPUNINSTALL"})
    assert response.status_code == 400
    assert "auth" in response.json()["message"]


def test_too_deeply_nested_keys_are_400(client, fake_b24):
    response = post_event(client, {"event": "ONAPPINSTALL", "auth[a][b][c][d][e]": "x"})
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["message"]


def test_conflicting_keys_are_400(client, fake_b24):
    response = post_event(client, {"event": "ONAPPINSTALL", "auth": "x", "auth[member_id]": "y"})
    assert response.status_code == 400


def test_get_is_405(client):
    assert client.get("/portals/events/").status_code == 405


def test_real_uninstall_of_an_operator_disabled_portal_still_blanks_tokens(client, fake_b24, installed):
    from portals.operations import portal_disable

    portal, fake_portal = installed
    portal_disable(portal=portal)
    fake_b24.uninstall(fake_portal)
    response = post_event(client, uninstall_body(fake_b24, fake_portal))
    assert response.status_code == 200 and response.json()["result"] == "uninstalled"
    assert portal.credentials.get().refresh_token == ""


def test_needs_reauth_from_an_unreachable_oauth_server_clears_on_the_next_admin_refresh(client, fake_b24, installed):
    from portals.tokens import credential_access_token

    portal, fake_portal = installed
    fake_b24.oauth_down = True
    post_event(client, uninstall_body(fake_b24, fake_portal))  # unconfirmed: needs_reauth
    fake_b24.oauth_down = False
    Credential.objects.update(expires_at="2000-01-01T00:00:00Z")
    credential_access_token(credential=Portal.objects.get().admin_credential())
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE and portal.status_detail == ""
