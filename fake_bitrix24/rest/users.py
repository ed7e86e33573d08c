"""user.get (scopes ``user``, ``user_basic`` or ``user_brief``): people by id, for names on a card."""
from __future__ import annotations

from fake_bitrix24.params import ci
from fake_bitrix24.state import FakeUser


def user_json(user: FakeUser) -> dict:
    return {
        "ID": str(user.id), "ACTIVE": True, "NAME": user.name, "LAST_NAME": user.last_name,
        "SECOND_NAME": "", "PERSONAL_PHOTO": user.photo, "WORK_POSITION": user.work_position,
        "IS_ONLINE": "N",
    }


def user_get(fake, portal, user, p):
    """``ID=5`` or ``FILTER[ID]=5``; an unknown id gives an empty list, as Bitrix24 does."""
    wanted = ci(p, "ID")
    if wanted is None:
        filter_ = ci(p, "FILTER") or ci(p, "filter") or {}
        wanted = ci(filter_, "ID") if isinstance(filter_, dict) else None
    users = sorted(portal.users.values(), key=lambda u: u.id)
    if wanted not in (None, ""):
        users = [u for u in users if str(u.id) == str(wanted).strip()]
    return [user_json(u) for u in users]


METHODS: dict = {
    "user.get": user_get,
}
