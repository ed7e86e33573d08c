"""What happens to a portal: install, update, uninstall, and binding our handlers on it.

Plain functions with keyword arguments; views, events, commands and the admin all call these.
Nothing is written before the OAuth server has confirmed the token (ARCHITECTURE.md, trust rules).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from portals import binds
from portals.bitrix import client, errors
from portals.credentials import credential_store_installer
from portals.models import Credential, Portal
from portals.payload import normalise_domain
from portals.signals import portal_uninstalled
from portals.tokens import (
    ReauthRequired,
    credential_access_token,
    expiry_from,
    portal_batch,
    portal_mark_needs_reauth,
)
from portals.verification import VerificationRefused, application_token_matches, verify_app_info

logger = logging.getLogger(__name__)

LIFECYCLE_EVENTS = ("ONAPPUNINSTALL", "ONAPPUPDATE")


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


def portal_store_grant(*, grant: InstallGrant, server: str, info: dict, install: dict) -> tuple[Portal, Credential]:
    """Write the verified portal and its installer's credential (one row each, however many
    identical requests arrive at once)."""
    now = timezone.now()
    portal_fields = {
        "domain": normalise_domain(install.get("domain") or grant.domain)[:255],
        "client_endpoint": install["client_endpoint"],  # validated by verify_app_info
        "server_endpoint": f"{server}/rest/",
        "status": Portal.Status.ACTIVE,
        "status_detail": "",
        "app_status": str(install.get("status") or grant.app_status or "")[:1],
        "scope": str(info.get("scope") or install.get("scope") or grant.scope or "")[:1024],
        "uninstalled_at": None,
    }
    if grant.application_token:
        portal_fields["application_token"] = grant.application_token
    user_id = _int_or_none(info.get("user_id"))
    for attempt in range(3):
        try:
            with transaction.atomic():
                portal, created = Portal.objects.select_for_update().get_or_create(
                    member_id=grant.member_id, defaults={**portal_fields, "installed_at": now}
                )
                if not created:
                    if portal.status == Portal.Status.UNINSTALLED:
                        portal_fields["installed_at"] = now
                    for name, value in portal_fields.items():
                        setattr(portal, name, value)
                    portal.save()
                credential = credential_store_installer(
                    portal=portal, user_id=user_id or 0, access_token=grant.access_token,
                    refresh_token=grant.refresh_token,
                    expires_at=expiry_from(expires=grant.expires, expires_in=grant.expires_in, now=now), now=now,
                )
                return portal, credential
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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


def portal_bind_handlers(*, portal: Portal, credential: Credential | None = None) -> BindOutcome:
    """Bind what every registered provider asks for (our lifecycle events, the placements'
    widgets, ...) in one ``batch`` request.

    "Handler already binded" counts as success, so a reinstall or an update can run it again.
    """
    credential = credential or portal.admin_credential()
    if credential is None:
        raise ReauthRequired("NO_CREDENTIAL", "no administrator token is stored for this portal")
    commands = binds.bind_commands()
    result = portal_batch(credential=credential, commands=commands)
    outcome = BindOutcome(bound=[], already_bound=[], failed={})
    for key in commands:
        error = result.errors.get(key)
        if error is None and key in result.results:
            outcome.bound.append(key)
        elif isinstance(error, errors.AlreadyBound):
            outcome.already_bound.append(key)
        else:
            outcome.failed[key] = str(error) if error else "no answer"
    return outcome


def portal_install(*, grant: InstallGrant) -> tuple[Portal, BindOutcome]:
    """Verify, store, bind: the install page and ONAPPINSTALL."""
    server, info, install = grant_verify(grant=grant)
    portal, credential = portal_store_grant(grant=grant, server=server, info=info, install=install)
    logger.info("portal %s installed (%s)", portal.member_id, portal.domain)
    return portal, portal_bind_handlers(portal=portal, credential=credential)


def portal_update(*, grant: InstallGrant) -> tuple[Portal, BindOutcome]:
    """ONAPPUPDATE: its user auth proves it (the new application token cannot be compared with
    the old one); store the new token and bind again, since an update drops event handlers."""
    return portal_install(grant=grant)


@dataclass
class UninstallOutcome:
    portal: Portal
    changed: bool
    detail: str


def _uninstall_confirmed(*, portal: Portal) -> bool | None:
    """Does the stored installer token no longer work? True, False, or None (cannot tell).

    An application token is shown to every user who opens the widget, so an ONAPPUNINSTALL that
    carries it is not proof enough: the OAuth server must also refuse our stored credential.
    """
    credential = portal.admin_credential()
    if credential is None or not (credential.access_token or credential.refresh_token):
        return True
    try:
        token = credential_access_token(credential=credential)
        client.oauth_app_info(server=portal.server_endpoint, access_token=token)
    except ReauthRequired:
        return True
    except (errors.AuthError, errors.InvalidClient):
        return True
    except (errors.TransportError, errors.RateLimited, errors.NotConfigured):
        return None
    return False


def portal_holds_tokens(*, portal: Portal) -> bool:
    return Credential.objects.filter(portal=portal).exclude(access_token="", refresh_token="").exists()


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
    confirmed = _uninstall_confirmed(portal=portal)
    if confirmed is None:
        portal_mark_needs_reauth(
            portal=portal,
            reason="An uninstall event arrived but the OAuth server could not be reached to "
            "confirm it; tokens were kept.",
        )
        return UninstallOutcome(portal, True, "unconfirmed: marked needs_reauth")
    if confirmed is False:
        raise VerificationRefused("The app is still installed on this portal: uninstall refused.")
    now = timezone.now()
    with transaction.atomic():
        Portal.objects.filter(pk=portal.pk).update(
            status=Portal.Status.UNINSTALLED, uninstalled_at=now, updated_at=now,
            status_detail="Uninstalled by Bitrix24 (ONAPPUNINSTALL)."
        )
        Credential.objects.filter(portal=portal).update(access_token="", refresh_token="", expires_at=None)
        portal_uninstalled.send(sender=Portal, portal=portal, clean=clean)
    portal.refresh_from_db()
    logger.info("portal %s uninstalled (clean=%s)", portal.member_id, clean)
    return UninstallOutcome(portal, True, "uninstalled")
