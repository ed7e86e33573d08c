"""event.bind/unbind/get (protocol 2.5)."""
from __future__ import annotations

from urllib.parse import urlsplit

from fake_bitrix24.params import ci, require_string
from fake_bitrix24.state import ApiError

# Only a portal administrator may manage event handlers.
ADMIN_ONLY = {"event.bind", "event.unbind"}


def bind(fake, portal, user, p):
    event, handler = require_string(p, "EVENT", "HANDLER")
    event = event.upper()
    if not event.startswith("ON"):
        raise ApiError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
    if urlsplit(handler).scheme not in ("http", "https"):
        raise ApiError(400, "ERROR_UNSUPPORTED_PROTOCOL", "Unsupported protocol")
    auth_type = str(ci(p, "AUTH_TYPE", "0") or "0")
    offline = 1 if str(ci(p, "EVENT_TYPE", "online")).lower() == "offline" else 0
    if any(e["event"] == event and e["handler"] == handler and e["auth_type"] == auth_type
           for e in portal.events):
        raise ApiError(400, "ERROR_CORE", "Handler already binded")
    portal.events.append({"event": event, "handler": handler, "auth_type": auth_type, "offline": offline})
    return True


def unbind(fake, portal, user, p):
    event, handler = require_string(p, "EVENT", "HANDLER")
    auth_type = ci(p, "AUTH_TYPE")
    before = len(portal.events)
    portal.events[:] = [e for e in portal.events
                        if not (e["event"] == event.upper() and e["handler"] == handler
                                and (auth_type is None or e["auth_type"] == str(auth_type)))]
    return {"count": before - len(portal.events)}


def get(fake, portal, user, p):
    return [dict(e) for e in portal.events]


METHODS = {"event.bind": bind, "event.unbind": unbind, "event.get": get}
