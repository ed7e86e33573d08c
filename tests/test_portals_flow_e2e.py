"""The whole life of an installation, over HTTP on both sides: our app under live_server, the
fake Bitrix24 on loopback. install -> update -> uninstall -> reinstall."""
from urllib.parse import urlencode

import pytest
import requests

from portals.models import Credential, Portal
from tests.helpers import ONLINE_EVENTS_BOUND, install_payload
from tests.test_portals_events import event_body

pytestmark = pytest.mark.django_db(transaction=True)


def test_install_update_uninstall_reinstall(live_server, fake_b24, settings):
    settings.ALLOWED_HOSTS = ["*"]
    http = requests.Session()
    fake_portal = fake_b24.add_portal(domain="life.example.com")

    # 1. The admin opens the install page inside Bitrix24.
    query, body = install_payload(fake_b24, fake_portal, fake_b24.issue_tokens(fake_portal))
    response = http.post(f"{live_server.url}/portals/install/?{urlencode(query)}", data=body, timeout=10)
    assert response.status_code == 200 and "BX24.installFinish()" in response.text
    portal = Portal.objects.get(member_id=fake_portal.member_id)
    assert portal.status == Portal.Status.ACTIVE
    first_installed_at = portal.installed_at

    # 2. A new version: ONAPPUPDATE brings a new application token and rebinding.
    new_app_token = fake_b24.new_application_token(fake_portal)
    fake_portal.events.clear()
    update = event_body("ONAPPUPDATE", fake_b24, fake_portal, fake_b24.issue_tokens(fake_portal),
                        application_token=new_app_token, data={"VERSION": "2", "PREVIOUS_VERSION": "1"})
    response = http.post(f"{live_server.url}/portals/events/", data=update, timeout=10)
    assert response.status_code == 200, response.text
    portal.refresh_from_db()
    assert portal.application_token == new_app_token
    assert sorted(e["event"] for e in fake_portal.events if not e["offline"]) == ONLINE_EVENTS_BOUND

    # 3. The admin removes the app: Bitrix24 revokes it, then sends ONAPPUNINSTALL.
    fake_b24.uninstall(fake_portal)
    uninstall = event_body("ONAPPUNINSTALL", fake_b24, fake_portal, application_token=new_app_token,
                           data={"CLEAN": "0", "LANGUAGE_ID": "en"})
    response = http.post(f"{live_server.url}/portals/events/", data=uninstall, timeout=10)
    assert response.status_code == 200, response.text
    portal.refresh_from_db()
    assert portal.status == Portal.Status.UNINSTALLED
    assert set(Credential.objects.values_list("access_token", "refresh_token")) == {("", "")}

    # 4. Installed again: the same Portal row comes back, active, with new tokens.
    fake_b24.reinstall(fake_portal)
    tokens = fake_b24.issue_tokens(fake_portal)
    query, body = install_payload(fake_b24, fake_portal, tokens)
    response = http.post(f"{live_server.url}/portals/install/?{urlencode(query)}", data=body, timeout=10)
    assert response.status_code == 200
    again = Portal.objects.get()
    assert again.pk == portal.pk
    assert again.status == Portal.Status.ACTIVE and again.uninstalled_at is None
    assert again.installed_at > first_installed_at
    assert again.application_token == fake_portal.application_token
    assert Credential.objects.get().refresh_token == tokens["refresh_token"]
