"""Subscription states (protocol 15): a trial install, a trial that ends, the payment doorbell,
and odd app.info answers, all against the fake Bitrix24 over HTTP."""
from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from placements.models import Invocation
from portals.models import Credential, Portal
from portals.subscription import Subscription, subscription_from_app_info
from tests.fixtures_operators import run_command
from tests.fixtures_placements import VIEWER_ID, action_token_from, widget_setup
from tests.helpers import install_portal
from tests.test_portals_events import event_body, post_event

pytestmark = pytest.mark.django_db(transaction=True)  # command worker threads read what tests wrote


def payment_event(fake, fake_portal, **data):
    """ONAPPPAYMENT as Bitrix24 posts it: auth holds no token at all (protocol 15.3)."""
    body = event_body(
        "ONAPPPAYMENT", fake, fake_portal, application_token=None, status=None,
        data={"CODE": "bitrix.widget", "VERSION": "1", "LANGUAGE_ID": "en", **data},
    )
    return body


def trial_portal(client, fake, *, domain="trial.example.com", days=14):
    fake_portal = fake.add_portal(domain=domain, app_status="T")
    fake.set_subscription(fake_portal, days=days, license="de_pro100")
    tokens = fake.issue_tokens(fake_portal, user_id=1)
    from tests.helpers import post_install

    response = post_install(client, fake, fake_portal, tokens)
    assert response.status_code == 200, response.content.decode()[:300]
    return Portal.objects.get(member_id=fake_portal.member_id), fake_portal


def tokens_of(portal):
    return sorted((c.user_id, c.access_token, c.refresh_token) for c in Credential.objects.filter(portal=portal))


# --- trial install --------------------------------------------------------------------------------


def test_trial_install_stores_status_days_and_licence(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24, days=14)
    assert portal.status == Portal.Status.ACTIVE
    assert portal.app_status == "T"
    assert portal.days_left == 14
    assert portal.payment_expired is False
    assert portal.license == "de_pro100"
    assert portal.subscription_checked_at is not None
    # app.info rides in the install's bind batch: no request of its own (profile, then the batch).
    assert fake_b24.count(server="portal") == 2
    assert fake_b24.count("app.info", server="portal", include_batch=True) == 1


def test_posted_status_is_not_believed_at_install(client, fake_b24):
    from tests.helpers import post_install

    fake_portal = fake_b24.add_portal(domain="free.example.com", app_status="F")
    tokens = fake_b24.issue_tokens(fake_portal, user_id=1)
    assert post_install(client, fake_b24, fake_portal, tokens, status="P").status_code == 200
    assert Portal.objects.get(member_id=fake_portal.member_id).app_status == "F"


# --- trial ended ----------------------------------------------------------------------------------


def test_trial_ended_at_refresh_marks_payment_required_and_keeps_tokens(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24)
    Credential.objects.filter(portal=portal).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    before = tokens_of(portal)
    fake_b24.require_payment(fake_portal)
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--portal", portal.domain, "--placement", "TASK_VIEW_TAB")
    assert run.code == 0, run.out + run.err  # reported, not a failure
    assert f"skipped {portal.domain} [{portal.member_id}] payment required" in run.out
    assert "1 payment required" in run.lines[-1]
    portal.refresh_from_db()
    assert portal.status == Portal.Status.PAYMENT_REQUIRED
    assert "PAYMENT_REQUIRED" in portal.status_detail
    assert tokens_of(portal) == before  # nothing blanked, the refresh token not spent
    assert fake_b24.count("oauth/token") == 1 and fake_b24.count(server="portal") == 0


def test_trial_ended_at_rest_marks_payment_required(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24)
    fake_b24.require_payment(fake_portal)
    run = run_command("bind_placement", "--portal", portal.member_id, "--placement", "TASK_VIEW_TAB")
    assert run.code == 0 and "payment required" in run.out
    assert Portal.objects.get(pk=portal.pk).status == Portal.Status.PAYMENT_REQUIRED
    assert Credential.objects.filter(portal=portal).exclude(access_token="").exists()


def test_commands_skip_unpaid_portals_with_a_line_and_go_on(client, fake_b24):
    unpaid, unpaid_fake = trial_portal(client, fake_b24, domain="unpaid.example.com")
    paid, paid_fake = install_portal(client, fake_b24, domain="paid.example.com")
    Portal.objects.filter(pk=unpaid.pk).update(status=Portal.Status.PAYMENT_REQUIRED)
    fake_b24.reset_calls()
    run = run_command("bind_placement", "--all", "--placement", "TASK_VIEW_TAB")
    assert run.code == 0
    assert f"skipped {unpaid.domain} [{unpaid.member_id}] skipped: payment required; not called" in run.out
    assert f"ok      {paid.domain}" in run.out
    assert fake_b24.count(domain=unpaid_fake.domain) == 0
    assert fake_b24.count("placement.bind", domain=paid_fake.domain) == 1


def test_refresh_tokens_reports_payment_required_without_failing(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24)
    fake_b24.require_payment(fake_portal)
    run = run_command("refresh_tokens", "--portal", portal.domain)
    assert run.code == 0 and "payment required" in run.out
    assert Portal.objects.get(pk=portal.pk).status == Portal.Status.PAYMENT_REQUIRED


@pytest.mark.parametrize("lang, text", [
    ("en", "Ask your Bitrix24 administrator to renew it."),
    ("ru", "Попросите администратора вашего Битрикс24 продлить её."),
    ("de", "Bitten Sie Ihren Bitrix24-Administrator, es zu verlängern."),
])
def test_widget_of_an_unpaid_portal_asks_for_a_renewal_in_the_users_language(client, fake_b24, lang, text):
    widget = widget_setup(fake_b24, client)
    Portal.objects.filter(pk=widget.portal.pk).update(status=Portal.Status.PAYMENT_REQUIRED)
    response = widget.post(client, LANG=lang)
    body = response.content.decode()
    assert response.status_code == 402
    assert 'data-state="payment_required"' in body and 'id="b24-widget"' in body
    assert text in body
    assert fake_b24.count() == 0  # Bitrix24 would refuse: nothing is called
    assert Invocation.objects.count() == 0


def test_widget_open_answered_payment_required_marks_the_portal(client, fake_b24):
    widget = widget_setup(fake_b24, client)
    fake_b24.require_payment(widget.fake_portal)
    response = widget.post(client, LANG="de")
    assert response.status_code == 402 and 'data-state="payment_required"' in response.content.decode()
    assert Portal.objects.get(pk=widget.portal.pk).status == Portal.Status.PAYMENT_REQUIRED


def test_widget_action_after_the_trial_ended_says_so(client, fake_b24):
    widget = widget_setup(fake_b24, client)
    token = action_token_from(widget.post(client, LANG="ru").content.decode())
    fake_b24.require_payment(widget.fake_portal)
    response = client.post("/placements/action/", {"action": "reload", "token": token})
    assert response.status_code == 402
    assert "продлить" in response.json()["message"]  # in the language the widget was opened in
    assert Portal.objects.get(pk=widget.portal.pk).status == Portal.Status.PAYMENT_REQUIRED
    assert Credential.objects.filter(portal=widget.portal, user_id=VIEWER_ID).exclude(access_token="").exists()


# --- ONAPPPAYMENT: a doorbell ---------------------------------------------------------------------


def test_payment_doorbell_brings_the_portal_back_with_status_p(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24)
    fake_b24.require_payment(fake_portal)
    run_command("bind_placement", "--portal", portal.domain)  # learns PAYMENT_REQUIRED
    assert Portal.objects.get(pk=portal.pk).status == Portal.Status.PAYMENT_REQUIRED
    Portal.objects.filter(pk=portal.pk).update(subscription_checked_at=None)
    fake_b24.pay(fake_portal, status="P", days=365)
    fake_b24.reset_calls()
    response = post_event(client, payment_event(fake_b24, fake_portal, STATUS="P", PAYMENT_EXPIRED="N", DAYS="365"))
    assert response.status_code == 200, response.content
    portal.refresh_from_db()
    assert portal.status == Portal.Status.ACTIVE and portal.status_detail == ""
    assert (portal.app_status, portal.days_left, portal.payment_expired) == ("P", 365, False)
    assert fake_b24.count("app.info", server="portal") == 1  # read with our stored installer token
    call = next(c for c in fake_b24.calls if c.method == "app.info")
    assert call.params["auth"] == Credential.objects.get(portal=portal, is_admin=True).access_token


def test_forged_payment_event_changes_nothing(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24, days=3)
    Portal.objects.filter(pk=portal.pk).update(subscription_checked_at=None)
    before = Portal.objects.filter(pk=portal.pk).values("status", "app_status", "days_left", "payment_expired").get()
    response = post_event(client, payment_event(fake_b24, fake_portal, STATUS="P", PAYMENT_EXPIRED="N", DAYS="999"))
    assert response.status_code == 200
    after = Portal.objects.filter(pk=portal.pk).values("status", "app_status", "days_left", "payment_expired").get()
    assert after == before == {"status": "active", "app_status": "T", "days_left": 3, "payment_expired": False}


def test_forged_payment_event_for_an_unpaid_portal_keeps_it_unpaid(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24)
    fake_b24.require_payment(fake_portal)
    Portal.objects.filter(pk=portal.pk).update(status=Portal.Status.PAYMENT_REQUIRED, subscription_checked_at=None)
    response = post_event(client, payment_event(fake_b24, fake_portal, STATUS="P", PAYMENT_EXPIRED="N", DAYS="30"))
    assert response.status_code == 200
    portal.refresh_from_db()
    assert portal.status == Portal.Status.PAYMENT_REQUIRED and portal.app_status == "T"


def test_a_flood_of_payment_doorbells_reads_app_info_once(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24)
    Portal.objects.filter(pk=portal.pk).update(subscription_checked_at=None)
    fake_b24.reset_calls()
    for _ in range(5):
        assert post_event(client, payment_event(fake_b24, fake_portal)).status_code == 200
    assert fake_b24.count(server="portal") == 1


def test_payment_event_for_an_unknown_portal_is_403_and_calls_nothing(client, fake_b24):
    fake_portal = fake_b24.add_portal(domain="stranger.example.com")
    response = post_event(client, payment_event(fake_b24, fake_portal))
    assert response.status_code == 403
    assert fake_b24.count() == 0 and not Portal.objects.exists()


@pytest.mark.parametrize("change, reason", [
    ({"auth[member_id]": None}, "member_id"),
    ({"auth[member_id]": "not a member id!"}, "member_id"),
    ({"auth[domain]": "exa mple..com/x"}, "domain"),
    ({"data": "PAID"}, "data"),
])
def test_malformed_payment_event_is_400_with_the_reason(client, fake_b24, change, reason):
    portal, fake_portal = trial_portal(client, fake_b24)
    body = payment_event(fake_b24, fake_portal)
    for key, value in change.items():
        if key == "data":
            body = {k: v for k, v in body.items() if not k.startswith("data[")}
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    fake_b24.reset_calls()
    response = post_event(client, body)
    assert response.status_code == 400, response.content
    assert reason in json.dumps(response.json()).lower()
    assert fake_b24.count() == 0


def test_payment_event_naming_a_foreign_oauth_server_is_403_before_any_call(client, fake_b24):
    portal, fake_portal = trial_portal(client, fake_b24)
    body = payment_event(fake_b24, fake_portal)
    body["auth[server_endpoint]"] = "https://oauth.attacker.example/rest/"
    fake_b24.reset_calls()
    assert post_event(client, body).status_code == 403
    assert fake_b24.count() == 0


# --- odd app.info answers -------------------------------------------------------------------------


@pytest.mark.parametrize("info, expected", [
    ({"STATUS": "T", "PAYMENT_EXPIRED": "N", "DAYS": 12, "LICENSE": "en_std"}, Subscription("T", False, 12, "en_std")),
    ({"STATUS": "S", "PAYMENT_EXPIRED": "Y", "DAYS": -3}, Subscription("S", True, -3, None)),
    ({"STATUS": "P", "DAYS": "12"}, Subscription("P", None, 12, None)),  # scalars as strings, as Bitrix24 does
    ({"STATUS": "P"}, Subscription("P", None, None, None)),  # no DAYS
    ({"STATUS": "Z", "DAYS": "soon", "PAYMENT_EXPIRED": "maybe"}, Subscription()),
    ({"STATUS": 5, "DAYS": True, "PAYMENT_EXPIRED": [], "LICENSE": {"a": 1}}, Subscription()),
    ({"STATUS": "", "DAYS": "1e9", "LICENSE": "x\x00y"}, Subscription()),
    ({"install": {"status": "t", "payment_expired": "N", "days": 7}}, Subscription("T", False, 7, None)),
    ([], Subscription()),
    (None, Subscription()),
])
def test_app_info_fields_odd_or_missing_are_unknown(info, expected):
    assert subscription_from_app_info(info) == expected


@pytest.mark.parametrize("extra, days, status", [
    ({"DAYS": None}, None, "T"),
    ({"DAYS": "in a week"}, None, "T"),
    ({"STATUS": "Q"}, 14, ""),
    ({"STATUS": None, "PAYMENT_EXPIRED": None, "LICENSE": None}, 14, ""),
])
def test_install_with_an_odd_app_info_stores_unknowns_and_never_500s(client, fake_b24, extra, days, status):
    fake_portal = fake_b24.add_portal(domain="odd.example.com", app_status="T")
    fake_b24.set_subscription(fake_portal, days=14)
    fake_portal.app_info_extra.update(extra)
    if extra.get("STATUS") == "Q":
        fake_portal.app_status = "Q"  # the OAuth server's answer too
    tokens = fake_b24.issue_tokens(fake_portal, user_id=1)
    from tests.helpers import post_install

    response = post_install(client, fake_b24, fake_portal, tokens)
    assert response.status_code == 200
    portal = Portal.objects.get(member_id=fake_portal.member_id)
    assert (portal.days_left, portal.app_status) == (days, status)
    if "PAYMENT_EXPIRED" in extra:
        assert portal.payment_expired is None and portal.license == ""


def test_widget_page_for_an_unpaid_portal_is_plain_html(client, fake_b24):
    """A sanity check of the page Bitrix24 frames: a form POST that any portal user can make."""
    widget = widget_setup(fake_b24, client)
    Portal.objects.filter(pk=widget.portal.pk).update(status=Portal.Status.PAYMENT_REQUIRED)
    query, body = widget.payload(LANG="en")
    response = client.post("/placements/handler/?" + urlencode(query), body)
    assert response["Content-Type"].startswith("text/html")
    assert "The subscription has ended" in response.content.decode()
