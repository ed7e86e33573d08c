"""What keeps one portal from taking the server down with it.

Real portals answer in 100-500 ms, sometimes seconds, and any of them can stall. Three guards,
each per portal and per process (every gunicorn process guards its own threads):

- the bulkhead: a portal holds at most ``B24_PORTAL_MAX_CALLS`` of this process's in-flight
  calls to Bitrix24; one more fails at once with ``PortalBusy`` instead of parking a thread;
- the circuit breaker: after ``B24_BREAKER_FAILURES`` timeouts or failed connections in a row a
  portal is failed fast (``PortalFailing``) for ``B24_BREAKER_SECONDS``; then one call probes it,
  and an answer closes the breaker again;
- refused tokens: the opens of a portal whose tokens Bitrix24 keeps refusing are throttled
  (``B24_REFUSED_TOKENS_BURST``, refilled at ``B24_REFUSED_TOKENS_PER_MINUTE``), so junk AUTH_IDs
  cannot spend the portal's budget of calls; tokens Bitrix24 accepted lately pass.

The budget Bitrix24 itself grants a portal (2 calls a second, burst 50) is shared by every process
and so lives in the broker, not here: ``portal_slot`` is where a cross-process limiter plugs in.

And while a request waits on Bitrix24 it holds no database connection from the pool
(``release_database_connections``), so connections stay bounded by the pool, not by threads.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

from portals.bitrix import errors


class PortalBusy(errors.TransportError):
    """This portal already has its share of our in-flight calls: try again in a moment."""


class PortalFailing(PortalBusy):
    """This portal kept timing out: it is failed fast for a short while (the breaker is open)."""


class TokensThrottled(PortalBusy):
    """Bitrix24 refused too many tokens for this portal lately: unknown tokens wait their turn."""


def release_database_connections() -> None:
    """Hand pooled connections back before waiting on Bitrix24 (the next query takes one again).

    Only for pooled connections outside a transaction: closing a plain one would cost a new
    connection on the next query, and inside a transaction the connection must stay."""
    for connection in connections.all(initialized_only=True):
        if (connection.connection is not None and not connection.in_atomic_block
                and connection.settings_dict.get("OPTIONS", {}).get("pool")):
            connection.close()


# --- the bulkhead and the breaker -----------------------------------------------------------------


@dataclass
class _Portal:
    in_flight: int = 0
    failures: int = 0  # timeouts and failed connections in a row
    open_until: float = 0.0  # monotonic; 0: the breaker is closed
    probing: bool = False  # half-open: one call is testing the portal


_lock = threading.Lock()
_portals: dict[str, _Portal] = {}


def _counts_as_failure(exc: BaseException) -> bool:
    """The portal did not answer usefully: timeouts, refused connections, 5xx without an answer.
    A 302 or any Bitrix24 error code is an answer."""
    return isinstance(exc, errors.TransportError) and not isinstance(exc, (errors.PortalMoved, PortalBusy))


@contextmanager
def portal_slot(key: str):
    """One in-flight call to the portal ``key`` (its REST address), or PortalBusy at once."""
    now = time.monotonic()
    with _lock:
        state = _portals.setdefault(key, _Portal())
        if state.open_until:
            if now < state.open_until or state.probing:
                raise PortalFailing("PORTAL_FAILING", "the portal kept timing out; calls are paused briefly")
            state.probing = True  # the pause is over: this call tests the portal
        if state.in_flight >= settings.B24_PORTAL_MAX_CALLS:
            state.probing = False
            raise PortalBusy("PORTAL_BUSY", "the portal is slow to answer; its share of calls is in use")
        state.in_flight += 1
    failed = False
    try:
        yield
    except BaseException as exc:
        failed = _counts_as_failure(exc)
        raise
    finally:
        with _lock:
            state.in_flight -= 1
            if failed:
                state.failures += 1
                if state.probing or state.failures >= settings.B24_BREAKER_FAILURES:
                    state.open_until = time.monotonic() + settings.B24_BREAKER_SECONDS
            else:
                state.failures, state.open_until = 0, 0.0
            state.probing = False


def reset() -> None:
    """Forget every portal's state (tests; a process starts with none)."""
    with _lock:
        _portals.clear()
    with _tokens_lock:
        _allowance.clear()
        _accepted.clear()


# --- refused tokens -------------------------------------------------------------------------------

_tokens_lock = threading.Lock()
_allowance: dict[str, tuple[float, float]] = {}  # portal -> (tokens left, monotonic of last refill)
_accepted: OrderedDict[bytes, None] = OrderedDict()  # digests of tokens Bitrix24 accepted lately
ACCEPTED_REMEMBERED = 20_000
_DIGEST_KEY = os.urandom(32)  # per process: the digests mean nothing outside it


def _digest(key: str, token: str) -> bytes:
    return hmac.new(_DIGEST_KEY, f"{key}\0{token}".encode(), hashlib.sha256).digest()


def token_admit(*, key: str, token: str) -> bool:
    """May an open with ``token`` call the portal ``key``? A token Bitrix24 accepted lately: yes.
    Another one: while the portal's allowance of refusals is not spent (``token_verdict``)."""
    digest = _digest(key, token)
    with _tokens_lock:
        if digest in _accepted:
            _accepted.move_to_end(digest)
            return True
        return _refill(key) >= 1


def token_verdict(*, key: str, token: str, accepted: bool | None) -> None:
    """What Bitrix24 said of ``token``: accepted (remembered, it passes from now on), refused (one
    of the portal's allowance spent), or None, no verdict (busy, unreachable: nothing spent)."""
    if accepted is None:
        return
    with _tokens_lock:
        if accepted:
            _accepted[_digest(key, token)] = None
            while len(_accepted) > ACCEPTED_REMEMBERED:
                _accepted.popitem(last=False)
        else:
            _allowance[key] = (max(0.0, _refill(key) - 1), time.monotonic())


def _refill(key: str) -> float:
    burst = float(settings.B24_REFUSED_TOKENS_BURST)
    left, since = _allowance.get(key, (burst, time.monotonic()))
    return min(burst, left + (time.monotonic() - since) * settings.B24_REFUSED_TOKENS_PER_MINUTE / 60)
