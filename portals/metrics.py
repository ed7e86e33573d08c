"""Every Prometheus metric of the app, defined once, for every app to increment.

Labels are small fixed sets (placement codes, outcomes, refusal reasons, Bitrix24 method names
from our own code): never a member_id, a domain or a user, which would give every portal a time
series of its own. Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` (set by gunicorn.conf.py) makes
each worker write its values to files there, and ``/metrics`` adds them up (multiprocess mode).
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

# Decided once, when prometheus_client chose where values live (memory, or the directory's files).
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
# Seconds: Bitrix24 answers in 0.1-0.5 s and sometimes takes seconds (the read timeout is 5 s).
SECONDS_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0, 10.0)

widget_opens = Counter(
    "b24_widget_opens", "Widget opens served, by placement and outcome (ok, error, busy).", ["placement", "outcome"]
)
widget_open_seconds = Histogram(
    "b24_widget_open_seconds", "Time to serve a widget open, Bitrix24 call included.", ["placement"],
    buckets=SECONDS_BUCKETS,
)
widget_refusals = Counter(
    "b24_widget_refusals",
    "Widget opens refused before anything was shown (bad_request, refused, session_expired, ...).",
    ["reason"],
)
bitrix_calls = Counter(
    "b24_bitrix_calls",
    "HTTP calls to Bitrix24 portals and OAuth servers, by method and outcome.",
    ["method", "outcome"],
)
bitrix_call_seconds = Histogram(
    "b24_bitrix_call_seconds", "Duration of one HTTP call to Bitrix24.", ["method"], buckets=SECONDS_BUCKETS
)
token_refreshes = Counter(
    "b24_token_refreshes", "Refresh tokens spent with the OAuth server, by outcome (ok, refused, failed).",
    ["outcome"],
)
rate_limit_hits = Counter(
    "b24_rate_limit_hits", "QUERY_LIMIT_EXCEEDED answers from a portal (each is retried after a pause)."
)
events = Counter(
    "b24_events", "Events from Bitrix24 by state reached (received, done, failed, retried).", ["state"]
)


def outcome_of(exc: BaseException | None) -> str:
    """A call's outcome as one word of a small fixed set: ok, or the kind of failure."""
    from portals.bitrix import errors

    if exc is None:
        return "ok"
    for kind, word in (
        (errors.Timeout, "timeout"),
        (errors.PortalMoved, "moved"),
        (errors.TransportError, "unreachable"),
        (errors.RateLimited, "rate_limited"),
        (errors.AuthError, "auth_error"),
        (errors.AccessDenied, "access_denied"),
        (errors.AlreadyBound, "already_bound"),
        (errors.NotFound, "not_found"),
    ):
        if isinstance(exc, kind):
            return word
    return "error"


def exposition() -> tuple[bytes, str]:
    """(body, content type) of the text a Prometheus scraper reads: this process's values, or
    every worker's added up when the multiprocess directory is set."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
