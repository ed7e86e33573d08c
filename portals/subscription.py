"""The app's trial and subscription on each portal: what ``app.info`` says, read and stored.

Only an ``app.info`` answer to our own stored installer token is believed (protocol 15): the
``status`` a browser posts and the ``STATUS``/``DAYS`` an ``ONAPPPAYMENT`` carries are not.
Bitrix24 is loose about these fields (letters no list agrees on, ``DAYS`` as null, number or
string), so anything odd is stored as unknown (blank or null), never a crash.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.utils import timezone

from portals.models import Portal
from portals.payload import is_ascii_number

logger = logging.getLogger(__name__)

KNOWN_APP_STATUSES = frozenset(Portal.AppStatus.values)
# A doorbell (ONAPPPAYMENT) anyone can ring re-reads app.info at most this often per portal,
# so a flood of forged ones cannot spend the portal's shared budget of REST calls.
DOORBELL_COOLDOWN = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Subscription:
    """``app.info``'s payment fields, each None when Bitrix24 sent nothing usable."""

    app_status: str | None = None
    payment_expired: bool | None = None
    days_left: int | None = None
    license: str | None = None

    @classmethod
    def of(cls, portal: Portal) -> "Subscription":
        """What is stored for a portal (blank and null read as unknown)."""
        return cls(portal.app_status or None, portal.payment_expired, portal.days_left, portal.license or None)

    def period(self) -> str:
        """What is left of the trial or paid period: "12 day(s) left", "expired 3 day(s) ago", ""."""
        if self.payment_expired:
            return "expired" if self.days_left is None else f"expired {abs(self.days_left)} day(s) ago"
        return "" if self.days_left is None else f"{self.days_left} day(s) left"

    def describe(self) -> str:
        """One line for an operator: "trial, 12 day(s) left, licence de_pro100"..."""
        status = Portal.AppStatus(self.app_status).label if self.app_status else "status unknown"
        parts = [status, self.period(), f"licence {self.license}" if self.license else ""]
        return ", ".join(part for part in parts if part)


def _field(source: dict, *names: str):
    for name in names:
        if name in source:
            return source[name]
    return None


def _status_letter(value) -> str | None:
    text = value.strip().upper() if isinstance(value, str) else ""
    return text if text in KNOWN_APP_STATUSES else None


def _yes_no(value) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().upper() if isinstance(value, (str, int)) else ""
    return {"Y": True, "N": False, "1": True, "0": False, "TRUE": True, "FALSE": False}.get(text)


def _days(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and is_ascii_number(value.strip().removeprefix("-")):
        number = int(value.strip())
    else:
        return None
    return number if -100_000 < number < 100_000 else None


def _license(value) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    return text[:64] if text and text.isprintable() else None


def subscription_from_app_info(info) -> Subscription:
    """The payment fields of either ``app.info``: the portal's (``STATUS``, ``PAYMENT_EXPIRED``,
    ``DAYS``, ``LICENSE`` at the top) or the OAuth server's (the same under ``install``, in
    either case). Never raises."""
    if not isinstance(info, dict):
        return Subscription()
    install = info.get("install") if isinstance(info.get("install"), dict) else {}
    sources = (info, install)

    def pick(*names):
        for source in sources:
            value = _field(source, *names)
            if value is not None:
                return value
        return None

    return Subscription(
        app_status=_status_letter(pick("STATUS", "status")),
        payment_expired=_yes_no(pick("PAYMENT_EXPIRED", "payment_expired")),
        days_left=_days(pick("DAYS", "days")),
        license=_license(pick("LICENSE", "license")),
    )


def subscription_fields(subscription: Subscription, *, complete: bool) -> dict:
    """The Portal columns to write. ``complete`` (the portal's own app.info, which always names
    every field) also writes the unknowns; otherwise only what the answer did say."""
    fields = {
        "app_status": subscription.app_status,
        "payment_expired": subscription.payment_expired,
        "days_left": subscription.days_left,
        "license": subscription.license,
    }
    if not complete:
        return {name: value for name, value in fields.items() if value is not None}
    return {
        **fields,
        "app_status": subscription.app_status or "",
        "license": subscription.license or "",
    }


def portal_subscription_store(*, portal: Portal, subscription: Subscription, now=None) -> bool:
    """Store the portal's own ``app.info`` (read with its installer's token). Bitrix24 answered,
    so the app works there: a portal marked ``payment_required`` is ``active`` again.
    True when its status changed."""
    now = now or timezone.now()
    changes = {**subscription_fields(subscription, complete=True), "subscription_checked_at": now, "updated_at": now}
    Portal.objects.filter(pk=portal.pk).update(**changes)
    for name, value in changes.items():
        setattr(portal, name, value)
    reopened = Portal.objects.filter(pk=portal.pk, status=Portal.Status.PAYMENT_REQUIRED).update(
        status=Portal.Status.ACTIVE, status_detail="", updated_at=now
    )
    if reopened:
        portal.status, portal.status_detail = Portal.Status.ACTIVE, ""
        logger.info("portal %s active again: app.info answers (%s)", portal.member_id, subscription.describe())
    return bool(reopened)


def portal_subscription_refresh(*, portal: Portal) -> Subscription:
    """Read the portal's ``app.info`` with its installer's stored token and store the answer.

    PAYMENT_REQUIRED (from the refresh or the portal) marks the portal ``payment_required`` and
    is raised (the token service does both); a missing credential is ReauthRequired."""
    from portals.tokens import ReauthRequired, portal_call

    credential = portal.admin_credential()
    if credential is None or not (credential.access_token or credential.refresh_token):
        raise ReauthRequired("NO_CREDENTIAL", "no administrator token is stored for this portal")
    credential.portal = portal
    answer = portal_call(credential=credential, method="app.info")
    subscription = subscription_from_app_info(answer.get("result"))
    portal_subscription_store(portal=portal, subscription=subscription)
    return subscription
