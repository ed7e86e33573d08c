"""One structured log line per request to a Bitrix24-facing endpoint, and no silent error answers.

The line is JSON: path, status, outcome, duration and the portal when known. Views may add
``request.log_context`` (verified facts beat posted ones); only the keys below are ever written,
so a token cannot reach the log through it.
"""
from __future__ import annotations

import json
import logging
import time

from bitrix_widget.errors import BITRIX24_PATHS, explain_empty_error

logger = logging.getLogger("bitrix_widget.request")
CONTEXT_KEYS = ("member_id", "domain", "event", "placement", "action", "entity_id", "user_id", "detail")


def _posted_portal(request) -> dict:
    """What the request says about its portal (unverified, so only a lookup aid in the log)."""
    try:
        post = request.POST
    except Exception:  # noqa: BLE001 - a body the view already refused (too large, malformed)
        post = {}
    member_id = post.get("member_id") or post.get("auth[member_id]")
    domain = request.GET.get("DOMAIN") or post.get("auth[domain]")
    return {"member_id": member_id, "domain": domain}


def _outcome(status: int) -> str:
    return "ok" if status < 400 else "rejected" if status < 500 else "error"


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path not in BITRIX24_PATHS:
            return self.get_response(request)
        started = time.monotonic()
        response = explain_empty_error(request, self.get_response(request))
        context = {**_posted_portal(request), **getattr(request, "log_context", {})}
        line = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "outcome": _outcome(response.status_code),
            "duration_ms": round((time.monotonic() - started) * 1000),
            **{key: str(context[key])[:120] for key in CONTEXT_KEYS if context.get(key)},
        }
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        logger.log(level, json.dumps(line))
        return response
