"""POST /portals/app/: the app's own page. Everyone learns what the app does; an administrator
also sees the portal's state and may repair the installation; opening it writes nothing."""
from urllib.parse import urlencode

import pytest

from placements.models import Invocation
from portals import operations
from portals.models import Credential, Portal
from tests.helpers import install_payload, install_portal

pytestmark = pytest.mark.django_db

USER_ID = 7


@pytest.fixture
def installed(client, fake_b24):
    portal, fake_portal = install_portal(client, fake_b24, domain="acme.example.com")
    fake_b24.add_user(fake_portal, USER_ID, name="Olga", last_name="User", admin=False)
    fake_b24.reset_calls()
    return portal, fake_portal


def post_app(client, fake, fake_portal, *, user_id=1, tokens=None, **overrides):
    tokens = tokens or fake.issue_tokens(fake_portal, user_id=user_id)
    query, body = install_payload(fake, fake_portal, tokens, **overrides)
    return client.post("/portals/app/?" + urlencode(query), body)


def state(portal):
    portal.refresh_from_db()
    return (portal.status, portal.application_token, portal.updated_at,
            sorted(Credential.objects.values_list("user_id", "is_admin", "refreshed_at")))


def test_a_user_sees_what_the_app_does_and_nothing_of_the_portal(client, fake_b24, installed):
    portal, fake_portal = installed
    before = state(portal)
    response = post_app(client, fake_b24, fake_portal, user_id=USER_ID)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-state="user"' in html and "Task widget" in html and "In every task card" in html
    assert 'id="portal-state"' not in html and 'id="repair"' not in html
    assert "AUTH_ID" not in html  # a user's page carries no token back
    assert state(portal) == before
    assert [c.method for c in fake_b24.calls if c.server == "portal" and not c.in_batch] == ["batch"]


def test_an_admin_sees_the_portals_state_and_a_repair_button(client, fake_b24, installed):
    portal, fake_portal = installed
    before = state(portal)
    response = post_app(client, fake_b24, fake_portal)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-state="admin"' in html and 'id="portal-state"' in html
    assert 'data-status="active"' in html
    assert 'data-binding="placement_TASK_VIEW_TOP_PANEL" data-bound="1"' in html
    assert 'data-binding="event_ONAPPUNINSTALL" data-bound="1"' in html
    assert 'id="repair"' in html and 'name="repair" value="1"' in html
    assert state(portal) == before  # opening the page writes nothing
    assert response.headers["Content-Security-Policy"].endswith(f"frame-ancestors 'self' {portal.origin}")


def test_an_admin_sees_what_is_missing_and_the_repair_binds_it_again(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_portal.placements.clear()
    tokens = fake_b24.issue_tokens(fake_portal, user_id=1)
    html = post_app(client, fake_b24, fake_portal, tokens=tokens).content.decode()
    assert 'data-binding="placement_TASK_VIEW_TOP_PANEL" data-bound="0"' in html
    response = post_app(client, fake_b24, fake_portal, tokens=tokens, repair="1")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="repair-result" data-ok="1"' in html
    assert 'data-binding="placement_TASK_VIEW_TOP_PANEL" data-bound="1"' in html
    assert [p["placement"] for p in fake_portal.placements] == ["TASK_VIEW_TOP_PANEL"]


def test_repair_brings_back_a_portal_whose_installer_chain_died(client, fake_b24, installed):
    portal, fake_portal = installed
    Portal.objects.filter(pk=portal.pk).update(status=Portal.Status.NEEDS_REAUTH, status_detail="dead chain")
    assert post_app(client, fake_b24, fake_portal, repair="1").status_code == 200
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE
    assert operations.portal_admin_credential(portal).access_token


def test_a_users_repair_is_403_and_changes_nothing(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_portal.placements.clear()
    before = state(portal)
    response = post_app(client, fake_b24, fake_portal, user_id=USER_ID, repair="1",
                        APPLICATION_TOKEN="attackerchosen0123456789")
    assert response.status_code == 403
    assert "administrator" in response.content.decode()
    assert state(portal) == before and fake_portal.placements == []


@pytest.mark.parametrize("lang, text", [
    ("ru", "Где его найти"), ("de", "Wo Sie es finden"), ("ua", "Where to find it"),
])
def test_the_page_speaks_the_users_language(client, fake_b24, installed, lang, text):
    response = post_app(client, fake_b24, installed[1], user_id=USER_ID, LANG=lang)
    assert response.status_code == 200 and text in response.content.decode()


def test_the_admins_page_is_translated_too(client, fake_b24, installed):
    html = post_app(client, fake_b24, installed[1], LANG="ru").content.decode()
    assert "Восстановить установку" in html and "зарегистрировано" in html


def test_unknown_portal_is_403(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="never.example.com")
    response = post_app(client, fake_b24, fake_portal)
    assert response.status_code == 403 and 'data-state="refused"' in response.content.decode()
    assert fake_b24.count() == 0


def test_an_operator_disabled_portal_says_so(client, fake_b24, installed):
    portal, fake_portal = installed
    operations.portal_disable(portal=portal)
    response = post_app(client, fake_b24, fake_portal, LANG="de")
    assert response.status_code == 403
    assert "deaktiviert" in response.content.decode()


def test_a_forged_domain_is_403(client, fake_b24, installed):
    response = post_app(client, fake_b24, installed[1], DOMAIN="evil.example.com")
    assert response.status_code == 403


def test_a_refused_token_is_403(client, fake_b24, installed):
    tokens = {"access_token": "f" * 64, "refresh_token": "e" * 64}
    response = post_app(client, fake_b24, installed[1], tokens=tokens)
    assert response.status_code == 403


@pytest.mark.parametrize("field, value", [
    ("member_id", None), ("AUTH_ID", "not a token!"), ("PLACEMENT", "TASK_VIEW_TAB"), ("AUTH_EXPIRES", "soon"),
])
def test_malformed_input_is_400(client, fake_b24, installed, field, value):
    assert post_app(client, fake_b24, installed[1], **{field: value}).status_code == 400
    assert Invocation.objects.count() == 0


def test_get_is_405(client):
    assert client.get("/portals/app/").status_code == 405
