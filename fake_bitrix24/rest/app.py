"""app.info, profile, user.current, scope: who the app and the caller are (protocol 5, 8)."""
from __future__ import annotations


def app_info(fake, portal, user, p):
    return {"ID": 1, "CODE": fake.client_id, "VERSION": 1, "STATUS": portal.app_status, "INSTALLED": True,
            "PAYMENT_EXPIRED": "N", "DAYS": None, "LANGUAGE_ID": "en", "LICENSE": "en_project",
            "LICENSE_TYPE": "project", "LICENSE_FAMILY": "project"}


def profile(fake, portal, user, p):
    return {"ID": str(user.id), "ADMIN": user.admin, "NAME": user.name, "LAST_NAME": user.last_name,
            "PERSONAL_GENDER": "", "PERSONAL_PHOTO": user.photo or "", "TIME_ZONE": ""}


def user_current(fake, portal, user, p):
    return {"ID": str(user.id), "ACTIVE": True, "NAME": user.name, "LAST_NAME": user.last_name,
            "EMAIL": user.email, "PERSONAL_PHOTO": user.photo or "", "WORK_POSITION": user.work_position,
            "IS_ONLINE": "Y", "UF_DEPARTMENT": [1]}


def scope(fake, portal, user, p):
    return sorted(portal.scopes)


METHODS = {"app.info": app_info, "profile": profile, "user.current": user_current, "scope": scope}
