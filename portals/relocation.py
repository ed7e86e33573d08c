"""Following a portal that changed its address: one home for the widget and the token service.

A portal that moved answers 302 (protocol 4.3). The Location header is never followed; the new
address comes from the trusted OAuth server, asked with a token of the portal's own.
"""
from __future__ import annotations

import logging
from typing import Callable, TypeVar

from django.utils import timezone

from portals.bitrix import client, errors
from portals.models import Portal
from portals.payload import normalise_domain
from portals.verification import VerificationRefused, verify_app_info

logger = logging.getLogger(__name__)
T = TypeVar("T")


def portal_relocate(*, portal: Portal, access_token: str) -> bool:
    """After a 302 from the portal: learn its new REST address from the trusted OAuth server.

    The Location header is never followed: it could point anywhere, and the token would go with
    it. ``member_id`` survives a domain change (protocol 4.3), so the OAuth server's answer for our
    token names the portal's current address. True when the stored address changed.
    """
    info = client.oauth_app_info(server=portal.server_endpoint, access_token=access_token)
    try:
        install = verify_app_info(info, member_id=portal.member_id)  # our app, this portal
    except VerificationRefused:
        return False
    endpoint = install["client_endpoint"]
    if endpoint == portal.client_endpoint:
        return False
    domain = normalise_domain(install.get("domain") or portal.domain)[:255]
    Portal.objects.filter(pk=portal.pk).update(client_endpoint=endpoint, domain=domain, updated_at=timezone.now())
    logger.info("portal %s moved from %s to %s", portal.member_id, portal.domain, domain)
    portal.client_endpoint, portal.domain = endpoint, domain
    return True


def following_a_move(*, portal: Portal, access_token: str, action: Callable[[str], T]) -> T:
    """Run ``action(access_token)`` against the portal's stored address; if the portal answers
    that it moved, re-learn the address and run it once more (``portal`` is updated in place)."""
    try:
        return action(access_token)
    except errors.PortalMoved:
        if not portal_relocate(portal=portal, access_token=access_token):
            raise
    return action(access_token)
