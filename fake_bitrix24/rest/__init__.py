"""A portal's REST API: authentication, scopes and rights, the rate limit, batch, and the method
table that every area module (app, placements, events, tasks, crm) contributes to."""
from __future__ import annotations

import re
import threading
import time

from fake_bitrix24.http import Resp, json_resp
from fake_bitrix24.params import ci, norm_key, parse_php_query, php_empty, time_block, truthy
from fake_bitrix24.rest import app, crm, events, offline, placements, tasks, users
from fake_bitrix24.state import BATCH_MAX, ApiError, Call, FakePortal, FakeUser

AREAS = (app, placements, events, offline, tasks, crm, users)
METHODS = {name: fn for area in AREAS for name, fn in area.METHODS.items()}
ADMIN_ONLY = placements.ADMIN_ONLY | events.ADMIN_ONLY | offline.ADMIN_ONLY
# The scope a method needs, by its prefix (protocol 5.1, 7, 16); a tuple means any one of them (8).
SCOPE_BY_PREFIX = {"placement.": "placement", "tasks.": "task", "crm.": "crm",
                   "user.get": ("user", "user_basic", "user_brief")}


def handle(fake, domain: str | None, method: str, url, params: dict, start: float) -> Resp:
    with fake._lock:
        portal = fake.portals.get(domain or "")
        if portal is None and domain in fake._moved:
            moved = fake.portal_by_member(fake._moved[domain])
            if moved is not None:
                tail = url.path.split("/rest/", 1)[1]
                loc = f"{moved.client_endpoint}{tail}" + (f"?{url.query}" if url.query else "")
                return Resp(302, b"", "text/html; charset=utf-8", {"Location": loc})
        if portal is None:
            raise ApiError(404, "NOT_FOUND", "Portal not found")
        rate_check(fake, portal)
        token = str(ci(params, "auth") or "")
        if method == "batch":
            return batch(fake, portal, token, params, start)
        fn = fake.methods.get(method)
        if fn is None:
            raise ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        user = authenticate(fake, portal, token)
        check_rights(portal, user, method)
        return json_resp(200, {"result": fn(fake, portal, user, params), "time": time_block(start)})


def rate_check(fake, portal: FakePortal) -> None:
    """Leaky bucket per portal (4.4): each request adds 1, drains Y/s, over X -> 503."""
    if fake._rate is None:
        return
    cap, drain = fake._rate
    now = time.monotonic()
    portal.bucket_level = max(0.0, portal.bucket_level - (now - portal.bucket_ts) * drain)
    portal.bucket_ts = now
    if portal.bucket_level + 1 > cap:
        raise ApiError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    portal.bucket_level += 1


def authenticate(fake, portal: FakePortal, token: str) -> FakeUser:
    if not token:
        raise ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data")
    tok = fake._access.get(token)
    if tok is None or tok.revoked or tok.member_id != portal.member_id or not portal.installed:
        raise ApiError(401, "invalid_token", "Unable to get application by token")
    if tok.expired or tok.expires_at <= time.time():
        raise ApiError(401, "expired_token", "The access token provided has expired.")
    if portal.payment_required:  # protocol 4.3/15.4: every call of an unpaid app, HTTP 401 (PY)
        raise ApiError(401, "PAYMENT_REQUIRED", "Payment required")
    return portal.users.get(tok.user_id) or FakeUser(tok.user_id)


def check_rights(portal: FakePortal, user: FakeUser, method: str) -> None:
    needed = next((scope for prefix, scope in SCOPE_BY_PREFIX.items() if method.startswith(prefix)), None)
    if isinstance(needed, tuple):
        needed = next((scope for scope in needed if scope in portal.scopes), needed[0])
    if needed and needed not in portal.scopes:
        raise ApiError(403, "insufficient_scope",
                       "The request requires higher privileges than provided by the access token")
    if method in ADMIN_ONLY and not user.admin:
        raise ApiError(403, "ACCESS_DENIED", "Access denied!")


RESULT_REFERENCE = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")


def substitute_results(params, results: dict):
    """``$result[deal][STAGE_ID]`` in a later command's (decoded) value becomes the earlier
    command's answer (protocol 4.6); a reference to nothing becomes an empty string."""
    if isinstance(params, dict):
        return {key: substitute_results(value, results) for key, value in params.items()}
    if isinstance(params, list):
        return [substitute_results(value, results) for value in params]
    if not isinstance(params, str) or "$result[" not in params:
        return params

    def value_of(match: re.Match) -> str:
        value = results.get(match.group(1))
        for step in re.findall(r"\[([^\]]*)\]", match.group(2)):
            if isinstance(value, dict):
                value = value.get(step)
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                value = None
        return "" if value is None or isinstance(value, (dict, list)) else str(value)

    return RESULT_REFERENCE.sub(value_of, params)


def batch(fake, portal: FakePortal, token: str, params: dict, start: float) -> Resp:
    """batch (4.6): one token check for all; 200 with per-command results/errors."""
    cmd = ci(params, "cmd")
    if isinstance(cmd, list):
        cmd = {str(i): v for i, v in enumerate(cmd)}
    if not isinstance(cmd, dict) or not cmd:
        raise ApiError(400, "ERROR_ARGUMENT", "Argument 'cmd' is null or empty", argument="cmd")
    if len(cmd) > BATCH_MAX:
        raise ApiError(400, "ERROR_BATCH_LENGTH_EXCEEDED", f"Max batch length exceeded ({BATCH_MAX})")
    user = authenticate(fake, portal, token)
    halt = truthy(ci(params, "halt", 0))
    results, errors, times = {}, {}, {}
    for key, spec in cmd.items():
        t0 = time.time()
        spec = str(spec)
        name, _, qs = spec.partition("?")
        name = norm_key(name)
        sub = substitute_results(parse_php_query(qs), results)
        status = 200
        try:
            if name == "batch":
                raise ApiError(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
            fn = fake.methods.get(name)
            if fn is None:
                raise ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
            check_rights(portal, user, name)
            results[key] = fn(fake, portal, user, sub)
            times[key] = time_block(t0)
        except ApiError as e:
            status = e.status
            errors[key] = e.body()
        fake.calls.append(Call("portal", name, "BATCH", spec, {**sub, "auth": token}, portal.domain, status,
                               time.monotonic(), threading.current_thread().name, in_batch=True))
        if halt and key in errors:
            break
    result = {"result": php_empty(results), "result_error": php_empty(errors), "result_total": [],
              "result_next": [], "result_time": php_empty(times)}
    return json_resp(200, {"result": result, "time": time_block(start)})
