"""CRM_DEAL_DETAIL_TAB end to end against the fake Bitrix24: the proof that a placement is a class
and a template (ARCHITECTURE.md, "Placements beyond tasks"; protocol 16)."""
from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from placements.models import Invocation
from tests.fixtures_operators import run_command
from tests.fixtures_placements import action_token_from
from tests.helpers import install_portal

DEAL_ID = 410
VIEWER_ID = 2
RESPONSIBLE_ID = 5
HANDLER = "https://app.example.com/placements/handler/"
BOTH = ["TASK_VIEW_TOP_PANEL", "CRM_DEAL_DETAIL_TAB"]


class DealTab:
    def __init__(self, fake, portal, fake_portal, tokens):
        self.fake, self.portal, self.fake_portal, self.tokens = fake, portal, fake_portal, tokens

    def payload(self, *, lang="en", deal_id=DEAL_ID, **overrides):
        query = {"DOMAIN": self.fake_portal.domain, "PROTOCOL": "1", "LANG": lang, "APP_SID": "c" * 32}
        body = {
            "AUTH_ID": self.tokens["access_token"], "AUTH_EXPIRES": "3600",
            "REFRESH_ID": self.tokens["refresh_token"], "SERVER_ENDPOINT": self.fake.oauth_url + "/rest/",
            "member_id": self.fake_portal.member_id, "status": "L", "PLACEMENT": "CRM_DEAL_DETAIL_TAB",
            # Verbatim shape of protocol 16's example.
            "PLACEMENT_OPTIONS": json.dumps({
                "ID": str(deal_id),
                "URI": f"/crm/deal/details/{deal_id}/?any=details%2F{deal_id}%2F&IFRAME=Y&IFRAME_TYPE=SIDE_SLIDER",
            }),
        }
        body.update(overrides)
        return query, body

    def post(self, client, **kwargs):
        query, body = self.payload(**kwargs)
        return client.post("/placements/handler/?" + urlencode(query), body)


def deal_tab_setup(fake, client, settings, *, scope="task,placement,crm,user_brief") -> DealTab:
    settings.B24_PLACEMENTS = BOTH
    portal, fake_portal = install_portal(client, fake, scope=scope)
    fake.add_user(fake_portal, VIEWER_ID, name="Anna", last_name="Petrova")
    fake.add_user(fake_portal, RESPONSIBLE_ID, name="Ivan", last_name="Sidorov", photo="/upload/ivan.png",
                  work_position="Sales manager")
    fake.add_deal(fake_portal, DEAL_ID, title="New Deal #1", stage_id="PREPARATION", currency_id="EUR",
                  opportunity="1000000.00", close_date="2024-09-09T02:00:00+02:00", assigned_by_id=RESPONSIBLE_ID)
    tokens = fake.issue_tokens(fake_portal, user_id=VIEWER_ID)
    fake.reset_calls()
    return DealTab(fake, portal, fake_portal, tokens)


@pytest.fixture
def deal_tab(fake_b24, client, settings, db) -> DealTab:
    return deal_tab_setup(fake_b24, client, settings)


def field(body: str, name: str) -> str:
    import re

    match = re.search(rf'data-field="{name}"[^>]*>(.*?)</', body, re.S)
    assert match, f"no {name} field"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_deal_tab_shows_title_stage_amount_responsible_and_close_date(deal_tab, client):
    response = deal_tab.post(client)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-state="ok"' in body and 'data-placement="CRM_DEAL_DETAIL_TAB"' in body
    assert "<title>New Deal #1</title>" in body
    assert field(body, "stage") == "Document preparation"  # the stage's name, not PREPARATION
    assert field(body, "amount") == "1,000,000.00 EUR"
    assert "Sept. 9, 2024" in body and 'datetime="2024-09-09"' in body
    assert "Ivan Sidorov" in body and "/upload/ivan.png" in body
    assert f"/crm/deal/details/{DEAL_ID}/" in body
    assert 'data-action="reload"' in body and 'data-action="complete"' not in body
    assert Invocation.objects.get().placement == "CRM_DEAL_DETAIL_TAB"
    assert Invocation.objects.get().entity_id == str(DEAL_ID)


def test_deal_tab_open_is_one_batch_with_the_viewers_auth_id(deal_tab, client):
    deal_tab.post(client)
    calls = [call for call in deal_tab.fake.calls if not call.in_batch]
    assert [call.method for call in calls] == ["batch"]
    assert calls[0].params["auth"] == deal_tab.tokens["access_token"]
    in_batch = [call.method for call in deal_tab.fake.calls if call.in_batch]
    assert in_batch == ["profile", "crm.deal.get", "crm.status.list", "user.get"]


@pytest.mark.parametrize("lang, amount, date, label", [
    ("de", "1.000.000,00 EUR", "9. September 2024", "Betrag"),
    ("ru", "1\xa0000\xa0000,00 EUR", "9 сентября 2024", "Сумма"),
])
def test_deal_tab_is_localised(deal_tab, client, lang, amount, date, label):
    body = deal_tab.post(client, lang=lang).content.decode()
    assert f'lang="{lang}"' in body
    assert field(body, "amount") == amount
    assert date in body and label in body


def test_missing_deal_renders_not_found(deal_tab, client):
    response = deal_tab.post(client, deal_id=999)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-state="not_found"' in body and "Deal not found" in body
    assert 'data-action-token=""' in body
    assert Invocation.objects.get().outcome == "ok"


def test_hidden_deal_renders_not_found(deal_tab, client):
    deal_tab.fake_portal.deals[DEAL_ID].visible_to = {RESPONSIBLE_ID}
    body = deal_tab.post(client).content.decode()
    assert 'data-state="not_found"' in body and "Deal not found" in body


def test_deal_tab_without_crm_scope_is_an_error_state_not_a_500(fake_b24, client, settings, db):
    tab = deal_tab_setup(fake_b24, client, settings, scope="task,placement")
    response = tab.post(client)
    assert response.status_code == 502
    assert 'data-state="error"' in response.content.decode()


def test_without_user_scope_the_responsible_is_shown_by_number(fake_b24, client, settings, db):
    tab = deal_tab_setup(fake_b24, client, settings, scope="task,placement,crm")
    body = tab.post(client).content.decode()
    assert 'data-state="ok"' in body and f"User #{RESPONSIBLE_ID}" in body


def test_reload_answers_the_deal_under_its_own_key(deal_tab, client):
    token = action_token_from(deal_tab.post(client).content.decode())
    deal_tab.fake_portal.deals[DEAL_ID].stage_id = "WON"
    answer = client.post("/placements/action/", {"action": "reload", "token": token})
    assert answer.status_code == 200
    deal = answer.json()["deal"]
    assert deal["stage_label"] == "Deal won" and deal["semantic"] == "won"
    assert deal["amount"]["text"] == "1,000,000.00 EUR"
    assert "task" not in answer.json()


def test_reload_of_a_deal_that_became_hidden_is_refused_with_the_deals_words(deal_tab, client):
    token = action_token_from(deal_tab.post(client).content.decode())
    deal_tab.fake_portal.deals[DEAL_ID].visible_to = {RESPONSIBLE_ID}
    answer = client.post("/placements/action/", {"action": "reload", "token": token})
    assert answer.status_code == 403
    assert answer.json()["message"] == "The deal is gone, or you no longer have access to it."


def test_a_task_action_on_a_deal_is_400(deal_tab, client):
    token = action_token_from(deal_tab.post(client).content.decode())
    answer = client.post("/placements/action/", {"action": "complete", "token": token})
    assert answer.status_code == 400


def test_deal_tab_not_in_b24_placements_is_400(deal_tab, client, settings):
    settings.B24_PLACEMENTS = ["TASK_VIEW_TOP_PANEL"]
    response = deal_tab.post(client)
    assert response.status_code == 400 and 'data-state="bad_request"' in response.content.decode()


def test_deal_tab_without_an_id_is_400(deal_tab, client):
    response = deal_tab.post(client, PLACEMENT_OPTIONS=json.dumps({"URI": "/crm/deal/details/1/"}))
    assert response.status_code == 400


def test_install_binds_the_deal_tab_when_the_app_serves_it(deal_tab):
    bound = {p["placement"]: p["handler"] for p in deal_tab.fake_portal.placements}
    assert bound == {"TASK_VIEW_TOP_PANEL": HANDLER, "CRM_DEAL_DETAIL_TAB": HANDLER}


@pytest.mark.django_db(transaction=True)
def test_a_portal_installed_before_the_deal_tab_gets_it_from_bind_placement_all(fake_b24, client, settings):
    settings.B24_PLACEMENTS = ["TASK_VIEW_TOP_PANEL"]
    portal, fake_portal = install_portal(client, fake_b24, scope="task,placement,crm")
    assert [p["placement"] for p in fake_portal.placements] == ["TASK_VIEW_TOP_PANEL"]
    settings.B24_PLACEMENTS = BOTH  # the app now serves the deal tab too
    run = run_command("bind_placement", "--all")
    assert run.code == 0, run.err
    assert "TASK_VIEW_TOP_PANEL: already bound; CRM_DEAL_DETAIL_TAB: bound" in run.out
    assert run.lines[-1].startswith("bind_placement TASK_VIEW_TOP_PANEL, CRM_DEAL_DETAIL_TAB: 1 portal(s)")
    assert sorted(p["placement"] for p in fake_portal.placements) == sorted(BOTH)
