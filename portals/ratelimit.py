"""One budget of Bitrix24 calls per portal, shared by every process that calls it.

Bitrix24 counts requests per portal in a leaky bucket (protocol 4.4, 18: burst 50, drain 2 a
second on most plans). Web workers, Celery workers and commands all take their turn here before a
call leaves (portals/bitrix/client.py), so together they stay inside the bucket instead of each
process pacing itself and all of them adding up to a 503. The state is one number per portal, the
"theoretical arrival time" of GCRA, kept in the broker's Redis when CELERY_BROKER_URL is a redis://
URL, else in the database (one UPDATE ... RETURNING per call, no lock held across a call).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import time
from functools import lru_cache

from django.conf import settings
from django.db import OperationalError, connection

from portals.bitrix import errors

logger = logging.getLogger(__name__)

_patience: contextvars.ContextVar[float | None] = contextvars.ContextVar("ratelimit_patience", default=None)

# Atomic in Redis: read the arrival time, decide, store it (with Redis's own clock for everyone).
_LUA = """
local interval, tau, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tau - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, tostring(wait)} end
local new = tat + interval
redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil((new - now) * 1000) + 1000)
return {1, tostring(wait)}
"""


@contextlib.contextmanager
def patience(seconds: float):
    """Within this block a call may wait up to ``seconds`` for its turn (workers, commands);
    outside it, ``B24_RATE_MAX_WAIT`` (a person is waiting on a page)."""
    token = _patience.set(seconds)
    try:
        yield
    finally:
        _patience.reset(token)


def _limits() -> tuple[float, float]:
    rate = max(0.001, float(settings.B24_RATE_PER_SECOND))
    interval = 1.0 / rate
    return interval, max(0, int(settings.B24_RATE_BURST) - 1) * interval


def acquire(key: str) -> float:
    """Wait for this portal's next turn; the seconds waited. RateLimited when the turn is
    further away than the caller's patience (the call is then not made, and not counted)."""
    if settings.B24_RATE_PER_SECOND <= 0:
        return 0.0
    interval, tau = _limits()
    max_wait = _patience.get()
    if max_wait is None:
        max_wait = float(settings.B24_RATE_MAX_WAIT)
    redis_client = _redis()
    if redis_client is not None:
        try:
            granted, wait = _redis_turn(redis_client, key, interval, tau, max_wait)
        except Exception as exc:  # Redis down: the database still keeps the budget
            logger.warning("rate limiter: Redis unavailable (%s), using the database", type(exc).__name__)
            granted, wait = _database_turn_retried(key, interval, tau, max_wait)
    else:
        granted, wait = _database_turn_retried(key, interval, tau, max_wait)
    if not granted:
        raise errors.BudgetExhausted(
            "QUERY_LIMIT_EXCEEDED", f"this portal's request budget is used up for the next {wait:.0f} s"
        )
    if wait > 0:
        time.sleep(wait)
    return wait


# --- Redis ----------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _redis_for(url: str):
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    return client, client.register_script(_LUA)


def _redis():
    url = settings.CELERY_BROKER_URL or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return _redis_for(url)


def _redis_turn(redis_client, key: str, interval: float, tau: float, max_wait: float) -> tuple[bool, float]:
    _client, script = redis_client
    granted, wait = script(keys=[f"b24:rate:{key}"], args=[interval, tau, max_wait])
    return bool(int(granted)), float(wait)


# --- the database ---------------------------------------------------------------------------------

_UPDATE = {
    "sqlite": "UPDATE portals_ratebucket SET tat = MAX(tat, %s) + %s WHERE key = %s AND MAX(tat, %s) - %s - %s <= %s RETURNING tat",
    "postgresql": "UPDATE portals_ratebucket SET tat = GREATEST(tat, %s) + %s WHERE key = %s AND GREATEST(tat, %s) - %s - %s <= %s RETURNING tat",
}
_INSERT = "INSERT INTO portals_ratebucket (key, tat) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING"


def _database_turn_retried(key: str, interval: float, tau: float, max_wait: float) -> tuple[bool, float]:
    """SQLite answers "database table is locked" at once when another thread writes (its shared
    cache ignores the busy timeout): try again briefly, then let the call go uncounted rather
    than fail it (the portal's own 503 and the client's backoff remain behind us)."""
    for _ in range(20):
        try:
            return _database_turn(key, interval, tau, max_wait)
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(random.uniform(0.005, 0.02))
    logger.warning("rate limiter: the database stayed locked; call %s let through uncounted", key)
    return True, 0.0


def _database_turn(key: str, interval: float, tau: float, max_wait: float) -> tuple[bool, float]:
    sql = _UPDATE.get(connection.vendor, _UPDATE["postgresql"])
    key = key[:255]
    with connection.cursor() as cursor:
        for _ in range(3):
            now = time.time()
            cursor.execute(sql, [now, interval, key, now, tau, now, max_wait])
            row = cursor.fetchone()
            if row is not None:
                return True, max(0.0, row[0] - interval - tau - now)
            cursor.execute("SELECT tat FROM portals_ratebucket WHERE key = %s", [key])
            found = cursor.fetchone()
            if found is None:
                cursor.execute(_INSERT, [key, now])  # the portal's first call: an empty bucket
                continue
            wait = max(0.0, found[0] - tau - now)
            if wait > max_wait:
                return False, wait
            # The row appeared between our UPDATE and this read (another caller's first call at the
            # same moment): there is room, so take the turn with the UPDATE again.
    return False, max_wait


def reset(key: str | None = None) -> None:
    """Forget the budget's state (tests, and an operator after changing the limits)."""
    client = _redis()
    if client is not None:
        redis_client, _script = client
        keys = [f"b24:rate:{key}"] if key else list(redis_client.scan_iter("b24:rate:*"))
        if keys:
            redis_client.delete(*keys)
    with connection.cursor() as cursor:
        if key:
            cursor.execute("DELETE FROM portals_ratebucket WHERE key = %s", [key])
        else:
            cursor.execute("DELETE FROM portals_ratebucket")
