"""The operators' admin: every page renders for staff with no raw token in it, actions call the
same services as the commands, and the invocation list stays cheap on a big table."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils import timezone

from placements.admin import CappedCountPaginator
from placements.models import Invocation
from portals.models import Credential, Portal

pytestmark = pytest.mark.django_db
HANDLER = "https://app.example.com/placements/handler/"


@pytest.fixture
def two_portals(install_portals):
    installed = install_portals(2)
    now = timezone.now()
    for index, (portal, _) in enumerate(installed):
        Invocation.objects.bulk_create(
            Invocation(portal=portal, placement="TASK_VIEW_TOP_PANEL", entity_id=str(30 + n), user_id=1,
                       lang="en", outcome="ok" if n % 3 else "error", detail="", duration_ms=40,
                       created_at=now - dt.timedelta(hours=n + index))
            for n in range(25)
        )
    return installed


def raw_tokens() -> list[str]:
    tokens = [p.application_token for p in Portal.objects.all()]
    for credential in Credential.objects.all():
        tokens += [credential.access_token, credential.refresh_token]
    tokens = [t for t in tokens if t]
    assert len(tokens) >= 6
    return tokens


def admin_pages(portal: Portal) -> list[str]:
    credential = Credential.objects.filter(portal=portal).first()
    invocation = Invocation.objects.filter(portal=portal).first()
    year = invocation.created_at.year
    return [
        "/admin/",
        "/admin/portals/",
        "/admin/portals/portal/",
        f"/admin/portals/portal/?q={portal.domain}",
        "/admin/portals/portal/?status__exact=active&app_status__exact=L",
        "/admin/portals/portal/?o=7",
        f"/admin/portals/portal/{portal.pk}/change/",
        f"/admin/portals/portal/{portal.pk}/history/",
        "/admin/portals/credential/",
        f"/admin/portals/credential/?portal__id__exact={portal.pk}",
        f"/admin/portals/credential/?q={portal.domain}",
        "/admin/portals/credential/?q=not-a-number",
        f"/admin/portals/credential/{credential.pk}/change/",
        "/admin/placements/",
        "/admin/placements/invocation/",
        "/admin/placements/invocation/?placement=TASK_VIEW_TOP_PANEL&outcome__exact=ok",
        f"/admin/placements/invocation/?portal={portal.domain}",
        f"/admin/placements/invocation/?portal={portal.member_id}&created_at__year={year}",
        "/admin/placements/invocation/?q=31",
        f"/admin/placements/invocation/?q={portal.domain}",
        f"/admin/placements/invocation/{invocation.pk}/change/",
        f"/admin/placements/invocation/{invocation.pk}/delete/",
    ]


def post_action(client, action: str, portals, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(p.pk) for p in portals], **extra}
    return client.post("/admin/portals/portal/", data, follow=True)


def messages_of(response) -> list[str]:
    return [m.message for m in response.context["messages"]]


def test_every_admin_page_renders_for_staff_without_a_raw_token(two_portals, staff_client):
    (portal, _), _ = two_portals
    tokens = raw_tokens()
    pages = {}
    for url in admin_pages(portal):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        pages[url] = response.content.decode()
    for action in ("unbind_widget", "disable"):  # the confirmation pages
        response = post_action(staff_client, action, [portal])
        assert response.status_code == 200 and "Yes, I’m sure" in response.content.decode()
        pages[action] = response.content.decode()
    for url, html in pages.items():
        for token in tokens:
            assert token not in html, f"a raw token is in {url}"
    credential = Credential.objects.get(portal=portal)
    credential_page = pages[f"/admin/portals/credential/{credential.pk}/change/"]
    assert "…" + credential.access_token[-4:] in credential_page
    assert "…" + credential.refresh_token[-4:] in credential_page
    assert "…" + portal.application_token[-4:] in pages[f"/admin/portals/portal/{portal.pk}/change/"]


def test_non_staff_user_is_sent_to_login(two_portals, client, django_user_model):
    user = django_user_model.objects.create_user("someone", password="pw-someone-1")
    client.force_login(user)
    for url in ("/admin/portals/portal/", "/admin/portals/credential/", "/admin/placements/invocation/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    response = post_action(client, "disable", [two_portals[0][0]], confirm="yes")
    assert response.redirect_chain[0][0].startswith("/admin/login/")
    assert Portal.objects.get(pk=two_portals[0][0].pk).status == Portal.Status.ACTIVE


def test_portal_changelist_shows_the_contract_columns(two_portals, staff_client):
    (portal, _), _ = two_portals
    html = staff_client.get("/admin/portals/portal/").content.decode()
    for column in ("Domain", "Member_id", "Status", "Bound", "Plan", "Installed",
                   "Last invocation", "Admin token expires"):
        assert column in html
    for action in ("bind_widget", "unbind_widget", "refresh_tokens_now", "disable", "enable"):
        assert f'value="{action}"' in html
    assert 'value="delete_selected"' not in html


def test_portal_cannot_be_added_deleted_or_have_its_token_edited(two_portals, staff_client):
    (portal, _), _ = two_portals
    assert staff_client.get("/admin/portals/portal/add/").status_code == 403
    assert staff_client.get(f"/admin/portals/portal/{portal.pk}/delete/").status_code == 403
    html = staff_client.get(f"/admin/portals/portal/{portal.pk}/change/").content.decode()
    assert 'name="application_token"' not in html
    before = portal.application_token
    staff_client.post(f"/admin/portals/portal/{portal.pk}/change/",
                      {"application_token": "forged-token-value", "domain": "evil.example.com"})
    portal.refresh_from_db()
    assert portal.application_token == before and portal.domain != "evil.example.com"


def test_credentials_are_read_only(two_portals, staff_client):
    credential = Credential.objects.first()
    assert staff_client.get("/admin/portals/credential/add/").status_code == 403
    assert staff_client.get(f"/admin/portals/credential/{credential.pk}/delete/").status_code == 403
    html = staff_client.get(f"/admin/portals/credential/{credential.pk}/change/").content.decode()
    assert 'name="access_token"' not in html and 'name="refresh_token"' not in html
    assert 'name="_save"' not in html  # view-only: nothing to submit


def test_bind_widget_action_binds_through_the_shared_service(two_portals, staff_client, fake_b24):
    (portal, fake_portal), _ = two_portals
    fake_portal.placements.clear()
    response = post_action(staff_client, "bind_widget", [portal])
    assert response.redirect_chain[-1][1] == 302
    assert [p["handler"] for p in fake_portal.placements] == [HANDLER]
    messages = messages_of(response)
    assert messages == [f"Bind {portal.domain}: bound"]
    response = post_action(staff_client, "bind_widget", [portal])
    assert messages_of(response) == [f"Bind {portal.domain}: already bound"]


def test_unbind_widget_action_asks_first_then_unbinds(two_portals, staff_client, fake_b24):
    (portal, fake_portal), (other, other_fake) = two_portals
    fake_b24.reset_calls()
    post_action(staff_client, "unbind_widget", [portal])
    assert fake_b24.count() == 0  # the confirmation page calls nothing
    response = post_action(staff_client, "unbind_widget", [portal], confirm="yes")
    assert response.redirect_chain[-1][1] == 302
    assert fake_portal.placements == [] and len(other_fake.placements) == 1
    assert messages_of(response) == [f"Unbind {portal.domain}: removed"]


def test_disable_action_keeps_tokens_stops_the_widget_and_enable_undoes_it(two_portals, staff_client):
    (portal, _), _ = two_portals
    credential = Credential.objects.get(portal=portal)
    post_action(staff_client, "disable", [portal], confirm="yes")
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED and portal.status_detail == "Disabled by operator"
    assert Credential.objects.get(pk=credential.pk).refresh_token == credential.refresh_token
    assert portal not in Portal.objects.installed()
    post_action(staff_client, "enable", [portal])
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE and portal.status_detail == ""


def test_enable_leaves_a_portal_bitrix24_uninstalled_alone(two_portals, staff_client):
    (portal, _), _ = two_portals
    Portal.objects.filter(pk=portal.pk).update(status=Portal.Status.UNINSTALLED, status_detail="Uninstalled by Bitrix24")
    response = post_action(staff_client, "enable", [portal])
    assert Portal.objects.get(pk=portal.pk).status == Portal.Status.UNINSTALLED
    assert "not disabled by an operator" in messages_of(response)[0]


def test_refresh_tokens_now_action_refreshes_once(two_portals, staff_client, fake_b24):
    (portal, _), _ = two_portals
    before = Credential.objects.get(portal=portal).refresh_token
    fake_b24.reset_calls()
    response = post_action(staff_client, "refresh_tokens_now", [portal])
    assert fake_b24.count("oauth/token") == 1
    assert Credential.objects.get(portal=portal).refresh_token != before
    message = messages_of(response)[0]
    assert message.startswith(f"Refresh {portal.domain}: refreshed") and before not in message


def test_action_on_a_portal_that_fails_reports_the_error(two_portals, staff_client, fake_b24):
    (portal, fake_portal), (other, _) = two_portals
    fake_b24.uninstall(fake_portal)
    response = post_action(staff_client, "bind_widget", [portal, other])
    messages = {m.message: m.level_tag for m in response.context["messages"]}
    assert messages[f"Bind {other.domain}: already bound"] == "success"
    failed = [text for text, level in messages.items() if level == "error"]
    assert len(failed) == 1 and "invalid_token" in failed[0]


def test_portal_change_page_lists_the_latest_20_invocations(two_portals, staff_client):
    (portal, _), _ = two_portals
    html = staff_client.get(f"/admin/portals/portal/{portal.pk}/change/").content.decode()
    table = html.split("Latest 20 invocations")[1]
    assert table.count("<tr><td>") == 20
    assert f"?portal={portal.member_id}" in html


# --- the invocation list on a big table ---------------------------------------------------------


def test_invocation_admin_is_read_only(two_portals, staff_client):
    invocation = Invocation.objects.first()
    assert staff_client.get("/admin/placements/invocation/add/").status_code == 403
    staff_client.post(f"/admin/placements/invocation/{invocation.pk}/change/", {"outcome": "error", "detail": "x"})
    assert Invocation.objects.get(pk=invocation.pk).detail == invocation.detail


def test_invocation_delete_is_for_superusers_only(two_portals, client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("staff", password="pw-staff-1", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_invocation", "delete_invocation"]))
    client.force_login(staff)
    invocation = Invocation.objects.first()
    assert client.get("/admin/placements/invocation/").status_code == 200
    assert client.get(f"/admin/placements/invocation/{invocation.pk}/delete/").status_code == 403


def test_invocation_filters_by_portal_placement_outcome_and_search(two_portals, staff_client):
    (portal, _), (other, _) = two_portals
    def listed(query):
        return staff_client.get("/admin/placements/invocation/" + query).context["cl"].result_count
    assert listed("") == 50
    assert listed(f"?portal={portal.domain}") == 25
    assert listed(f"?portal={other.member_id}&outcome__exact=error") == 9
    assert listed("?q=31") == 2
    assert listed(f"?q={other.domain}") == 25
    assert listed("?placement=TASK_VIEW_TAB") == 0


@pytest.mark.parametrize("query", ["", "?outcome__exact=ok", "?portal=portal-1.example.com", "?q=31",
                                   "?q=portal-2", "?created_at__year=2020"])
def test_invocation_changelist_stays_under_10_queries(two_portals, staff_client, django_assert_max_num_queries, query):
    with django_assert_max_num_queries(10):
        assert staff_client.get("/admin/placements/invocation/" + query).status_code == 200


def test_portal_changelist_query_count_does_not_grow_with_rows(two_portals, staff_client, django_assert_max_num_queries):
    Portal.objects.bulk_create(
        Portal(member_id=f"m{n:04d}", domain=f"bulk-{n}.example.com", client_endpoint="https://x.example.com/rest/",
               server_endpoint="https://oauth.bitrix.info/rest/")
        for n in range(150)
    )
    with django_assert_max_num_queries(10):
        assert staff_client.get("/admin/portals/portal/").status_code == 200


def test_invocation_count_is_capped_not_counted_in_full(two_portals, staff_client, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "exact_limit", 10)
    response = staff_client.get("/admin/placements/invocation/")
    assert response.context["cl"].result_count == 10
    assert "more than 10 invocations" in response.content.decode()
    response = staff_client.get("/admin/placements/invocation/?q=31")
    assert "2 invocations" in response.content.decode()


def test_invocation_changelist_decrypts_no_token(two_portals, staff_client, monkeypatch):
    from portals import fields

    decrypted = []
    real = fields.decrypt
    monkeypatch.setattr(fields, "decrypt", lambda value: decrypted.append(1) or real(value))
    assert staff_client.get("/admin/placements/invocation/").status_code == 200
    assert decrypted == []
