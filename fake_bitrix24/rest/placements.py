"""placement.bind/unbind/get/list (protocol 5.x)."""
from __future__ import annotations

from urllib.parse import urlsplit

from fake_bitrix24.params import ci, require_string
from fake_bitrix24.state import ApiError

# Only a portal administrator may manage placements (protocol 5.1).
ADMIN_ONLY = {"placement.bind", "placement.unbind", "placement.get"}


def placement_known(fake, portal, code: str) -> bool:
    if code.startswith("TASK_"):
        return "task" in portal.scopes  # without `task` the code is unknown (5.1)
    return code.startswith("CRM_") or code in fake.known_placements


def bind(fake, portal, user, p):
    code, handler = require_string(p, "PLACEMENT", "HANDLER")
    code = code.upper()
    if code == "DEFAULT":
        raise ApiError(400, "ERROR_ARGUMENT", "Wrong value", argument="PLACEMENT")
    if not placement_known(fake, portal, code):
        raise ApiError(400, "ERROR_PLACEMENT_NOT_FOUND", "Placement not found")
    parts = urlsplit(handler)
    if parts.scheme not in ("http", "https"):
        raise ApiError(400, "ERROR_UNSUPPORTED_PROTOCOL", "Unsupported protocol")
    if "." not in (parts.hostname or ""):
        raise ApiError(400, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL")
    title, desc = ci(p, "TITLE", ""), ci(p, "DESCRIPTION", "")
    if not isinstance(title, str):
        raise ApiError(400, "ERROR_ARGUMENT", "Argument 'TITLE' must be a string", argument="TITLE")
    if any(x["placement"] == code and x["handler"] == handler for x in portal.placements):
        raise ApiError(400, "ERROR_CORE", "Unable to set placement handler: Handler already binded")
    options, lang_all = ci(p, "OPTIONS") or [], ci(p, "LANG_ALL") or []
    portal.placements.append({"placement": code, "userId": 0, "handler": handler, "options": options,
                              "title": title, "description": desc or "", "langAll": lang_all})
    return True


def unbind(fake, portal, user, p):
    (code,) = require_string(p, "PLACEMENT")
    handler = ci(p, "HANDLER")
    code, count, keep = code.upper(), 0, []
    for x in portal.placements:
        if x["placement"] == code and (not handler or x["handler"] == handler):
            count += 2  # +1 found, +1 deleted (protocol 0.10)
        else:
            keep.append(x)
    portal.placements[:] = keep
    return {"count": count}


def get(fake, portal, user, p):
    return [dict(x) for x in portal.placements]


def list_codes(fake, portal, user, p):
    return sorted(c for c in fake.known_placements if placement_known(fake, portal, c))


METHODS = {"placement.bind": bind, "placement.unbind": unbind, "placement.get": get,
           "placement.list": list_codes}
