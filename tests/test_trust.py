"""Issue 10: the installer is proven, never assumed.

Each test is an attack an ordinary portal user can make (they see an AUTH_ID and the
APPLICATION_TOKEN in every widget frame and may open the app's pages), and what it changes now:
nothing. Every one of them failed on the main branch before the fix.
"""
import pytest

from placements import operations as placement_operations
from placements.models import Invocation
from portals import operations
from portals.bitrix import client as bitrix_client
from portals.models import Credential, Portal
from portals.services import portal_uninstall
from tests.fixtures_placements import TASK_ID, VIEWER_ID, widget  # noqa: F401
from tests.helpers import install_portal, post_install
from tests.test_portals_events import event_body, post_event, uninstall_body

pytestmark = pytest.mark.django_db

USER_ID = 7  # an ordinary (non-admin) user of the portal


@pytest.fixture
def installed(client, fake_b24):
    portal, fake_portal = install_portal(client, fake_b24, domain="acme.example.com")
    fake_b24.add_user(fake_portal, USER_ID, name="Olga", last_name="User", admin=False)
    Invocation.objects.create(portal=portal, placement="TASK_VIEW_TOP_PANEL", outcome="ok")
    return portal, fake_portal


def snapshot(portal: Portal) -> tuple:
    portal.refresh_from_db()
    admin = portal.admin_credential()
    return (portal.status, portal.status_detail, portal.application_token, admin.user_id, admin.access_token,
            admin.refresh_token, Credential.objects.filter(portal=portal, is_admin=True).count())


def assert_commands_still_work(portal: Portal) -> None:
    listed = placement_operations.portal_list_placements(portal=portal)
    assert listed.ok and listed.status == "1 bound", listed.detail
    bound = placement_operations.portal_bind_placement(
        portal=portal, placement="TASK_VIEW_TOP_PANEL", handler="https://app.example.com/placements/handler/"
    )
    assert bound.ok and bound.status == "already bound", bound.detail


def forged_uninstall_is_refused(client, fake_b24, fake_portal, portal) -> None:
    """The follow-up: the leaked token and CLEAN=1. The admin's chain still works, so 403."""
    response = post_event(client, uninstall_body(fake_b24, fake_portal, clean="1"))
    assert response.status_code == 403, response.content
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE
    assert Invocation.objects.filter(portal=portal).count() == 1


# --- a user on the install page -------------------------------------------------------------------


def test_non_admin_on_the_install_page_gets_a_200_page_and_stores_nothing(client, fake_b24, installed):
    portal, fake_portal = installed
    before = snapshot(portal)
    user_tokens = fake_b24.issue_tokens(fake_portal, user_id=USER_ID)
    fake_b24.reset_calls()
    response = post_install(
        client, fake_b24, fake_portal, user_tokens, REFRESH_ID="junk", AUTH_EXPIRES="0",
        APPLICATION_TOKEN="attackerchosen0123456789",
    )
    assert response.status_code == 200
    assert b'data-state="admin_required"' in response.content
    assert b"installFinish" not in response.content
    assert snapshot(portal) == before  # no admin credential of theirs, same application token
    assert not Credential.objects.filter(portal=portal, user_id=USER_ID).exists()
    # Asked the portal who they are, and bound nothing under their token.
    assert [c.method for c in fake_b24.calls if c.server == "portal"] == ["profile"]
    assert_commands_still_work(portal)
    forged_uninstall_is_refused(client, fake_b24, fake_portal, portal)


def test_non_admin_on_the_install_page_of_a_new_portal_writes_nothing(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="fresh.example.com")
    fake_b24.add_user(fake_portal, USER_ID, admin=False)
    response = post_install(client, fake_b24, fake_portal, fake_b24.issue_tokens(fake_portal, user_id=USER_ID))
    assert response.status_code == 200 and b'data-state="admin_required"' in response.content
    assert Portal.objects.count() == 0 and Credential.objects.count() == 0
    assert fake_portal.placements == [] and fake_portal.events == []


def test_non_admin_install_page_may_be_framed_by_the_verified_portal_only(client, fake_b24, installed):
    portal, fake_portal = installed
    response = post_install(client, fake_b24, fake_portal, fake_b24.issue_tokens(fake_portal, user_id=USER_ID))
    assert response.headers["Content-Security-Policy"] == f"frame-ancestors 'self' {portal.origin}"


def test_a_token_whose_profile_names_another_user_is_403(client, fake_b24, installed, monkeypatch):
    """The OAuth server and the portal must agree on whose token it is."""
    portal, fake_portal = installed
    before = snapshot(portal)
    tokens = fake_b24.issue_tokens(fake_portal, user_id=1)
    real_call = bitrix_client.call

    def lying_profile(**kwargs):
        answer = real_call(**kwargs)
        if kwargs["method"] == "profile":
            answer["result"]["ID"] = "99"
        return answer

    monkeypatch.setattr(bitrix_client, "call", lying_profile)
    assert post_install(client, fake_b24, fake_portal, tokens).status_code == 403
    assert snapshot(portal) == before


# --- a user's ONAPPINSTALL / ONAPPUPDATE -------------------------------------------------------------


@pytest.mark.parametrize("event", ["ONAPPINSTALL", "ONAPPUPDATE"])
def test_non_admin_lifecycle_event_changes_nothing(client, fake_b24, installed, event):
    portal, fake_portal = installed
    before = snapshot(portal)
    user_tokens = fake_b24.issue_tokens(fake_portal, user_id=USER_ID)
    body = event_body(event, fake_b24, fake_portal, user_tokens, application_token="attackerchosen0123456789",
                      user_id=str(USER_ID))
    response = post_event(client, body)
    assert response.status_code == 403
    assert "administrator" in response.json()["message"]
    assert snapshot(portal) == before
    assert not Credential.objects.filter(portal=portal, user_id=USER_ID).exists()
    assert_commands_still_work(portal)
    forged_uninstall_is_refused(client, fake_b24, fake_portal, portal)


def test_after_a_non_admin_onappupdate_the_genuine_uninstall_still_goes_through(client, fake_b24, installed):
    """Before: the user's ONAPPUPDATE replaced the application token, Bitrix24's real
    ONAPPUNINSTALL then got 403 and the portal stayed active forever."""
    portal, fake_portal = installed
    user_tokens = fake_b24.issue_tokens(fake_portal, user_id=USER_ID)
    post_event(client, event_body("ONAPPUPDATE", fake_b24, fake_portal, user_tokens,
                                  application_token="attackerchosen0123456789"))
    fake_b24.uninstall(fake_portal)
    response = post_event(client, uninstall_body(fake_b24, fake_portal))
    assert response.status_code == 200, response.content
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED


# --- Disable stands ----------------------------------------------------------------------------------


def test_operator_disable_survives_a_users_install_post(client, fake_b24, installed):
    portal, fake_portal = installed
    operations.portal_disable(portal=portal)
    post_install(client, fake_b24, fake_portal, fake_b24.issue_tokens(fake_portal, user_id=USER_ID))
    portal.refresh_from_db()
    assert portal.disabled_by_operator


def test_operator_disable_survives_an_admins_install_post_until_enable(client, fake_b24, installed):
    portal, fake_portal = installed
    operations.portal_disable(portal=portal)
    response = post_install(client, fake_b24, fake_portal, fake_b24.issue_tokens(fake_portal, user_id=1))
    assert response.status_code == 200 and b'data-state="disabled"' in response.content
    portal.refresh_from_db()
    assert portal.disabled_by_operator
    assert operations.portal_enable(portal=portal).status == "enabled"
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE


# --- uninstall: every credential, dead chains, the application token ---------------------------------


def kill_admin_chain(fake_b24, portal: Portal) -> None:
    """The installer left: their refresh chain is spent elsewhere, and the portal is marked so."""
    admin = portal.admin_credential()
    fake_b24.expire_access_token(admin.access_token)
    for token in list(fake_b24._refresh.values()):
        if token.member_id == portal.member_id and token.user_id == admin.user_id:
            token.revoked = True
    Credential.objects.filter(pk=admin.pk).update(expires_at="2000-01-01T00:00:00Z")
    outcome = operations.portal_refresh_tokens(portal=portal)
    assert not outcome.ok
    portal.refresh_from_db()
    assert portal.status == Portal.Status.NEEDS_REAUTH


def test_dead_chain_forged_uninstall_purges_nothing(client, fake_b24, installed):
    """Before: with the installer's chain dead the confirmation had nothing to try, so the leaked
    token alone uninstalled the portal and CLEAN=1 purged its log."""
    portal, fake_portal = installed
    kill_admin_chain(fake_b24, portal)
    response = post_event(client, uninstall_body(fake_b24, fake_portal, clean="1"))
    assert response.status_code == 200
    assert "unconfirmed" in response.json()["result"]
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED
    assert Invocation.objects.filter(portal=portal).count() == 1  # CLEAN ignored


def test_uninstall_is_refused_while_any_users_credential_still_works(client, fake_b24, widget):  # noqa: F811
    """The installer's chain is dead, but a viewer's token still opens the app: not uninstalled."""
    portal, fake_portal = widget.portal, widget.fake_portal
    assert widget.post(client).status_code == 200  # the viewer's credential is stored
    kill_admin_chain(fake_b24, portal)
    response = post_event(client, uninstall_body(fake_b24, fake_portal, clean="1"))
    assert response.status_code == 403
    portal.refresh_from_db()
    assert portal.status == Portal.Status.NEEDS_REAUTH


def test_genuine_uninstall_with_many_credentials_is_confirmed(client, fake_b24, widget):  # noqa: F811
    assert widget.post(client).status_code == 200
    fake_b24.uninstall(widget.fake_portal)
    response = post_event(client, uninstall_body(fake_b24, widget.fake_portal, clean="1"))
    assert response.status_code == 200 and response.json()["result"] == "uninstalled"
    assert not Credential.objects.exclude(access_token="", refresh_token="").exists()
    assert Invocation.objects.count() == 0


def test_reinstall_without_application_token_then_genuine_uninstall(client, fake_b24, installed):
    """Before: the stale application token of the first install stayed, Bitrix24's real uninstall
    with the new token got 403 and the portal stayed active."""
    portal, fake_portal = installed
    fake_b24.uninstall(fake_portal)
    assert post_event(client, uninstall_body(fake_b24, fake_portal)).status_code == 200
    portal.refresh_from_db()
    assert portal.application_token == ""
    fake_b24.reinstall(fake_portal)  # a new application token, which this older portal never posts
    tokens = fake_b24.issue_tokens(fake_portal, user_id=1)
    assert post_install(client, fake_b24, fake_portal, tokens, APPLICATION_TOKEN=None).status_code == 200
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE and portal.application_token == ""
    fake_b24.uninstall(fake_portal)
    response = post_event(client, uninstall_body(fake_b24, fake_portal))
    assert response.status_code == 200 and response.json()["result"] == "uninstalled"
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED


# --- nothing written after the uninstall -------------------------------------------------------------


def uninstall_during_the_widget_batch(monkeypatch, fake_b24, fake_portal):
    """Bitrix24 uninstalls the app while a widget open's batch is in flight."""
    real_batch = bitrix_client.batch

    def batch_then_uninstall(**kwargs):
        answer = real_batch(**kwargs)
        fake_b24.uninstall(fake_portal)
        portal_uninstall(member_id=fake_portal.member_id, application_token=fake_portal.application_token,
                         clean=True)
        return answer

    monkeypatch.setattr(bitrix_client, "batch", batch_then_uninstall)


@pytest.mark.parametrize("first_open", [True, False], ids=["first-open", "returning-viewer"])
def test_an_open_racing_the_uninstall_stores_no_token(client, fake_b24, widget, monkeypatch, first_open):  # noqa: F811
    if not first_open:
        assert widget.post(client).status_code == 200
    uninstall_during_the_widget_batch(monkeypatch, fake_b24, widget.fake_portal)
    response = widget.post(client)
    assert response.status_code == 403
    assert not Credential.objects.exclude(access_token="", refresh_token="").exists()
    assert Invocation.objects.count() == 0
    widget.portal.refresh_from_db()
    assert widget.portal.status == Portal.Status.UNINSTALLED


def test_uninstall_blanks_the_stored_application_token(client, fake_b24, installed):
    portal, fake_portal = installed
    fake_b24.uninstall(fake_portal)
    post_event(client, uninstall_body(fake_b24, fake_portal))
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED and portal.application_token == ""


def test_non_admin_page_is_in_the_users_language(client, fake_b24, installed):
    portal, fake_portal = installed
    tokens = fake_b24.issue_tokens(fake_portal, user_id=USER_ID)
    response = post_install(client, fake_b24, fake_portal, tokens, LANG="de")
    assert response.status_code == 200 and b'lang="de"' in response.content


def test_non_admin_install_page_in_russian(client, fake_b24, installed):
    portal, fake_portal = installed
    tokens = fake_b24.issue_tokens(fake_portal, user_id=USER_ID)
    html = post_install(client, fake_b24, fake_portal, tokens, LANG="ru").content.decode()
    assert "Установку должен завершить администратор" in html and "Ничего не изменено." in html
