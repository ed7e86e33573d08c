"""The widget's action token: what lets the page's script act for its viewer without cookies.

Cookies do not survive a third-party iframe (protocol 10), so the handler page carries a token
signed with SECRET_KEY, salted for this one use and bound to the portal, the user, the placement
and the entity: a token from one task card cannot act on another task, user or portal.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.core import signing

from portals.failures import Refused

SALT = "placements.action-token"
# Hours, well past AUTH_EXPIRES (one hour): the page keeps working while the user keeps it open.
MAX_AGE_SECONDS = 8 * 3600


class ActionTokenInvalid(Refused):
    """Missing, tampered with, or expired; ``str()`` says which, for a person to read."""


@dataclass(frozen=True)
class ActionGrant:
    portal_id: int
    user_id: int
    placement: str
    entity_id: str
    lang: str


def action_token_issue(*, grant: ActionGrant) -> str:
    return signing.dumps(
        {"p": grant.portal_id, "u": grant.user_id, "c": grant.placement, "e": grant.entity_id, "l": grant.lang},
        salt=SALT,
    )


def action_token_read(*, token: str, max_age: int = MAX_AGE_SECONDS) -> ActionGrant:
    if not token:
        raise ActionTokenInvalid("The action token is missing. Reopen the card to continue.")
    try:
        data = signing.loads(token, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise ActionTokenInvalid("The action token has expired. Reopen the card to continue.") from None
    except signing.BadSignature:
        raise ActionTokenInvalid("The action token is not valid.") from None
    try:
        return ActionGrant(
            portal_id=int(data["p"]), user_id=int(data["u"]), placement=str(data["c"]),
            entity_id=str(data["e"]), lang=str(data.get("l", "en")),
        )
    except (KeyError, TypeError, ValueError):
        raise ActionTokenInvalid("The action token is not valid.") from None
