"""app.info, profile, user.current, scope: who the app and the caller are (protocol 5, 8)."""
from __future__ import annotations


def app_info(fake, portal, user, p):
    """The portal's app.info (protocol 8, 15.2), from the portal's subscription state."""
    license_type = portal.license.split("_", 1)[-1]
    answer = {"ID": 1, "CODE": fake.client_id, "VERSION": portal.version, "STATUS": portal.app_status,
              "INSTALLED": True, "PAYMENT_EXPIRED": "Y" if portal.payment_expired else "N", "DAYS": portal.days,
              "LANGUAGE_ID": "en", "LICENSE": portal.license, "LICENSE_TYPE": license_type,
              "LICENSE_FAMILY": license_type.rstrip("0123456789")}
    for key, value in portal.app_info_extra.items():
        if value is None:
            answer.pop(key, None)
        else:
            answer[key] = value
    return answer


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
