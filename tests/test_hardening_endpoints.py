"""Where tokens and the client secret may go: the endpoint validation table, and proofs over the
wire that nothing is ever sent to a posted domain or a posted OAuth server."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from portals.bitrix import client, errors
from portals.models import Credential, Portal
from tests.fixtures_hardening import expire, row_counts
from tests.helpers import install_portal, post_install
from tests.test_portals_events import event_body

# url -> normalised address, or None for refused; (production, with B24_ALLOW_PRIVATE_ENDPOINTS)
ENDPOINTS = [
    # ordinary portals: https, DNS name, /rest/
    ("https://portal.bitrix24.com/rest/", "https://portal.bitrix24.com/rest/", "same"),
    ("https://Portal.Bitrix24.COM/rest/", "https://portal.bitrix24.com/rest/", "same"),
    ("https://portal.bitrix24.com./rest/", "https://portal.bitrix24.com/rest/", "same"),
    ("https://portal.bitrix24.com:443/rest/", "https://portal.bitrix24.com/rest/", "same"),
    ("https://пример.bitrix24.ru/rest/", "https://xn--e1afmkfd.bitrix24.ru/rest/", "same"),
    ("https://ПРИМЕР.Bitrix24.ru/rest/", "https://xn--e1afmkfd.bitrix24.ru/rest/", "same"),
    ("  https://portal.bitrix24.com/rest/  ", "https://portal.bitrix24.com/rest/", "same"),
    # shape
    ("https://portal.bitrix24.com/rest", None, None),
    ("https://portal.bitrix24.com/", None, None),
    ("https://portal.bitrix24.com/rest/?auth=x", None, None),
    ("https://portal.bitrix24.com/rest/#x", None, None),
    ("ftp://portal.bitrix24.com/rest/", None, None),
    ("javascript:alert(1)//rest/", None, None),
    ("//portal.bitrix24.com/rest/", None, None),
    ("", None, None),
    ("https:///rest/", None, None),
    ("https://ex ample.com/rest/", None, None),
    ("https://%31%32%37.0.0.1/rest/", None, None),
    ("https://-bad-.example.com/rest/", None, None),
    ("https://" + "a" * 64 + ".example.com/rest/", None, None),
    # userinfo: a token must never travel with credentials of someone's choosing
    ("https://user:pass@portal.bitrix24.com/rest/", None, None),
    ("https://portal.bitrix24.com@evil.example.com/rest/", None, None),
    ("https://portal.bitrix24.com\\@evil.example.com/rest/", None, None),
    ("https://:@portal.bitrix24.com/rest/", None, None),
    # ports
    ("https://portal.bitrix24.com:8443/rest/", None, "https://portal.bitrix24.com:8443/rest/"),
    ("https://portal.bitrix24.com:0/rest/", None, "https://portal.bitrix24.com:0/rest/"),
    ("https://portal.bitrix24.com:99999/rest/", None, None),
    ("https://portal.bitrix24.com:-1/rest/", None, None),
    ("https://portal.bitrix24.com:x/rest/", None, None),
    # plain http
    ("http://portal.bitrix24.com/rest/", None, "http://portal.bitrix24.com/rest/"),
    ("http://portal.bitrix24.com:80/rest/", None, "http://portal.bitrix24.com/rest/"),
    # IP literals, every spelling the resolver accepts
    ("https://127.0.0.1/rest/", None, "https://127.0.0.1/rest/"),
    ("https://8.8.8.8/rest/", None, "https://8.8.8.8/rest/"),
    ("https://10.0.0.1/rest/", None, "https://10.0.0.1/rest/"),
    ("https://192.168.1.10/rest/", None, "https://192.168.1.10/rest/"),
    ("https://169.254.169.254/rest/", None, "https://169.254.169.254/rest/"),
    ("https://2130706433/rest/", None, "https://2130706433/rest/"),
    ("https://0x7f000001/rest/", None, "https://0x7f000001/rest/"),
    ("https://0x7f.0.0.1/rest/", None, "https://0x7f.0.0.1/rest/"),
    ("https://0177.0.0.1/rest/", None, "https://0177.0.0.1/rest/"),
    ("https://127.1/rest/", None, "https://127.1/rest/"),
    ("https://[::1]/rest/", None, "https://[::1]/rest/"),
    ("https://[::ffff:127.0.0.1]/rest/", None, "https://[::ffff:127.0.0.1]/rest/"),
    ("https://[fe80::1]:8443/rest/", None, "https://[fe80::1]:8443/rest/"),
    ("https://[2001:db8::1]/rest/", None, "https://[2001:db8::1]/rest/"),
    # names that are not public
    ("https://localhost/rest/", None, "https://localhost/rest/"),
    ("https://LOCALHOST./rest/", None, "https://localhost/rest/"),
    ("https://api.localhost/rest/", None, "https://api.localhost/rest/"),
    ("https://intranet/rest/", None, "https://intranet/rest/"),
    ("http://127.0.0.1:8080/portal.example.com/rest/", None, "http://127.0.0.1:8080/portal.example.com/rest/"),
]


def _validated(url: str) -> str | None:
    try:
        return client.validate_client_endpoint(url)
    except client.UntrustedEndpoint as exc:
        assert str(exc), "a refusal says why"
        return None


@pytest.mark.parametrize("url, production, private", ENDPOINTS, ids=[row[0] or "empty" for row in ENDPOINTS])
def test_client_endpoint_validation_table(settings, url, production, private):
    settings.B24_ALLOW_PRIVATE_ENDPOINTS = False
    assert _validated(url) == production
    settings.B24_ALLOW_PRIVATE_ENDPOINTS = True
    assert _validated(url) == (production if private == "same" else private)


OAUTH = ["https://oauth.bitrix.info", "https://oauth.bitrix24.tech"]
SERVERS = [
    (None, "https://oauth.bitrix.info"),
    ("", "https://oauth.bitrix.info"),
    ("https://oauth.bitrix.info/rest/", "https://oauth.bitrix.info"),
    ("https://oauth.bitrix24.tech/rest/", "https://oauth.bitrix24.tech"),
    ("HTTPS://OAuth.Bitrix.INFO/rest/", "https://oauth.bitrix.info"),
    ("https://oauth.bitrix.info./rest/", "https://oauth.bitrix.info"),
    ("https://oauth.bitrix.info:443/rest/", "https://oauth.bitrix.info"),
    ("http://oauth.bitrix.info/rest/", None),
    ("https://oauth.bitrix.info:8443/rest/", None),
    ("https://oauth.bitrix.info:99999/rest/", None),
    ("https://user:pw@oauth.bitrix.info/rest/", None),
    ("https://oauth.bitrix.info@evil.example.com/rest/", None),
    ("https://oauth.bitrix.info.evil.example.com/rest/", None),
    ("https://evil.example.com/rest/?https://oauth.bitrix.info", None),
    ("https://evil.example.com/oauth.bitrix.info/rest/", None),
    ("//oauth.bitrix.info/rest/", None),
    ("oauth.bitrix.info", None),
    ("https://oauth.bitrіx.info/rest/", None),  # Cyrillic і: a homograph
    ("https://xn--oauth-bitrix-info/rest/", None),
    ("https://127.0.0.1/rest/", None),
    ("https://[::1]/rest/", None),
    ("https://portal.bitrix24.com/rest/", None),
]


@pytest.mark.parametrize("server_endpoint, expected", SERVERS, ids=[str(row[0]) for row in SERVERS])
def test_oauth_server_table(settings, server_endpoint, expected):
    settings.B24_OAUTH_SERVERS = OAUTH
    if expected is None:
        with pytest.raises(errors.UntrustedServer):
            client.oauth_server_for(server_endpoint)
    else:
        assert client.oauth_server_for(server_endpoint) == expected


def test_no_configured_oauth_server_refuses_everything(settings):
    settings.B24_OAUTH_SERVERS = []
    with pytest.raises(errors.UntrustedServer):
        client.oauth_server_for(None)


# --- over the wire: a trap that must never be called ----------------------------------------------


def _tempting_install(trap) -> dict:
    return {"domain": trap.host, "client_endpoint": trap.url + "/rest/", "server_endpoint": trap.url + "/rest/"}


@pytest.mark.django_db
def test_install_naming_a_foreign_domain_is_403_and_the_domain_hears_nothing(client, fake_b24, trap):
    fake_portal = fake_b24.add_portal(domain="shop.example.com")
    tokens = fake_b24.issue_tokens(fake_portal)
    response = post_install(client, fake_b24, fake_portal, tokens, DOMAIN=trap.host)
    assert response.status_code == 403
    assert row_counts() == (0, 0, 0) and trap.requests == []


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["SERVER_ENDPOINT"])
def test_install_naming_a_foreign_oauth_server_is_403_before_any_call(client, fake_b24, trap, field):
    fake_portal = fake_b24.add_portal(domain="shop.example.com")
    tokens = fake_b24.issue_tokens(fake_portal)
    fake_b24.reset_calls()
    response = post_install(client, fake_b24, fake_portal, tokens, **{field: trap.url + "/rest/"})
    assert response.status_code == 403
    assert b"does not trust" in response.content
    assert trap.requests == [] and fake_b24.calls == [] and row_counts() == (0, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("event", ["ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL"])
def test_event_naming_a_foreign_oauth_server_is_403_before_any_call(client, fake_b24, trap, event):
    installed, fake_portal = install_portal(client, fake_b24)
    tokens = fake_b24.issue_tokens(fake_portal)
    fake_b24.reset_calls()
    counts = row_counts()
    body = event_body(event, fake_b24, fake_portal, tokens, server_endpoint=trap.url + "/rest/")
    response = client.post("/portals/events/", urlencode(body), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 403, response.content
    assert trap.requests == [] and fake_b24.calls == [] and row_counts() == counts


@pytest.mark.django_db
def test_event_carrying_a_foreign_domain_and_client_endpoint_stores_the_oauth_servers_address(
    client, fake_b24, trap
):
    """auth[domain]/auth[client_endpoint] are the poster's word; the OAuth server's answer wins."""
    fake_portal = fake_b24.add_portal(domain="noui.example.com")
    tokens = fake_b24.issue_tokens(fake_portal)
    body = event_body("ONAPPINSTALL", fake_b24, fake_portal, tokens, client_endpoint=trap.url + "/rest/")
    response = client.post("/portals/events/", urlencode(body), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    assert Portal.objects.get().client_endpoint == fake_portal.client_endpoint
    assert trap.requests == []


@pytest.mark.django_db
def test_widget_naming_a_foreign_domain_is_403_and_the_domain_hears_nothing(client, widget, trap):
    counts = row_counts()
    response = widget.post(client, DOMAIN=trap.host)
    assert response.status_code == 403
    assert trap.requests == [] and row_counts() == counts
    # The only call is the usual batch to the *stored* endpoint (where a moved portal says 302).
    outbound = [(c.method, c.domain) for c in widget.fake.calls if not c.in_batch]
    assert outbound == [("batch", widget.fake_portal.domain)]


@pytest.mark.django_db
def test_refresh_against_a_server_no_longer_configured_sends_nothing(client, fake_b24, trap, settings):
    """A stored server_endpoint that left B24_OAUTH_SERVERS (or was tampered with) gets no secret."""
    portal, _ = install_portal(client, fake_b24)
    Portal.objects.filter(pk=portal.pk).update(server_endpoint=trap.url + "/rest/")
    credential = Credential.objects.select_related("portal").get()
    expire(credential)
    stored = (credential.access_token, credential.refresh_token)
    fake_b24.reset_calls()
    from portals import tokens

    with pytest.raises(errors.UntrustedServer):
        tokens.credential_access_token(credential=credential)
    assert trap.requests == [] and fake_b24.calls == []
    credential.refresh_from_db()
    assert (credential.access_token, credential.refresh_token) == stored


@pytest.mark.django_db
def test_client_secret_goes_only_to_the_configured_oauth_server(client, widget, trap):
    """Install, widget open, refresh on an action: every request that carried the secret went to
    the configured OAuth server; no portal request and no other host ever saw it."""
    fake = widget.fake
    token = widget.action_token(client)
    expire(Credential.objects.get(user_id=2))
    assert client.post("/placements/action/", {"action": "reload", "token": token}).status_code == 200
    expire(Credential.objects.get(user_id=1))
    from portals import tokens

    tokens.credential_access_token(credential=Credential.objects.select_related("portal").get(user_id=1))
    carrying = [call for call in fake.calls if fake.client_secret in str(call.params)]
    assert carrying and {(call.server, call.method) for call in carrying} == {("oauth", "oauth/token")}
    assert trap.requests == []
