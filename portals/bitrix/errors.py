"""One exception hierarchy for everything Bitrix24 can answer, keyed on its ``error`` code.

The HTTP status of an error differs between Bitrix24's docs and SDKs (protocol doc, 4.3 and 3.6),
so callers branch on the class, which is chosen from the code, never from the status.
"""


class BitrixError(Exception):
    """Bitrix24 or its OAuth server answered with an error (or not at all)."""

    def __init__(self, code: str = "", description: str = "", *, status: int | None = None):
        self.code = code
        self.description = description
        self.status = status
        super().__init__(f"{code}: {description}" if description else code or self.__class__.__name__)


class AuthError(BitrixError):
    """The token was refused: a person must act, or a refresh is due (see subclasses)."""


class ExpiredToken(AuthError):
    """``expired_token``: refresh once and retry once."""


class InvalidToken(AuthError):
    """The token is unknown or forged (``invalid_token``, ``NO_AUTH_FOUND``...): never retry."""


class InvalidGrant(AuthError):
    """The refresh token is spent, expired or revoked: the portal needs a new admin token."""


class NotInstalled(AuthError):
    """The app is gone from the portal (``NOT_INSTALLED``, ``APPLICATION_NOT_FOUND``...)."""


class PaymentRequired(BitrixError):
    """``PAYMENT_REQUIRED``: the trial or subscription is over (protocol 15.4). The app is still
    installed and its tokens are kept; it is not an auth error, so nothing treats it as one."""


class InvalidClient(BitrixError):
    """Our client_id/client_secret were refused (``invalid_client``, ``wrong_client``)."""


class AccessDenied(BitrixError):
    """The token is fine but its user may not do this (``ACCESS_DENIED``, ``insufficient_scope``...)."""


class RateLimited(BitrixError):
    """``QUERY_LIMIT_EXCEEDED`` and kin: back off and retry a bounded number of times."""


class BudgetExhausted(RateLimited):
    """Our own limiter refused the call: the portal's shared budget is used up for longer than
    the caller may wait (portals/ratelimit.py). Nothing was sent."""


class AlreadyBound(BitrixError):
    """``ERROR_CORE`` "Handler already binded": the binding we wanted exists already."""


class NotFound(BitrixError):
    """An unknown method or placement (``ERROR_METHOD_NOT_FOUND``, ``ERROR_PLACEMENT_NOT_FOUND``)."""


class TransportError(BitrixError):
    """No usable answer: connection refused, a 5xx without a Bitrix24 error, or a body that is not JSON."""


class Timeout(TransportError):
    """Bitrix24 did not answer within our timeout."""


class PortalMoved(TransportError):
    """The portal answered 302: its address changed (protocol 4.3). ``location`` says where."""

    def __init__(self, location: str, *, status: int = 302):
        self.location = location
        super().__init__("PORTAL_MOVED", f"the portal moved to {location}", status=status)


class PrivateAddress(TransportError):
    """The portal's host name resolves to a loopback, private or otherwise non-public address:
    refused when connecting, so a token is never sent into our own network."""


class UntrustedServer(BitrixError):
    """A payload named an OAuth server that is not in B24_OAUTH_SERVERS: nothing is sent there."""


class NotConfigured(BitrixError):
    """B24_CLIENT_ID / B24_CLIENT_SECRET are not set, so no token can be verified or refreshed."""


_BY_CODE: dict[str, type[BitrixError]] = {
    "expired_token": ExpiredToken,
    "invalid_token": InvalidToken,
    "NO_AUTH_FOUND": InvalidToken,
    "authorization_error": InvalidToken,
    "invalid_grant": InvalidGrant,
    "NOT_INSTALLED": NotInstalled,
    "APPLICATION_NOT_FOUND": NotInstalled,
    "ERROR_OAUTH": NotInstalled,
    "PAYMENT_REQUIRED": PaymentRequired,
    "PORTAL_DELETED": NotInstalled,
    "invalid_client": InvalidClient,
    "wrong_client": InvalidClient,
    "ACCESS_DENIED": AccessDenied,
    "insufficient_scope": AccessDenied,
    "invalid_scope": AccessDenied,
    "INVALID_CREDENTIALS": AccessDenied,
    "user_access_error": AccessDenied,
    "WRONG_AUTH_TYPE": AccessDenied,
    "METHOD_CONFIRM_WAITING": AccessDenied,
    "QUERY_LIMIT_EXCEEDED": RateLimited,
    "OVERLOAD_LIMIT": RateLimited,
    "OPERATION_TIME_LIMIT": RateLimited,
    "ERROR_METHOD_NOT_FOUND": NotFound,
    "ERROR_PLACEMENT_NOT_FOUND": NotFound,
    "ERROR_EVENT_NOT_FOUND": NotFound,
    "INTERNAL_SERVER_ERROR": TransportError,
    "ERROR_UNEXPECTED_ANSWER": TransportError,
}


def error_from_payload(payload: dict, *, status: int | None = None) -> BitrixError:
    """The exception for a Bitrix24 error body ``{"error": ..., "error_description": ...}``."""
    code = str(payload.get("error", "") or "")
    description = str(payload.get("error_description", "") or "")
    if code == "ERROR_CORE" and "already bind" in description.lower():
        return AlreadyBound(code, description, status=status)
    return _BY_CODE.get(code, BitrixError)(code, description, status=status)
