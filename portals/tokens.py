"""The token service: every caller gets a usable access token for a Credential from here.

Refresh tokens are single-use (protocol 3.5), so one worker at a time spends one, under a short
lease on the credential row (not a row lock: no lock is held across the call to the OAuth server),
re-reads the row once the lease is its own (another worker may have refreshed meanwhile) and
stores the new pair guarded by the lease. Nothing is refreshed "just in case" before expiry
(protocol 3.4).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from typing import Callable, TypeVar

from django.conf import settings
from django.utils import timezone

from portals.bitrix import capacity, client, errors
from portals.models import Credential, Portal
from portals.relocation import following_a_move

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A credential is marked used at most this often, so a busy widget does not write on every call.
LAST_USED_RESOLUTION = dt.timedelta(hours=1)
# How often a worker waiting for another's refresh re-reads the credential.
LEASE_POLL_SECONDS = 0.05


class ReauthRequired(errors.AuthError):
    """The refresh chain is dead: an administrator must open the app again (or reinstall it)."""


def expiry_from(*, expires: object = None, expires_in: object = None, now=None) -> dt.datetime:
    """When a token expires, from the absolute ``expires`` or the relative ``expires_in``."""
    now = now or timezone.now()
    try:
        if expires not in (None, ""):
            return dt.datetime.fromtimestamp(int(expires), tz=dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    try:
        seconds = int(expires_in) if expires_in not in (None, "") else 3600
    except (TypeError, ValueError):
        seconds = 3600
    return now + dt.timedelta(seconds=max(0, min(seconds, 86400)))


def portal_mark_needs_reauth(*, portal: Portal, reason: str) -> None:
    """Keep the tokens, flag the portal for the admin and the operators, say why."""
    Portal.objects.filter(pk=portal.pk).exclude(status=Portal.Status.UNINSTALLED).update(
        status=Portal.Status.NEEDS_REAUTH, status_detail=reason[:1000], updated_at=timezone.now()
    )
    portal.status, portal.status_detail = Portal.Status.NEEDS_REAUTH, reason
    logger.warning("portal %s needs re-authorisation: %s", portal.member_id, reason)


PAYMENT_REQUIRED_DETAIL = (
    "Bitrix24 answered PAYMENT_REQUIRED: the app's trial or subscription on this portal is over. "
    "Tokens and data are kept; renewing it in Bitrix24 brings the portal back (ONAPPPAYMENT or sync_portals)."
)


def portal_mark_payment_required(*, portal: Portal) -> None:
    """The trial or subscription is over: keep every token and row, say so, and wait for the
    payment (ONAPPPAYMENT, or ``sync_portals`` reading app.info) to bring the portal back."""
    now = timezone.now()
    changed = Portal.objects.filter(
        pk=portal.pk, status__in=[Portal.Status.ACTIVE, Portal.Status.NEEDS_REAUTH]
    ).update(status=Portal.Status.PAYMENT_REQUIRED, status_detail=PAYMENT_REQUIRED_DETAIL, updated_at=now)
    if changed or portal.status == Portal.Status.PAYMENT_REQUIRED:
        portal.status, portal.status_detail = Portal.Status.PAYMENT_REQUIRED, PAYMENT_REQUIRED_DETAIL
    if changed:
        logger.warning("portal %s: payment required (trial or subscription over)", portal.member_id)


class RefreshPending(errors.Timeout):
    """Another worker holds the refresh lease and has not stored the new pair in time: try again."""


def _lease_seconds() -> float:
    """A lease outlives the longest OAuth call (connect + read timeout), so a live holder never
    loses it mid-call; a crashed holder's lease is free again this long after it was taken."""
    return settings.B24_CONNECT_TIMEOUT + settings.B24_READ_TIMEOUT + 2.0


def _fresh_pair_of(row: Credential, *, stale_access_token: str) -> bool:
    return bool(row.access_token) and row.access_token != stale_access_token and not row.is_expired()


def credential_refresh(*, credential: Credential, stale_access_token: str) -> Credential:
    """Exchange the refresh token for a new pair, once, however many workers ask at the same time.

    Refresh tokens are single-use, so one worker at a time may spend one: the first takes a short
    lease in its own committed UPDATE, calls the OAuth server with no transaction or row lock open
    (a slow OAuth server must not hold the database), and stores the new pair only while its lease
    is still the row's. The others poll the row until the pair is there (or the lease is free).
    ``stale_access_token`` is the token the caller found unusable: a row that holds another,
    unexpired one was refreshed by someone else, and that pair is used.
    """
    rows = Credential.objects.filter(pk=credential.pk)
    give_up = time.monotonic() + _lease_seconds() + 1.0
    lease_id = uuid.uuid4().hex
    while True:
        now = timezone.now()
        if rows.lease_free(now).update(refresh_lease_id=lease_id, refresh_lease_until=now + dt.timedelta(
                seconds=_lease_seconds())):
            break
        if time.monotonic() > give_up:
            raise RefreshPending("REFRESH_PENDING", "another request is renewing this Bitrix24 session")
        capacity.release_database_connections()  # a waiter holds no pooled connection either
        time.sleep(LEASE_POLL_SECONDS)
        current = rows.select_related("portal").get()
        if _fresh_pair_of(current, stale_access_token=stale_access_token):
            _copy_tokens(current, credential)
            return credential
    mine = rows.filter(refresh_lease_id=lease_id)
    try:
        # Read after the lease is ours: a worker that finished just before us has stored its pair.
        leased = rows.select_related("portal").get()
        if _fresh_pair_of(leased, stale_access_token=stale_access_token):
            _copy_tokens(leased, credential)
            return credential
        if not leased.refresh_token:
            _refresh_refused(leased, ReauthRequired("NO_REFRESH_TOKEN", "no refresh token is stored for this user"))
        try:
            answer = client.oauth_refresh(server=leased.portal.server_endpoint, refresh_token=leased.refresh_token)
        except (errors.InvalidGrant, errors.NotInstalled, errors.InvalidToken) as exc:
            _refresh_refused(leased, exc)
        except errors.PaymentRequired:
            # No tokens until the app is paid again (protocol 15.4); the stored pair is kept.
            portal_mark_payment_required(portal=credential.portal)
            raise errors.PaymentRequired("PAYMENT_REQUIRED", PAYMENT_REQUIRED_DETAIL) from None
        now = timezone.now()
        leased.access_token = answer["access_token"]
        leased.refresh_token = answer["refresh_token"]
        leased.expires_at = expiry_from(expires=answer.get("expires"), expires_in=answer.get("expires_in"), now=now)
        leased.refreshed_at = now
        stored = mine.update(access_token=leased.access_token, refresh_token=leased.refresh_token,
                             expires_at=leased.expires_at, refreshed_at=now,
                             refresh_lease_id="", refresh_lease_until=None)
        if not stored:  # our lease ran out mid-call (it outlives the timeouts: should not happen)
            logger.error("refresh of credential %s outlived its lease; the new pair is used once, not stored",
                         leased.pk)
        flagged = (Portal.Status.NEEDS_REAUTH, Portal.Status.PAYMENT_REQUIRED)
        if leased.is_admin and leased.portal.status in flagged:
            # The installer's chain works again, and the OAuth server issues tokens only to a
            # paid app: whatever flagged the portal is over.
            Portal.objects.filter(pk=leased.portal_id, status__in=flagged).update(
                status=Portal.Status.ACTIVE, status_detail="", updated_at=now
            )
            if credential.portal_id == leased.portal_id:
                credential.portal.status, credential.portal.status_detail = Portal.Status.ACTIVE, ""
            logger.info("portal %s active again: its admin token refreshed", leased.portal.member_id)
    finally:
        mine.update(refresh_lease_id="", refresh_lease_until=None)  # no-op once the pair is stored
    _copy_tokens(leased, credential)
    return credential


def _refresh_refused(row: Credential, failure: Exception):
    """The chain is dead: flag the portal when it was the installer's, and raise ReauthRequired."""
    reason = (
        f"The OAuth server refused the stored refresh token of user {row.user_id} "
        f"({getattr(failure, 'code', '') or type(failure).__name__}): an administrator "
        "must open the app in Bitrix24 again, or reinstall it."
    )
    if row.is_admin:
        portal_mark_needs_reauth(portal=row.portal, reason=reason)
    raise ReauthRequired(getattr(failure, "code", "") or "REAUTH_REQUIRED", reason)


def _copy_tokens(source: Credential, target: Credential) -> None:
    for name in ("access_token", "refresh_token", "expires_at", "refreshed_at"):
        setattr(target, name, getattr(source, name))


def credential_access_token(*, credential: Credential) -> str:
    """A usable access token: the stored one until it expires, then a refreshed one."""
    if credential.access_token and not credential.is_expired():
        return credential.access_token
    return credential_refresh(credential=credential, stale_access_token=credential.access_token).access_token


def credential_mark_used(*, credential: Credential) -> None:
    now = timezone.now()
    if credential.last_used_at is None or now - credential.last_used_at > LAST_USED_RESOLUTION:
        Credential.objects.filter(pk=credential.pk).update(last_used_at=now)
        credential.last_used_at = now


def with_credential(*, credential: Credential, action: Callable[[str], T]) -> T:
    """Run ``action(access_token)``; on ``expired_token`` refresh once and retry once; on a 302
    from a portal that changed its address, re-learn the address and retry once. PAYMENT_REQUIRED
    (from the refresh or the portal) marks the portal ``payment_required`` and is raised."""
    try:
        token = credential_access_token(credential=credential)
        credential_mark_used(credential=credential)
        try:
            return following_a_move(portal=credential.portal, access_token=token, action=action)
        except errors.ExpiredToken:
            token = credential_refresh(credential=credential, stale_access_token=token).access_token
            return following_a_move(portal=credential.portal, access_token=token, action=action)
    except errors.PaymentRequired:
        portal_mark_payment_required(portal=credential.portal)
        raise


def portal_call(*, credential: Credential, method: str, params: dict | None = None) -> dict:
    """One REST call on the credential's portal, with the token service's refresh rules."""
    portal = credential.portal
    return with_credential(
        credential=credential,
        action=lambda token: client.call(
            client_endpoint=portal.client_endpoint, method=method, access_token=token, params=params
        ),
    )


def portal_batch(
    *, credential: Credential, commands: dict[str, tuple[str, dict]], halt: bool = False,
    retry_rate_limited: bool = True,
) -> client.BatchResult:
    portal = credential.portal
    return with_credential(
        credential=credential,
        action=lambda token: client.batch(
            client_endpoint=portal.client_endpoint, access_token=token, commands=commands, halt=halt,
            retry_rate_limited=retry_rate_limited,
        ),
    )
