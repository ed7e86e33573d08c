"""Pure checks of a posted payload against what the trusted OAuth server says about its token.

Each check raises VerificationRefused (the views answer 403) and says which attack it stops.
"""
from __future__ import annotations

import hmac

from django.conf import settings

from portals.bitrix.client import UntrustedEndpoint, validate_client_endpoint
from portals.payload import normalise_domain


class VerificationRefused(Exception):
    """The request is not what it claims to be; ``str()`` is safe to show the caller."""


def verify_app_info(info: dict, *, member_id: str, domain: str | None = None) -> dict:
    """Check the OAuth server's ``app.info`` answer; return its ``install`` part, with
    ``client_endpoint`` normalised.

    Stops: a token of another app being replayed to us (client_id), a token of portal A posted
    with portal B's member_id to overwrite B's record (member_id), a posted DOMAIN that is
    not the token's portal (domain), and a REST address we must not send tokens to (endpoint).
    """
    install = info.get("install")
    if not isinstance(install, dict):
        raise VerificationRefused("The OAuth server did not confirm an installation for this token.")
    if not hmac.compare_digest(str(info.get("client_id", "")), str(settings.B24_CLIENT_ID)):
        raise VerificationRefused("The token belongs to another application.")
    if not hmac.compare_digest(str(install.get("member_id", "")), str(member_id)):
        raise VerificationRefused("The token belongs to another portal (member_id mismatch).")
    if domain and normalise_domain(install.get("domain")) != normalise_domain(domain):
        raise VerificationRefused("The posted DOMAIN is not the token's portal.")
    try:
        endpoint = validate_client_endpoint(str(install.get("client_endpoint", "")))
    except UntrustedEndpoint as exc:
        raise VerificationRefused(f"The portal's REST address is not acceptable: {exc}") from None
    return {**install, "client_endpoint": endpoint}


def application_token_matches(stored: str, posted: str) -> bool:
    """Constant-time compare, so the stored token cannot be guessed byte by byte from timings."""
    if not stored or not posted:
        return False
    return hmac.compare_digest(stored.encode(), posted.encode())
