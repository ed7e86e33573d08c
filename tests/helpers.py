"""Shared test helpers: drive the real install flow against the fake Bitrix24."""
from __future__ import annotations

from portals.models import Portal

# What install binds online on /portals/events/: the lifecycle events, the payment doorbell, the
# task events the built-in handler takes and the offline queue's doorbell.
ONLINE_EVENTS_BOUND = [
    "ONAPPPAYMENT", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONOFFLINEEVENT", "ONTASKADD", "ONTASKDELETE", "ONTASKUPDATE",
]


def install_payload(fake, fake_portal, tokens: dict, **overrides) -> tuple[dict, dict]:
    """(query, body) of an install-page POST, as Bitrix24 sends it (protocol 1.3)."""
    query = {"DOMAIN": fake_portal.domain, "PROTOCOL": "1", "LANG": "en", "APP_SID": "a" * 32}
    body = {
        "AUTH_ID": tokens["access_token"],
        "AUTH_EXPIRES": "3600",
        "REFRESH_ID": tokens["refresh_token"],
        "SERVER_ENDPOINT": fake.oauth_url + "/rest/",
        "APPLICATION_TOKEN": fake_portal.application_token,
        "APPLICATION_SCOPE": "task,placement",
        "member_id": fake_portal.member_id,
        "status": "L",
        "PLACEMENT": "DEFAULT",
        "PLACEMENT_OPTIONS": "{}",
    }
    for key, value in overrides.items():
        if key in query:
            query[key] = value
        elif value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return query, body


def post_install(client, fake, fake_portal, tokens: dict, **overrides):
    from urllib.parse import urlencode

    query, body = install_payload(fake, fake_portal, tokens, **overrides)
    return client.post("/portals/install/?" + urlencode(query), body)


def install_portal(client, fake, *, domain: str = "portal-1.example.com", **add_portal_kwargs):
    """Add a portal to the fake and install the app on it through POST /portals/install/.

    Returns (Portal, FakePortal). The stored admin credential is the fake's user 1.
    """
    fake_portal = fake.add_portal(domain=domain, **add_portal_kwargs)
    tokens = fake.issue_tokens(fake_portal, user_id=1)
    response = post_install(client, fake, fake_portal, tokens)
    assert response.status_code == 200, response.content.decode()[:500]
    return Portal.objects.get(member_id=fake_portal.member_id), fake_portal
