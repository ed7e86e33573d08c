"""Helpers for the event tests: the form Bitrix24's queue posts for a task event (protocol 14)."""
from __future__ import annotations


def task_event_body(fake, fake_portal, event: str = "ONTASKUPDATE", *, task_id="31", ts="1766047124",
                    application_token: str | None = None, tokens: dict | None = None) -> dict:
    """ONTASKADD/ONTASKUPDATE/ONTASKDELETE as Bitrix24 posts it (form-encoded, strings, the acting
    user's tokens in ``auth``)."""
    body = {
        "event": event,
        "ts": ts,
        "auth[domain]": fake_portal.domain,
        "auth[server_endpoint]": fake.oauth_url + "/rest/",
        "auth[client_endpoint]": fake_portal.client_endpoint,
        "auth[member_id]": fake_portal.member_id,
        "auth[application_token]": fake_portal.application_token if application_token is None else application_token,
        "auth[scope]": "task",
        "auth[status]": "L",
    }
    if tokens:
        body.update({
            "auth[access_token]": tokens["access_token"],
            "auth[refresh_token]": tokens["refresh_token"],
            "auth[expires_in]": "3600",
        })
    before = {"ID": task_id} if event != "ONTASKADD" else None
    after = {"ID": task_id} if event != "ONTASKDELETE" else None
    body["data[FIELDS_BEFORE]" if before is None else "data[FIELDS_BEFORE][ID]"] = "undefined" if before is None else task_id
    body["data[FIELDS_AFTER]" if after is None else "data[FIELDS_AFTER][ID]"] = "undefined" if after is None else task_id
    body["data[IS_ACCESSIBLE_BEFORE]"] = "undefined"
    body["data[IS_ACCESSIBLE_AFTER]"] = "undefined"
    return body
