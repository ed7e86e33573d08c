"""The only module that speaks HTTP to Bitrix24 and its OAuth servers.

One ``requests.Session`` for the process, a (connect, read) timeout on every call, redirects never
followed (a portal that moved answers 302 and we must not re-send a token to wherever it points),
and every error turned into the exception for its ``error`` code (``portals.bitrix.errors``).
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, urlsplit

import requests
import urllib3
import urllib3.connection
import urllib3.exceptions
import urllib3.util.connection
from django.conf import settings

from portals import metrics
from portals import ratelimit
from portals.bitrix import capacity, errors

logger = logging.getLogger(__name__)

USER_AGENT = "bitrix-widget-backend/1.0 (+django)"
# Seconds to wait before each retry of a rate-limited call; its length bounds the retries.
RATE_LIMIT_BACKOFF = (0.5, 1.0, 2.0)
BATCH_MAX_COMMANDS = 50

class _AddressRefused(OSError):
    """Raised while connecting (an OSError, so urllib3 reports it as a failed connection)."""


def _vetted_address(host: str, port: int) -> str:
    """The address to connect to for ``host``: every address it resolves to must be public.

    A syntax check of the portal address lets ``127.0.0.1.nip.io`` or ``localhost.localdomain``
    through; only resolving tells. The caller connects to the address checked here, never to a
    second lookup (which a rebinding DNS could answer differently).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            raise _AddressRefused(f"{host} resolves to a non-public address")
        addresses.append(info[4][0])
    if not addresses:
        raise socket.gaierror(f"{host} has no address")
    return addresses[0]


def _guarded(host: str) -> bool:
    """Checked at connect time unless private endpoints are allowed (development, tests); the
    configured OAuth servers are the operator's choice, not a portal's."""
    if settings.B24_ALLOW_PRIVATE_ENDPOINTS:
        return False
    return host.rstrip(".").lower() not in {urlsplit(server).hostname for server in trusted_oauth_servers()}


class _GuardedConnectionMixin:
    def _new_conn(self):
        if not _guarded(self.host):
            return super()._new_conn()
        try:
            address = _vetted_address(self._dns_host, self.port)
            return urllib3.util.connection.create_connection(
                (address, self.port), self.timeout, source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except socket.timeout as exc:
            raise urllib3.exceptions.ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from exc
        except OSError as exc:
            raise urllib3.exceptions.NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc


class _GuardedHTTPConnection(_GuardedConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _GuardedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    """Direct connections go through the address check (a proxy's are checked in ``_exchange``)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def _refused_address(exc: BaseException) -> bool:
    """Did connecting fail because the address was refused? (urllib3 wraps the reason)"""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _AddressRefused):
            return True
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None),
                        *[arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]])
    return False


_session = requests.Session()
_session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
_adapter = _GuardedAdapter(pool_connections=32, pool_maxsize=64, max_retries=0)
_session.mount("http://", _adapter)
_session.mount("https://", _adapter)

# The environment is read once, here, not on every call: requests' trust_env re-reads os.environ
# (proxies, NO_PROXY, the CA bundle, ~/.netrc) per request, about 0.15 ms of CPU per widget open
# (bench/run.py). HTTP_PROXY/HTTPS_PROXY/ALL_PROXY with NO_PROXY, and REQUESTS_CA_BUNDLE or
# CURL_CA_BUNDLE, mean what they mean to requests; set them before the process starts. ~/.netrc is
# no longer consulted: no stored password rides along with a token to a host a portal named.
_session.trust_env = False
_session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
_ENV_PROXIES = requests.utils.getproxies()


@lru_cache(maxsize=4096)
def _proxies_for_origin(origin: str) -> dict:
    return {} if requests.utils.should_bypass_proxies(origin, no_proxy=None) else dict(_ENV_PROXIES)


def _proxies_for(url: str) -> dict:
    """The environment's proxies for ``url``: none set, or NO_PROXY names its host, gives {}."""
    if not _ENV_PROXIES:
        return {}
    parts = urlsplit(url)
    return _proxies_for_origin(f"{parts.scheme}://{parts.netloc}")


# --- addresses we may talk to ---------------------------------------------------------------------


def _origin(url: str) -> str:
    """scheme://host[:port], lower-cased, with the default port dropped."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").rstrip(".").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}"


def trusted_oauth_servers() -> list[str]:
    return [_origin(server) for server in settings.B24_OAUTH_SERVERS if server.strip()]


def oauth_server_for(server_endpoint: str | None) -> str:
    """The configured OAuth server a payload's ``server_endpoint`` names (the first when none).

    Stops the attack where a forged payload names a host of its own so that we send it our
    client_secret or trust its ``app.info`` answer: anything not configured raises.
    """
    servers = trusted_oauth_servers()
    if not servers:
        raise errors.UntrustedServer("NO_OAUTH_SERVER", "B24_OAUTH_SERVERS is empty")
    if not server_endpoint:
        return servers[0]
    try:
        origin = _origin(server_endpoint)
        parts = urlsplit(server_endpoint.strip())
    except ValueError:
        origin, parts = "", None
    if origin not in servers or parts is None or parts.username or parts.password:
        raise errors.UntrustedServer(
            "UNTRUSTED_SERVER", "the OAuth server named in the request is not one we trust"
        )
    return origin


_HOST_NAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


class UntrustedEndpoint(ValueError):
    """A portal REST address we refuse to call (see ``validate_client_endpoint``)."""


def validate_client_endpoint(url: str) -> str:
    """A portal REST base fit to receive a user's token, normalised, or UntrustedEndpoint.

    https on the default port, a DNS name (no IP literal, no user:password@), a path ending in
    /rest/. Plain http, odd ports and loopback or private addresses pass only with
    B24_ALLOW_PRIVATE_ENDPOINTS (development and tests): they would let a token be sent inside
    our own network.
    """
    allow_private = settings.B24_ALLOW_PRIVATE_ENDPOINTS
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except (ValueError, AttributeError) as exc:
        raise UntrustedEndpoint(f"not a URL: {url!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not allow_private):
        raise UntrustedEndpoint("the portal address must use https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UntrustedEndpoint("the portal address must not contain a user name or password")
    if parts.query or parts.fragment:
        raise UntrustedEndpoint("the portal address must not contain a query or fragment")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UntrustedEndpoint("the portal address has no host")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UntrustedEndpoint("the portal host name is not a valid domain name") from exc
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is None and not _HOST_NAME.fullmatch(host):
        raise UntrustedEndpoint("the portal host name is not a valid domain name")
    # 127.1, 0x7f.0.0.1, 0177.0.0.1 and 2130706433 are no domain names: the resolver reads them
    # as IPv4 addresses (all four are 127.0.0.1), though ipaddress does not.
    ip_literal = address is not None or bool(_NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]))
    if ip_literal and not allow_private:
        raise UntrustedEndpoint("the portal address must be a domain name, not an IP address")
    if not ip_literal and (host == "localhost" or host.endswith(".localhost") or "." not in host):
        if not allow_private:
            raise UntrustedEndpoint("the portal address must be a public domain name")
    if port not in (None, 443) and not (allow_private or (scheme == "http" and port == 80)):
        raise UntrustedEndpoint("the portal address must use the standard https port")
    if not parts.path.endswith("/rest/"):
        raise UntrustedEndpoint("the portal REST address must end in /rest/")
    netloc = host if port in (None, 443 if scheme == "https" else 80) else f"{host}:{port}"
    if address is not None and address.version == 6:
        netloc = f"[{host.strip('[]')}]" + (f":{port}" if port else "")
    return f"{scheme}://{netloc}{parts.path}"


# --- the wire -------------------------------------------------------------------------------------


def _timeout() -> tuple[float, float]:
    return (settings.B24_CONNECT_TIMEOUT, settings.B24_READ_TIMEOUT)


def _send(http_method: str, url: str, *, method: str, **kwargs) -> dict:
    """One HTTP exchange, counted in the metrics under ``method`` (a name from our code, never
    a URL): the parsed JSON body, or the exception for what went wrong."""
    capacity.release_database_connections()  # the wait on Bitrix24 holds no pooled connection
    started = time.monotonic()
    failure: BaseException | None = None
    try:
        return _exchange(http_method, url, **kwargs)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        metrics.bitrix_calls.labels(method, metrics.outcome_of(failure)).inc()
        metrics.bitrix_call_seconds.labels(method).observe(time.monotonic() - started)


def _exchange(http_method: str, url: str, **kwargs) -> dict:
    proxies = _proxies_for(url)
    try:
        if proxies and _guarded(urlsplit(url).hostname or ""):
            # The proxy connects, not us: check the name here (the proxy may resolve it anew).
            parts = urlsplit(url)
            _vetted_address(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        response = _session.request(
            http_method, url, timeout=_timeout(), allow_redirects=False, proxies=proxies, **kwargs
        )
    except requests.Timeout as exc:
        raise errors.Timeout("TIMEOUT", "Bitrix24 did not answer in time") from None
    except (requests.RequestException, OSError) as exc:
        if _refused_address(exc):
            raise errors.PrivateAddress(
                "PRIVATE_ADDRESS", "the portal's address resolves to a private or loopback address"
            ) from None
        raise errors.TransportError("CONNECTION_FAILED", type(exc).__name__) from None
    if response.is_redirect or 300 <= response.status_code < 400:
        raise errors.PortalMoved(response.headers.get("Location", ""), status=response.status_code)
    try:
        payload = response.json()
    except ValueError:
        raise errors.TransportError(
            "BAD_RESPONSE", f"HTTP {response.status_code} without a JSON body",
            status=response.status_code,
        ) from None
    if isinstance(payload, dict) and payload.get("error"):
        raise errors.error_from_payload(payload, status=response.status_code)
    if response.status_code >= 400 or not isinstance(payload, dict):
        raise errors.TransportError(
            "BAD_RESPONSE", f"HTTP {response.status_code} without a Bitrix24 answer",
            status=response.status_code,
        )
    return payload


def _with_rate_limit_retries(send, *, retry: bool = True):
    """Retry ``send()`` on QUERY_LIMIT_EXCEEDED with bounded backoff (protocol 4.4); with ``retry``
    off (a widget request: a person is waiting and a thread is held) the first refusal is final."""
    for delay in (*(RATE_LIMIT_BACKOFF if retry else ()), None):
        try:
            return send()
        except errors.BudgetExhausted:
            raise  # our own limiter already waited as long as the caller may
        except errors.RateLimited:
            metrics.rate_limit_hits.inc()
            if delay is None:
                raise
            time.sleep(delay)


# --- the OAuth server -----------------------------------------------------------------------------


def client_credentials() -> tuple[str, str]:
    if not settings.B24_CLIENT_ID or not settings.B24_CLIENT_SECRET:
        raise errors.NotConfigured(
            "NOT_CONFIGURED", "B24_CLIENT_ID and B24_CLIENT_SECRET must be set"
        )
    return settings.B24_CLIENT_ID, settings.B24_CLIENT_SECRET


def oauth_app_info(*, server: str, access_token: str) -> dict:
    """The OAuth server's ``app.info`` for a token: whose app, which portal, which user."""
    server = oauth_server_for(server)
    payload = _send("GET", f"{server}/rest/app.info", method="oauth app.info", params={"auth": access_token})
    result = payload.get("result")
    if not isinstance(result, dict):
        raise errors.TransportError("BAD_RESPONSE", "app.info answered without a result")
    return result


def oauth_refresh(*, server: str, refresh_token: str) -> dict:
    """Spend a refresh token. Its answer holds the new pair; the old one is dead (single-use)."""
    server = oauth_server_for(server)
    client_id, client_secret = client_credentials()
    try:
        payload = _send(
            "GET",
            f"{server}/oauth/token/",
            method="oauth token",
            params={
                "grant_type": "refresh_token",
                "client_id": client_id,
                "client_secret": client_secret,
                "refresh_token": refresh_token,
            },
        )
        # A 200 without access_token is an error (wrong_client answers 200, protocol 3.6).
        if not payload.get("access_token") or not payload.get("refresh_token"):
            raise errors.TransportError("BAD_RESPONSE", "the OAuth server answered without tokens")
    except errors.AuthError:
        metrics.token_refreshes.labels("refused").inc()
        raise
    except errors.BitrixError:
        metrics.token_refreshes.labels("failed").inc()
        raise
    metrics.token_refreshes.labels("ok").inc()
    return payload


# --- portal REST ----------------------------------------------------------------------------------


def call(
    *, client_endpoint: str, method: str, access_token: str, params: dict | None = None,
    retry_rate_limited: bool = True,
) -> dict:
    """Call one REST method; the whole answer (``result``, and ``total``/``next`` for lists).

    Each attempt takes a slot of the portal's bulkhead (``capacity.portal_slot``: PortalBusy or
    PortalFailing at once when the portal has its share of this process's calls in flight or
    keeps timing out), then its turn in the portal's budget shared by every process (a wait for
    the turn holds the slot: it is this portal's wait). ``retry_rate_limited`` off:
    QUERY_LIMIT_EXCEEDED is raised, not slept on (widget requests)."""
    endpoint = validate_client_endpoint(client_endpoint)  # normalised: one key per portal
    url = f"{endpoint}{method}"
    body = {**(params or {}), "auth": access_token}

    def attempt() -> dict:
        with capacity.portal_slot(endpoint):
            ratelimit.acquire(endpoint)  # the portal's budget, shared with every other process
            return _send("POST", url, method=method, json=body)

    return _with_rate_limit_retries(attempt, retry=retry_rate_limited)


def build_query(params: dict, prefix: str = "") -> str:
    """PHP ``http_build_query``: nested dicts and lists as ``a[b][0]=c`` (what ``batch`` expects)."""
    pairs: list[str] = []
    items = params.items() if isinstance(params, dict) else enumerate(params)
    for key, value in items:
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, (dict, list, tuple)):
            nested = build_query(value if isinstance(value, dict) else list(value), name)
            if nested:
                pairs.append(nested)
        else:
            if isinstance(value, bool):
                value = "Y" if value else "N"
            pairs.append(f"{quote(name, safe='[]')}={quote(str(value), safe='')}")
    return "&".join(pairs)


@dataclass
class BatchResult:
    results: dict = field(default_factory=dict)
    errors: dict[str, errors.BitrixError] = field(default_factory=dict)


def batch(
    *, client_endpoint: str, access_token: str, commands: dict[str, tuple[str, dict]], halt: bool = False,
    retry_rate_limited: bool = True,
) -> BatchResult:
    """Several methods in one request (at most 50). Each command's error comes back separately."""
    if len(commands) > BATCH_MAX_COMMANDS:
        raise ValueError(f"batch takes at most {BATCH_MAX_COMMANDS} commands")
    cmd = {
        key: f"{method}?{build_query(params)}" if params else method
        for key, (method, params) in commands.items()
    }
    payload = call(
        client_endpoint=client_endpoint,
        method="batch",
        access_token=access_token,
        params={"halt": 1 if halt else 0, "cmd": cmd},
        retry_rate_limited=retry_rate_limited,
    )
    outer = payload.get("result") or {}
    results = outer.get("result") or {}
    raw_errors = outer.get("result_error") or {}
    if isinstance(results, list):  # PHP sends an empty object as []
        results = {}
    if isinstance(raw_errors, list):
        raw_errors = {}
    return BatchResult(
        results=results,
        errors={key: errors.error_from_payload(value) for key, value in raw_errors.items()},
    )


def list_all(
    *, client_endpoint: str, access_token: str, method: str, params: dict | None = None, max_pages: int = 200
) -> list:
    """Every item of a list method, following ``next`` (50 items a page, protocol 4.5)."""
    items: list = []
    start = 0
    for _ in range(max_pages):
        payload = call(
            client_endpoint=client_endpoint,
            method=method,
            access_token=access_token,
            params={**(params or {}), "start": start},
        )
        page = payload.get("result") or []
        items.extend(page if isinstance(page, list) else [page])
        if payload.get("next") is None:
            break
        start = payload["next"]
    return items
