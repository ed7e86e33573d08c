"""The one place that decides what a failure means to whoever sees it: the HTTP status and the
message of a Bitrix24-facing view, and the line an operator's command prints.

Every view of every app and the commands ask here, so "Bitrix24 timed out" is a 504 and says the
same thing whether the install page, the event handler or the widget's action met it.
"""
from __future__ import annotations

from portals import payload
from portals.bitrix import capacity, errors
from portals.logging import scrub
from portals.tokens import ReauthRequired
from portals.verification import VerificationRefused


class Refused(Exception):
    """A request we do not serve, from an app built on portals (the widget, its actions).

    ``str()`` is for the person who sees it; ``status`` is the answer (403 unless a subclass says).
    """

    status = 403


# The status word of a portal whose trial or subscription is over: a line, not a failure.
PAYMENT_REQUIRED = "payment required"

# What a Bitrix24-facing view catches: each of these has a status and a message below; anything
# else is our own bug and becomes Django's 500.
EXPECTED = (payload.PayloadError, VerificationRefused, Refused, errors.BitrixError)


def failure_status(exc: Exception) -> int:
    """The HTTP status for a failure of a Bitrix24-facing request (see ARCHITECTURE.md)."""
    if isinstance(exc, payload.PayloadError):
        return 400
    if isinstance(exc, Refused):
        return exc.status
    if isinstance(exc, (VerificationRefused, errors.UntrustedServer, ReauthRequired)):
        return 403
    if isinstance(exc, (errors.NotConfigured, capacity.PortalBusy, errors.RateLimited)):
        return 503
    if isinstance(exc, errors.PaymentRequired):
        return 402
    if isinstance(exc, errors.Timeout):
        return 504
    return 502


def failure_message(exc: Exception) -> str:
    """What the person (or the portal's log) is told; never a token."""
    if isinstance(exc, (payload.PayloadError, VerificationRefused, Refused)):
        return str(exc)
    if isinstance(exc, errors.UntrustedServer):
        return "The request names an OAuth server this app does not trust; nothing was sent to it."
    if isinstance(exc, errors.NotConfigured):
        return "This app is not configured yet: " + exc.description + "."
    if isinstance(exc, ReauthRequired):
        return exc.description
    if isinstance(exc, errors.PaymentRequired):
        return (
            "The app's trial or subscription on this Bitrix24 portal has ended: renew it in Bitrix24, "
            "then open the app again."
        )
    if isinstance(exc, (capacity.PortalBusy, errors.RateLimited)):
        return "Bitrix24 is slow to answer. Please try again in a moment."
    if isinstance(exc, errors.Timeout):
        return "Bitrix24 did not answer in time. Please open the app again to retry."
    return f"Bitrix24 answered with an error ({getattr(exc, 'code', '') or 'no answer'}). Please open the app again to retry."


def failure_line(exc: BaseException) -> tuple[str, str]:
    """(status word, detail) of a portal whose work failed, as an operator's command prints it."""
    if isinstance(exc, errors.PaymentRequired):
        return PAYMENT_REQUIRED, "the trial or subscription is over; tokens kept, not called until it is renewed"
    if isinstance(exc, ReauthRequired):
        status = "uninstalled" if exc.code == "UNINSTALLED" else "needs re-authorisation"
        return status, exc.description or str(exc)
    if isinstance(exc, errors.BitrixError):
        return "failed", scrub(str(exc))
    return "failed", scrub(f"{type(exc).__name__}: {exc}")


def failure_remedy(exc: BaseException) -> str:
    """What an operator does about a portal whose work failed: the hint in a command's recap."""
    if isinstance(exc, errors.PaymentRequired):
        return "ask the portal's administrator to renew the app's subscription; sync_portals then brings it back"
    if isinstance(exc, ReauthRequired):
        if exc.code == "UNINSTALLED":
            return "the app is not installed there: nothing to do unless the portal installs it again"
        return "ask an administrator of the portal to open the app once in Bitrix24 (or reinstall it)"
    if isinstance(exc, errors.InvalidClient):
        return "Bitrix24 refused B24_CLIENT_ID/B24_CLIENT_SECRET: check them against the app's settings"
    if isinstance(exc, errors.AccessDenied):
        return "the installer's token may not do this: check the app's scopes (placement) and reinstall it"
    if isinstance(exc, errors.RateLimited):
        return "Bitrix24 limited the requests: run again later, or with a lower --rate"
    if isinstance(exc, errors.PortalMoved):
        return "the portal answered from a new address: an administrator opening the app records it"
    if isinstance(exc, errors.TransportError):
        return "the portal did not answer (or not in time): run the command again for it later"
    return "read the reason above; run the command again for this portal once it is fixed"
