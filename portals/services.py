"""What happens to a portal: install, update, uninstall, and binding our handlers on it.

Plain functions with keyword arguments; views, events, commands and the admin all call these.
Nothing is written before the OAuth server has confirmed the token (ARCHITECTURE.md, trust rules).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from portals import binds
from portals.binding_state import portal_record_bindings
from portals.bitrix import client, errors
from portals.credentials import credential_store_installer
from portals.models import Credential, Portal
from portals.payload import is_ascii_number, normalise_domain
from portals.subscription import (
    DOORBELL_COOLDOWN,
    portal_subscription_refresh,
    portal_subscription_store,
    subscription_fields,
    subscription_from_app_info,
)
from portals.signals import portal_uninstalled
from portals.tokens import (
    ReauthRequired,
    expiry_from,
    portal_batch,
    portal_mark_needs_reauth,
    with_credential,
)
from portals.verification import VerificationRefused, application_token_matches, verify_app_info

logger = logging.getLogger(__name__)

LIFECYCLE_EVENTS = ("ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPPAYMENT")


@dataclass
class InstallGrant:
    """What an install page or event posted about the installing user's tokens."""

    member_id: str
    access_token: str
    refresh_token: str = ""
    expires: object = None
    expires_in: object = None
    domain: str | None = None
    server_endpoint: str | None = None
    application_token: str = ""
    app_status: str = ""
    scope: str = ""


class NotAdministrator(Exception):
    """Bitrix24 says the grant's user is no portal administrator: nothing is stored or bound.

    Every user of a portal sees an AUTH_ID in each widget frame and may open the app's pages, so
    a valid token proves a user, not an installer."""

    def __init__(self, *, domain: str, origin: str):
        super().__init__("Only a portal administrator can install or update this app.")
        self.domain, self.origin = domain, origin


def grant_verify(*, grant: InstallGrant) -> tuple[str, dict, dict]:
    """Ask the trusted OAuth server about the grant's token; (server, app_info, install).

    Raises UntrustedServer before any outbound call when the payload names a foreign server.
    """
    server = client.oauth_server_for(grant.server_endpoint)
    client.client_credentials()  # NotConfigured: say so, rather than "another application"
    try:
        info = client.oauth_app_info(server=server, access_token=grant.access_token)
    except (errors.AuthError, errors.InvalidClient, errors.AccessDenied) as exc:
        raise VerificationRefused(f"The OAuth server refused the token ({exc.code}).") from None
    install = verify_app_info(info, member_id=grant.member_id, domain=grant.domain)
    return server, info, install


def grant_prove_admin(*, grant: InstallGrant, info: dict, install: dict) -> int:
    """The grant's user id once the portal says (``profile``, ``ADMIN: true``) they are an admin.

    Asked on its own, before any bind: ordinary users may bind online events, so a batch that
    mixed the check with the binds would bind under a non-admin's token (protocol 2.5, 8).
    Stops: any user posting their widget AUTH_ID to the install page or in ONAPPINSTALL/UPDATE
    to become the installer (their token chosen by commands, their APPLICATION_TOKEN stored).
    """
    try:
        answer = client.call(
            client_endpoint=install["client_endpoint"], method="profile", access_token=grant.access_token
        )
    except errors.AuthError as exc:
        raise VerificationRefused(f"The portal refused the token ({exc.code}).") from None
    except errors.PrivateAddress:
        raise VerificationRefused("The portal's REST address is not acceptable: it resolves to a private "
                                  "or loopback address.") from None
    profile = answer.get("result")
    user_id = str(profile.get("ID", "")) if isinstance(profile, dict) else ""
    if not (is_ascii_number(user_id) and len(user_id) <= 18):
        raise VerificationRefused("The portal did not say who the token belongs to.")
    if info.get("user_id") not in (None, "") and str(info.get("user_id")) != user_id:
        raise VerificationRefused("The OAuth server and the portal disagree about the token's user.")
    if profile.get("ADMIN") is not True:
        parts = urlsplit(install["client_endpoint"])
        raise NotAdministrator(
            domain=normalise_domain(install.get("domain") or grant.domain), origin=f"{parts.scheme}://{parts.netloc}"
        )
    return int(user_id)


def portal_store_grant(*, grant: InstallGrant, server: str, info: dict, install: dict, user_id: int) -> tuple[Portal, Credential]:
    """Write the verified portal and its proven administrator's credential (one row each,
    however many identical requests arrive at once). An operator's Disable is kept."""
    now = timezone.now()
    portal_fields = {
        "domain": normalise_domain(install.get("domain") or grant.domain)[:255],
        "client_endpoint": install["client_endpoint"],  # validated by verify_app_info
        "server_endpoint": f"{server}/rest/",
        "status": Portal.Status.ACTIVE,
        "status_detail": "",
        # What the OAuth server says about the trial or subscription; the posted status is not
        # believed (protocol 15.1). The portal's own app.info, read in the bind batch, says more.
        **subscription_fields(subscription_from_app_info(info), complete=False),
        "scope": str(info.get("scope") or install.get("scope") or grant.scope or "")[:1024],
        "uninstalled_at": None,
    }
    if grant.application_token:
        portal_fields["application_token"] = grant.application_token
    for attempt in range(3):
        try:
            with transaction.atomic():
                portal, created = Portal.objects.select_for_update(of=("self",)).get_or_create(
                    member_id=grant.member_id, defaults={**portal_fields, "installed_at": now}
                )
                if not created:
                    fields = dict(portal_fields)
                    if portal.disabled_by_operator:
                        # Disable stands until an operator enables the portal again.
                        for name in ("status", "status_detail", "uninstalled_at"):
                            fields.pop(name)
                    elif portal.status == Portal.Status.UNINSTALLED:
                        fields["installed_at"] = now
                    for name, value in fields.items():
                        setattr(portal, name, value)
                    portal.save()
                credential = credential_store_installer(
                    portal=portal, user_id=user_id, access_token=grant.access_token,
                    refresh_token=grant.refresh_token,
                    expires_at=_verified_expiry(info, now=now) or expiry_from(
                        expires=grant.expires, expires_in=grant.expires_in, now=now
                    ),
                    now=now,
                )
                return portal, credential
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _verified_expiry(info: dict, *, now) -> dt.datetime | None:
    """When the OAuth server says the verified token expires (app.info ``expires``, ISO 8601).

    Believed over the posted AUTH_EXPIRES: a posted 0 would otherwise send the install's bind
    straight to a refresh of a token that was verified a moment ago."""
    value = info.get("expires")
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None or not now < parsed <= now + dt.timedelta(days=1):
        return None
    return parsed


@dataclass
class BindOutcome:
    bound: list[str]
    already_bound: list[str]
    failed: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.failed


def lifecycle_bind_commands() -> binds.BindCommands:
    """Our own lifecycle events on the one event handler URL (registered in ``PortalsConfig.ready``)."""
    handler = binds.public_url("portals:events")
    return {f"event_{event}": ("event.bind", {"event": event, "handler": handler}) for event in LIFECYCLE_EVENTS}


# The batch key under which the install reads the portal's app.info beside its binds.
APP_INFO = "app_info"


def commands_bind(
    *, credential: Credential, commands: binds.BindCommands, read_app_info: bool = False
) -> tuple[BindOutcome, dict | None]:
    """Run bind commands in one ``batch`` (with the portal's ``app.info`` when asked); the
    outcome and the app.info answer (None if not read, or it failed).

    "Handler already binded" counts as success, so running it again binds nothing new.
    """
    batch_commands = dict(commands)
    if read_app_info:
        batch_commands[APP_INFO] = ("app.info", {})
    outcome = BindOutcome(bound=[], already_bound=[], failed={})
    if not batch_commands:
        return outcome, None
    result = portal_batch(credential=credential, commands=batch_commands)
    for key in commands:
        error = result.errors.get(key)
        if error is None and key in result.results:
            outcome.bound.append(key)
        elif isinstance(error, errors.AlreadyBound):
            outcome.already_bound.append(key)
        else:
            outcome.failed[key] = str(error) if error else "no answer"
    info = result.results.get(APP_INFO) if read_app_info else None
    return outcome, info if isinstance(info, dict) else None


def portal_bind_handlers(*, portal: Portal, credential: Credential | None = None) -> BindOutcome:
    """Bind what every registered provider asks for (our lifecycle events, the placements'
    widgets, ...) and read the portal's ``app.info`` (trial days, licence), in one ``batch``.

    "Handler already binded" counts as success, so a reinstall or an update can run it again.
    """
    credential = credential or portal.admin_credential()
    if credential is None:
        raise ReauthRequired("NO_CREDENTIAL", "no administrator token is stored for this portal")
    outcome, info = commands_bind(credential=credential, commands=binds.bind_commands(), read_app_info=True)
    if info is not None:
        portal_subscription_store(portal=portal, subscription=subscription_from_app_info(info))
    portal_record_bindings(portal=portal, bound=outcome.bound + outcome.already_bound, missing=outcome.failed)
    return outcome


def portal_install(*, grant: InstallGrant) -> tuple[Portal, BindOutcome]:
    """Verify, prove the admin, store, bind: the install page and ONAPPINSTALL.

    Raises NotAdministrator (nothing written, nothing bound) for an ordinary user's token."""
    server, info, install = grant_verify(grant=grant)
    user_id = grant_prove_admin(grant=grant, info=info, install=install)
    portal, credential = portal_store_grant(grant=grant, server=server, info=info, install=install, user_id=user_id)
    logger.info("portal %s installed (%s)", portal.member_id, portal.domain)
    return portal, portal_bind_handlers(portal=portal, credential=credential)


def portal_update(*, grant: InstallGrant) -> tuple[Portal, BindOutcome]:
    """ONAPPUPDATE: its user auth proves it (the new application token cannot be compared with
    the old one); store the new token and bind again, since an update drops event handlers."""
    return portal_install(grant=grant)


def business_event_portal(*, member_id: str, application_token: str) -> Portal:
    """The installed portal a business event names, proven by its application token.

    Stops anyone who knows a portal's member_id from posting events in its name (the token is
    compared in constant time, and an unknown portal gets the same answer as a wrong token, so
    the answer tells nothing about which portals are installed). The token is seen by every user
    who opens the widget; what such a user could forge is a task event, and its handler re-reads
    the task from Bitrix24 instead of believing the event.
    """
    portal = Portal.objects.installed().filter(member_id=member_id).first()
    if portal is None or not application_token_matches(portal.application_token, application_token):
        raise VerificationRefused("The application token does not match an installed portal of this app.")
    return portal


@dataclass
class UninstallOutcome:
    portal: Portal
    changed: bool
    detail: str


# A credential whose token the OAuth server refuses like this no longer opens the app.
_REFUSED = (errors.AuthError, errors.InvalidClient)  # ReauthRequired is an AuthError
# The most recently used credentials tried when confirming an uninstall (admin ones first).
UNINSTALL_CONFIRMATION_CREDENTIALS = 50


class Confirmation:
    """What the stored credentials say about an ONAPPUNINSTALL (``_uninstall_confirmation``)."""

    INSTALLED = "installed"  # one still works: the event is forged
    CONFIRMED = "confirmed"  # every live one is refused now
    UNREACHABLE = "unreachable"  # the OAuth server could not tell
    NOTHING_TO_TRY = "nothing to try"  # no live chain at all: the event alone is no proof


def _live_credentials(*, portal: Portal) -> list[Credential]:
    """Credentials that can still tell us something: they hold a token, and they are not the
    installer's chain already known dead (a needs_reauth portal's admin refusal predates the
    event, so it proves nothing about it)."""
    queryset = Credential.objects.filter(portal=portal).exclude(access_token="", refresh_token="")
    if portal.status == Portal.Status.NEEDS_REAUTH:
        queryset = queryset.filter(is_admin=False)
    credentials = list(
        queryset.order_by("-is_admin", F("last_used_at").desc(nulls_last=True), "-refreshed_at", "-id")[
            :UNINSTALL_CONFIRMATION_CREDENTIALS
        ]
    )
    for credential in credentials:
        credential.portal = portal
    return credentials


def _uninstall_confirmation(*, portal: Portal) -> str:
    """Does any stored credential of the portal still work? (a ``Confirmation`` value)

    An application token is shown to every user who opens the widget, so an ONAPPUNINSTALL that
    carries it is not proof enough: the OAuth server must also refuse every live credential.
    Stops a user's forged uninstall, including one on a portal whose installer has left.
    """
    credentials = _live_credentials(portal=portal)
    if not credentials:
        return Confirmation.NOTHING_TO_TRY
    unreachable = False
    for credential in credentials:
        try:  # an expired_token answer is no refusal: the token service refreshes and asks again
            with_credential(
                credential=credential,
                action=lambda token: client.oauth_app_info(server=portal.server_endpoint, access_token=token),
            )
        except errors.NotInstalled:
            # The OAuth server says the app is gone from the portal: that is about the portal,
            # not one user's chain, and no user can make it say so while the app is installed.
            return Confirmation.CONFIRMED
        except _REFUSED:  # this chain is dead (spent, expired, its user left): ask the next one
            continue
        except errors.PaymentRequired:
            # Unpaid is still installed (protocol 15.4): not the refusal an uninstall leaves.
            return Confirmation.INSTALLED
        except (errors.TransportError, errors.RateLimited, errors.NotConfigured):
            unreachable = True
            continue
        return Confirmation.INSTALLED
    return Confirmation.UNREACHABLE if unreachable else Confirmation.CONFIRMED


def portal_holds_tokens(*, portal: Portal) -> bool:
    return Credential.objects.filter(portal=portal).exclude(access_token="", refresh_token="").exists()


def _portal_drop(*, portal: Portal) -> None:
    """Blank every token of the portal."""
    Credential.objects.filter(portal=portal).update(access_token="", refresh_token="", expires_at=None)


def portal_uninstall(*, member_id: str, application_token: str, clean: bool) -> UninstallOutcome:
    """ONAPPUNINSTALL: checked, confirmed, then soft-disabled (tokens blanked, the row kept)."""
    portal = Portal.objects.filter(member_id=member_id).first()
    if portal is None:
        raise VerificationRefused("Unknown portal.")
    if portal.status == Portal.Status.UNINSTALLED and not portal_holds_tokens(portal=portal):
        # Bitrix24 already uninstalled it. (An operator's "Disable" keeps the tokens, so a real
        # uninstall of a disabled portal still goes through the checks below and blanks them.)
        return UninstallOutcome(portal, False, "already uninstalled")
    if portal.application_token and not application_token_matches(portal.application_token, application_token):
        raise VerificationRefused("The application token does not match.")
    confirmation = _uninstall_confirmation(portal=portal)
    if confirmation == Confirmation.UNREACHABLE:
        portal_mark_needs_reauth(
            portal=portal,
            reason="An uninstall event arrived but the OAuth server could not be reached to "
            "confirm it; tokens were kept.",
        )
        return UninstallOutcome(portal, True, "unconfirmed: marked needs_reauth")
    if confirmation == Confirmation.INSTALLED:
        raise VerificationRefused("The app is still installed on this portal: uninstall refused.")
    confirmed = confirmation == Confirmation.CONFIRMED
    # With no live chain the event alone proves nothing: uninstalled, but nothing is purged.
    clean = clean and confirmed
    now = timezone.now()
    detail = "Uninstalled by Bitrix24 (ONAPPUNINSTALL)." if confirmed else (
        "Uninstalled by an ONAPPUNINSTALL that could not be confirmed (no working token was "
        "stored); nothing was purged. An administrator can open the app to install it again."
    )
    with transaction.atomic():
        Portal.objects.filter(pk=portal.pk).update(
            status=Portal.Status.UNINSTALLED, uninstalled_at=now, updated_at=now,
            status_detail=detail, application_token="",
        )
        _portal_drop(portal=portal)
    # Once more after the commit, and the apps' own data only now: a widget open in flight may
    # have written its viewer's tokens or its invocation before it could see the new status; a
    # write after this point is undone by the open itself (it checks after writing).
    _portal_drop(portal=portal)
    portal_uninstalled.send(sender=Portal, portal=portal, clean=clean)
    portal.refresh_from_db()
    outcome = "uninstalled" if confirmed else "uninstalled (unconfirmed: nothing purged)"
    logger.info("portal %s %s (clean=%s)", portal.member_id, outcome, clean)
    return UninstallOutcome(portal, True, outcome)


def portal_payment_doorbell(*, member_id: str) -> str:
    """ONAPPPAYMENT: it carries no token at all (protocol 15.3), so anyone who knows a member_id
    can post one. It is only a doorbell: re-read ``app.info`` with our own stored installer token
    and believe that alone; the posted STATUS and DAYS are never read. A word for the log."""
    portal = Portal.objects.filter(member_id=member_id).first()
    if portal is None:
        raise VerificationRefused("Unknown portal.")
    if portal.status not in (Portal.Status.ACTIVE, Portal.Status.PAYMENT_REQUIRED):
        return f"ignored: the portal is {portal.status}"
    checked = portal.subscription_checked_at
    if checked is not None and timezone.now() - checked < DOORBELL_COOLDOWN:
        # A flood of forged doorbells must not spend the portal's budget of REST calls.
        return "ignored: app.info was read moments ago"
    try:
        subscription = portal_subscription_refresh(portal=portal)
    except errors.PaymentRequired:
        return "checked: payment still required"
    except (ReauthRequired, errors.BitrixError) as exc:
        # Bitrix24 never redelivers an event: log it; sync_portals reads app.info again later.
        logger.warning("ONAPPPAYMENT for %s: app.info could not be read (%s)", member_id, getattr(exc, "code", exc))
        return "checked: app.info could not be read"
    logger.info("ONAPPPAYMENT for %s: %s, portal %s", member_id, subscription.describe(), portal.status)
    return "checked"
