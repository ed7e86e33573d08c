"""The app's own page (POST /portals/app/): what everyone sees when they open the app, and what
an administrator sees besides (the portal's state and a repair button).

Opening the page writes nothing: the posted AUTH_ID is checked with one ``batch`` against the
stored client_endpoint (``profile`` says who it is and whether they are an admin, and the two
read-only ``*.get`` calls show the admin what is bound). Only the repair writes, and it is the
install itself (``portal_install``: OAuth server, ``profile`` ADMIN, then store and bind).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.utils.translation import gettext_lazy as _

from portals import binds
from portals.binding_state import binding_label
from portals.bitrix import client, errors
from portals.failures import Refused
from portals.models import Portal
from portals.payload import is_ascii_number, normalise_domain
from portals.relocation import following_a_move

logger = logging.getLogger(__name__)

NOT_INSTALLED = _("This app is not installed on this Bitrix24 portal.")
DISABLED = _("The app's operator has disabled it for this portal.")
DOMAIN_MISMATCH = _("The portal address does not match the installed portal.")
SESSION_EXPIRED = _("Your Bitrix24 session has expired. Open the app again.")


class AppPageRefused(Refused):
    """A POST to the app page we do not serve (403): nothing is written."""


@dataclass
class Binding:
    """One thing the app binds on every portal, and whether the portal reports it bound."""

    key: str
    method: str
    name: str
    bound: bool | None  # None: the portal could not tell us


@dataclass
class AppPage:
    portal: Portal
    viewer_id: int
    viewer_name: str
    admin: bool
    features: list[binds.Feature] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)

    @property
    def missing(self) -> list[Binding]:
        return [binding for binding in self.bindings if binding.bound is False]


def portal_for_app_page(*, member_id: str) -> Portal:
    portal = Portal.objects.filter(member_id=member_id).first()
    if portal is None:
        raise AppPageRefused(NOT_INSTALLED)
    if portal.disabled_by_operator:
        raise AppPageRefused(DISABLED)
    if portal.status == Portal.Status.UNINSTALLED:
        raise AppPageRefused(NOT_INSTALLED)
    return portal


def _bindings(results: dict) -> list[Binding]:
    """What the app declares (the install's bind commands), each marked bound or not from the
    portal's ``placement.get``/``event.get`` answers (None when it gave none)."""
    def rows(answer):
        return [row for row in answer if isinstance(row, dict)] if isinstance(answer, list) else None

    placements, events = rows(results.get("placements")), rows(results.get("events"))
    bindings = []
    for key, (method, params) in binds.bind_commands().items():
        known = placements is not None if method == "placement.bind" else events is not None
        bound = binds.bind_command_present((method, params), placements=placements or [], events=events or [])
        bindings.append(Binding(key=key, method=method, name=binding_label(key), bound=bound if known else None))
    return bindings


def app_page_load(*, portal: Portal, access_token: str, domain: str) -> AppPage:
    """One batch with the viewer's own token against the stored endpoint: who they are, and for
    an admin what is bound. AppPageRefused when Bitrix24 does not accept the token."""
    commands = {"profile": ("profile", {}), "placements": ("placement.get", {}), "events": ("event.get", {})}
    try:
        result = following_a_move(
            portal=portal, access_token=access_token,
            action=lambda token: client.batch(client_endpoint=portal.client_endpoint, access_token=token,
                                              commands=commands),
        )
    except errors.AuthError:
        raise AppPageRefused(SESSION_EXPIRED) from None
    if normalise_domain(portal.domain) != normalise_domain(domain):
        # A member_id copied from another portal, posted with a domain of the attacker's.
        raise AppPageRefused(DOMAIN_MISMATCH)
    profile = result.results.get("profile")
    viewer_id = str(profile.get("ID", "")) if isinstance(profile, dict) else ""
    if not is_ascii_number(viewer_id):
        if isinstance(result.errors.get("profile"), errors.AuthError):
            raise AppPageRefused(SESSION_EXPIRED)
        raise errors.TransportError("NO_PROFILE", "the portal did not say who opened the app")
    admin = profile.get("ADMIN") is True
    page = AppPage(
        portal=portal, viewer_id=int(viewer_id), admin=admin, features=binds.features(),
        viewer_name=f"{profile.get('NAME') or ''} {profile.get('LAST_NAME') or ''}".strip()[:200],
    )
    if admin:
        page.bindings = _bindings(result.results)
    return page
