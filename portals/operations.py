"""What operators do to one installed portal's tokens and status: refresh, disable, enable.

The management commands and the admin actions call these functions and nothing else, so a
portal is treated the same way whichever tool an operator picked. Each ``portal_*`` function
handles one portal and returns a ``PortalOutcome`` instead of raising; ``portals.fanout`` runs
one of them over many portals at once.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from django.db.models import Q
from django.utils import timezone

from portals.bitrix import errors
from portals.fanout import PortalOutcome, outcome_failed
from portals.models import Credential, Portal
from portals.tokens import ReauthRequired, credential_refresh

DISABLED_DETAIL = Portal.DISABLED_DETAIL


def portal_admin_credential(portal: Portal, *, allow_unpaid: bool = False) -> Credential:
    """The installer's credential of a portal that may be called, or ReauthRequired.

    A portal marked needs_reauth is not called again: its refresh chain is dead until an
    administrator opens the app, and trying again would only repeat the refusal. An unpaid one
    (PaymentRequired) is called only to learn whether it paid (``allow_unpaid``).
    """
    if portal.status == Portal.Status.UNINSTALLED:
        raise ReauthRequired("UNINSTALLED", portal.status_detail or "the app is uninstalled from this portal")
    if portal.status == Portal.Status.NEEDS_REAUTH:
        raise ReauthRequired(
            "NEEDS_REAUTH", portal.status_detail or "an administrator must open the app in Bitrix24 again"
        )
    if portal.status == Portal.Status.PAYMENT_REQUIRED and not allow_unpaid:
        raise errors.PaymentRequired("PAYMENT_REQUIRED", portal.status_detail)
    credential = portal.admin_credential()
    if credential is None or not (credential.access_token or credential.refresh_token):
        raise ReauthRequired("NO_CREDENTIAL", "no administrator token is stored for this portal")
    credential.portal = portal  # one object, so a needs_reauth mark is seen by the caller too
    return credential


def idle_credentials(*, idle_days: int | None, now=None):
    """Credentials with a refresh token that were neither used nor refreshed for ``idle_days``."""
    queryset = Credential.objects.exclude(refresh_token="").exclude(refresh_token__isnull=True)
    if idle_days is None:
        return queryset
    cutoff = (now or timezone.now()) - dt.timedelta(days=idle_days)
    return queryset.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff),
        Q(refreshed_at__isnull=True) | Q(refreshed_at__lt=cutoff),
    )


def portal_refresh_tokens(
    *, portal: Portal, idle_days: int | None = None, pace: Callable[[], None] | None = None
) -> PortalOutcome:
    """Spend each (idle) refresh token of the portal once, so that none lapses unused.

    A refusal of the installer's token marks the portal needs_reauth (the token service does)
    and fails the line; a refusal of another user's token is only reported, since that user's
    next widget open brings a new pair.
    """
    try:
        portal_admin_credential(portal)
    except ReauthRequired as exc:
        return outcome_failed(portal, exc)
    credentials = list(
        idle_credentials(idle_days=idle_days).filter(portal=portal).order_by("-is_admin", "user_id")
    )
    if not credentials:
        return PortalOutcome(portal, "nothing idle", True)
    refreshed, refused = 0, []
    for credential in credentials:
        credential.portal = portal
        if pace is not None:
            pace()
        try:
            credential_refresh(credential=credential, stale_access_token=credential.access_token)
        except ReauthRequired as exc:
            if credential.is_admin:
                return outcome_failed(portal, exc)
            refused.append(str(credential.user_id))
        except errors.NotConfigured:
            raise
        except Exception as exc:
            return outcome_failed(portal, exc)
        else:
            refreshed += 1
    detail = f"{refreshed} of {len(credentials)} credential(s)"
    if refused:
        detail += f"; refused for user(s) {', '.join(refused)}"
    return PortalOutcome(portal, "refreshed", True, detail)


def portal_disable(*, portal: Portal) -> PortalOutcome:
    """Stop serving the widget on a portal, reversibly: status ``uninstalled`` with the detail
    "Disabled by operator", tokens and bindings kept (``portal_enable`` undoes it)."""
    if portal.status == Portal.Status.UNINSTALLED:
        return PortalOutcome(portal, "already disabled or uninstalled", True)
    now = timezone.now()
    Portal.objects.filter(pk=portal.pk).update(
        status=Portal.Status.UNINSTALLED, status_detail=DISABLED_DETAIL, uninstalled_at=now, updated_at=now
    )
    portal.status, portal.status_detail, portal.uninstalled_at = Portal.Status.UNINSTALLED, DISABLED_DETAIL, now
    return PortalOutcome(portal, "disabled", True)


def portal_enable(*, portal: Portal) -> PortalOutcome:
    """Undo ``portal_disable``. A portal that Bitrix24 uninstalled stays uninstalled (its tokens
    are blanked; only a reinstall brings it back)."""
    if portal.status != Portal.Status.UNINSTALLED or portal.status_detail != DISABLED_DETAIL:
        return PortalOutcome(portal, "not disabled by an operator", False, "left as it is")
    now = timezone.now()
    Portal.objects.filter(pk=portal.pk).update(
        status=Portal.Status.ACTIVE, status_detail="", uninstalled_at=None, updated_at=now
    )
    portal.status, portal.status_detail, portal.uninstalled_at = Portal.Status.ACTIVE, "", None
    return PortalOutcome(portal, "enabled", True)
