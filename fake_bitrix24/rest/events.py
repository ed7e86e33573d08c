"""event.bind/unbind/get (protocol 2.5)."""
from __future__ import annotations

from urllib.parse import urlsplit

from fake_bitrix24.params import ci, require_string
from fake_bitrix24.state import ApiError

# Ordinary users may bind online events, for themselves only (protocol 2.5); offline binding and
# the whole offline queue are an administrator's (protocol 13.2).
ADMIN_ONLY = {"event.offline.get", "event.offline.clear", "event.offline.error", "event.offline.list"}


def _check_user_may(user, *, offline: bool, auth_type: str) -> None:
    """What a non-admin may not do with event handlers: offline ones, or another user's."""
    if user.admin:
        return
    if offline:
        raise ApiError(403, "ACCESS_DENIED",
                       "Access denied! Offline events binding requires administrator access rights")
    if auth_type not in ("0", str(user.id)):
        raise ApiError(403, "ACCESS_DENIED", "Access denied!")


def bind(fake, portal, user, p):
    offline = 1 if str(ci(p, "EVENT_TYPE", "online")).lower() == "offline" else 0
    if offline:  # no handler: the app pulls the records (protocol 13.2)
        (event,) = require_string(p, "EVENT")
        handler = ""
    else:
        event, handler = require_string(p, "EVENT", "HANDLER")
        if urlsplit(handler).scheme not in ("http", "https"):
            raise ApiError(400, "ERROR_UNSUPPORTED_PROTOCOL", "Unsupported protocol")
    event = event.upper()
    if not event.startswith("ON"):
        raise ApiError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
    auth_type = str(ci(p, "AUTH_TYPE", "0") or "0")
    _check_user_may(user, offline=bool(offline), auth_type=auth_type)
    if not user.admin:
        auth_type = str(user.id)  # a user's handler runs as that user, never as "whoever acted"
    connector = str(ci(p, "AUTH_CONNECTOR", "") or "")
    if any(e["event"] == event and e["handler"] == handler and e["auth_type"] == auth_type
           and e["offline"] == offline and e.get("connector", "") == connector for e in portal.events):
        raise ApiError(400, "ERROR_CORE", "Handler already binded")
    row = {"event": event, "handler": handler, "auth_type": auth_type, "offline": offline}
    if connector:
        row["connector"] = connector
    portal.events.append(row)
    return True


def unbind(fake, portal, user, p):
    event, handler = require_string(p, "EVENT", "HANDLER")
    auth_type = ci(p, "AUTH_TYPE")
    offline = str(ci(p, "EVENT_TYPE", "online")).lower() == "offline"
    _check_user_may(user, offline=offline, auth_type=str(auth_type if auth_type is not None else user.id))
    if not user.admin:
        auth_type = str(user.id)
    before = len(portal.events)
    portal.events[:] = [e for e in portal.events
                        if not (e["event"] == event.upper() and e["handler"] == handler
                                and (auth_type is None or e["auth_type"] == str(auth_type)))]
    return {"count": before - len(portal.events)}


def get(fake, portal, user, p):
    return [dict(e) for e in portal.events]


METHODS = {"event.bind": bind, "event.unbind": unbind, "event.get": get}
