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
from tests.test_client import resolving  # noqa: F401
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
    assert response.headers["Content-Security-Policy"].endswith(f"; frame-ancestors 'self' {portal.origin}")


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


# --- hardening: what an attacker posts -----------------------------------------------------------

UNICODE_DIGITS = ["²", "①", "٣", "12³"]  # str.isdigit() says yes; int() refuses or reads them


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_unicode_digits_in_task_id_are_400(client, widget, digits):  # noqa: F811
    import json

    response = widget.post(client, PLACEMENT_OPTIONS=json.dumps({"taskId": digits}))
    assert response.status_code == 400
    assert 'data-state="bad_request"' in response.content.decode()  # the reason itself is logged (issue 13)
    assert widget.fake.count(server="portal") == 0


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_unicode_digits_in_auth_expires_are_400(client, fake_b24, widget, digits):  # noqa: F811
    assert widget.post(client, AUTH_EXPIRES=digits).status_code == 400
    tokens = fake_b24.issue_tokens(widget.fake_portal, user_id=1)
    response = post_install(client, fake_b24, widget.fake_portal, tokens, AUTH_EXPIRES=digits)
    assert response.status_code == 400 and "number of seconds" in response.content.decode()


@pytest.mark.parametrize("field", ["expires_in", "expires"])
@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_unicode_digits_in_event_auth_are_400(client, fake_b24, installed, field, digits):
    portal, fake_portal = installed
    before = snapshot(portal)
    tokens = fake_b24.issue_tokens(fake_portal, user_id=1)
    response = post_event(client, event_body("ONAPPUPDATE", fake_b24, fake_portal, tokens, **{field: digits}))
    assert response.status_code == 400
    assert snapshot(portal) == before


@pytest.mark.parametrize("path", ["/placements/handler/", "/portals/install/", "/portals/app/", "/portals/events/",
                                  "/placements/action/"])
def test_a_file_part_is_refused_before_it_is_read(client, fake_b24, path, monkeypatch):
    """Before: a 30 MB file part was read (into a temporary file) and the request accepted."""
    from django.core.files import uploadhandler
    from django.core.files.uploadedfile import SimpleUploadedFile

    received = []
    for handler in (uploadhandler.MemoryFileUploadHandler, uploadhandler.TemporaryFileUploadHandler):
        real = handler.receive_data_chunk
        monkeypatch.setattr(handler, "receive_data_chunk",
                            lambda self, data, start, real=real: received.append(len(data)) or real(self, data, start))
    upload = SimpleUploadedFile("big.bin", b"\0" * (30 * 1024 * 1024), content_type="application/octet-stream")
    response = client.post(path + "?DOMAIN=acme.example.com&LANG=en", {"member_id": "a" * 32, "upload": upload})
    assert response.status_code == 400, response.content[:300]
    # The widget's pages name a state, not the technical reason (issue 13); others say it.
    assert ('bad_request' if path.startswith("/placements/") else "Files are not accepted") in response.content.decode()
    assert received == []  # not one chunk of the file reached a handler
    assert fake_b24.calls == []


@pytest.mark.parametrize("uri", [" /\n/evil.example.com", "/\\evil.example.com", "\t//evil.example.com/x",
                                 "/\r\n/evil.example.com", "https://evil.example.com/"])
def test_open_task_never_points_to_another_host(client, widget, uri):  # noqa: F811
    """Before: " /\\n/evil.example.com" passed the "relative path" check and "Open task" pointed away."""
    import json
    import re

    response = widget.post(client, PLACEMENT_OPTIONS=json.dumps({"taskId": str(TASK_ID), "URI": uri}))
    assert response.status_code == 200
    hrefs = re.findall(r'href="([^"]+)"', response.content.decode())
    assert hrefs and all("evil" not in href for href in hrefs)
    # The page no longer links the card it is in (issue 13); the task's URL stays on the portal.
    from placements.tasks import task_view

    task = {"task": {"id": str(TASK_ID), "status": "2"}}
    assert task_view(task, origin=widget.portal.origin, uri=uri, viewer_id=VIEWER_ID)["url"] == (
        f"{widget.portal.origin}/company/personal/user/{VIEWER_ID}/tasks/task/view/{TASK_ID}/"
    )


ADMIN_PROBES = [
    ("portals", "portal", "application_token__regex"),
    ("portals", "credential", "access_token__regex"),
    ("portals", "credential", "refresh_token__startswith"),
    ("placements", "invocation", "detail__regex"),
    ("events", "event", "error__iregex"),
]


@pytest.mark.parametrize("app, model, lookup", ADMIN_PROBES)
def test_the_admin_refuses_lookups_it_does_not_declare(admin_client, installed, app, model, lookup):
    """Before: ?access_token__regex=<catastrophic pattern> ran over every row (a worker tied up)."""
    response = admin_client.get(f"/admin/{app}/{model}/", {lookup: "(a+)+$"})
    assert response.status_code == 400


def test_every_filter_link_the_admin_offers_still_works(admin_client, installed):
    import re

    from django.contrib import admin as django_admin

    portal, _ = installed
    ours = [model for model in django_admin.site._registry if model._meta.app_label in ("portals", "placements", "events")]
    assert ours
    checked = 0
    for model in ours:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        page = admin_client.get(url)
        assert page.status_code == 200, url
        sidebar = page.content.decode().partition('id="changelist-filter"')[2]
        for query in set(re.findall(r'href="(\?[^"]*)"', sidebar)):
            answer = admin_client.get(url + query.replace("&amp;", "&"))
            assert answer.status_code == 200, (url, query)
            checked += 1
    assert checked >= 10
    # The Credential list a portal's page links to.
    assert admin_client.get("/admin/portals/credential/", {"portal__id__exact": portal.pk}).status_code == 200


def test_a_widget_open_on_a_portal_stored_with_a_private_resolving_name_sends_nothing(
    settings, resolving, client, widget  # noqa: F811
):
    """Before: the address check was syntax only, so localhost.localdomain got the viewer's token."""
    answers, connects = resolving
    answers["localhost.localdomain"] = ["127.0.0.1"]
    Portal.objects.filter(pk=widget.portal.pk).update(client_endpoint="https://localhost.localdomain/rest/")
    settings.B24_ALLOW_PRIVATE_ENDPOINTS = False
    connects.clear()
    widget.fake.reset_calls()
    response = widget.post(client)
    assert response.status_code == 502 and 'data-state="unreachable"' in response.content.decode()
    assert connects == [] and widget.fake.count(server="portal") == 0


def test_the_widget_page_has_a_full_policy_and_every_tag_carries_its_nonce(client, widget):  # noqa: F811
    """Before: the CSP was frame-ancestors only, so markup slipped into the page could run."""
    import re

    response = widget.post(client)
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    nonce = re.search(r"'nonce-([^']+)'", policy["script-src"]).group(1)
    assert policy["default-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert policy["form-action"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["script-src"] == f"api.bitrix24.com 'nonce-{nonce}'"
    assert policy["style-src"] == f"'nonce-{nonce}'"
    assert widget.portal.origin in policy["img-src"].split()
    html = response.content.decode()
    tags = re.findall(r"<(?:script|style)\b[^>]*>", html)
    assert tags and all(f'nonce="{nonce}"' in tag for tag in tags)
    assert " style=" not in html  # no inline style attribute (the policy refuses them)
    assert widget.post(client)["Content-Security-Policy"] != response["Content-Security-Policy"]  # a new nonce


def test_a_genuine_uninstall_asks_the_oauth_server_once_however_many_users(client, fake_b24, widget):  # noqa: F811
    """NOT_INSTALLED is the OAuth server speaking of the portal, so one answer is enough; a
    dead chain (invalid_grant) only says that user's chain is gone, and the next one is asked."""
    for user_id in range(10, 16):
        fake_b24.add_user(widget.fake_portal, user_id)
        assert widget.post(client, tokens=fake_b24.issue_tokens(widget.fake_portal, user_id=user_id)).status_code == 200
    fake_b24.uninstall(widget.fake_portal)
    fake_b24.reset_calls()
    response = post_event(client, uninstall_body(fake_b24, widget.fake_portal))
    assert response.status_code == 200 and response.json()["result"] == "uninstalled"
    assert fake_b24.count(server="oauth") == 1


def test_every_framed_template_marks_its_script_and_style_with_the_nonce():
    """A <script> or <style> without the nonce is refused by the page policy (the page breaks),
    and so is a style="" attribute: every template a portal frames must follow it."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "templates"
    templates = sorted([*root.glob("placements/*.html"), *root.glob("portals/*.html")])
    assert templates
    for template in templates:
        source = template.read_text()
        for tag in re.findall(r"<(?:script|style)\b[^>]*>", source):
            assert 'nonce="{{ csp_nonce }}"' in tag, (template.name, tag)
        assert not re.search(r"\sstyle=", source), template.name
