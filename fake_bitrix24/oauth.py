"""The OAuth server: oauth/token (refresh, single use) and app.info by access token (protocol 3)."""
from __future__ import annotations

import time

from fake_bitrix24.http import Resp, json_resp
from fake_bitrix24.params import iso, time_block
from fake_bitrix24.state import ApiError


def handle(fake, key: str, params: dict, start: float) -> Resp:
    if key == "oauth/token":
        return token(fake, params)
    if key == "oauth/app.info":
        return app_info(fake, params, start)
    raise ApiError(404, "NOT_FOUND", "Not found")


def token(fake, p: dict) -> Resp:
    with fake._lock:
        if p.get("client_id") != fake.client_id:
            return json_resp(200, {"error": "wrong_client", "error_description": "Wrong client"})  # 3.6
        if p.get("client_secret") != fake.client_secret:
            raise ApiError(400, "invalid_client", "Invalid client credentials")
        if p.get("grant_type") != "refresh_token":
            raise ApiError(400, "invalid_request", 'Unsupported or missing "grant_type" parameter')
        if not p.get("refresh_token"):
            raise ApiError(400, "invalid_request", 'No "refresh_token" parameter found')
        rt = fake._refresh.get(p["refresh_token"])
        portal = fake.portal_by_member(rt.member_id) if rt else None
        if rt is None or rt.used or rt.revoked or portal is None or not portal.installed:
            raise ApiError(400, "invalid_grant", "Invalid grant")
        if portal.payment_required:  # 15.4: no tokens until paid; the refresh token is not spent
            raise ApiError(401, "PAYMENT_REQUIRED", "Payment required")
        # single use (3.5): the old refresh token and its access token die now
        rt.used = True
        if rt.access_token in fake._access:
            fake._access[rt.access_token].expired = True
        return json_resp(200, fake._issue(portal, rt.user_id))


def app_info(fake, p: dict, start: float) -> Resp:
    with fake._lock:
        tok = fake._access.get(str(p.get("auth") or ""))
        if tok is None:
            raise ApiError(401, "invalid_token", "The access token provided is invalid.")
        portal = fake.portal_by_member(tok.member_id)
        if tok.revoked or portal is None or not portal.installed:
            raise ApiError(401, "NOT_INSTALLED", "Application not installed")
        if tok.expired or tok.expires_at <= time.time():
            raise ApiError(401, "expired_token", "The access token provided has expired.")
        result = {
            "client_id": fake.client_id, "scope": portal.scope, "expires": iso(tok.expires_at),
            "user_id": tok.user_id,
            # status is documented (protocol 8); payment_expired and days are this fake's guess
            # that the OAuth server says what the portal's app.info says (the app reads both).
            "install": {"installed": True, "version": portal.version, "status": portal.app_status,
                        "payment_expired": "Y" if portal.payment_expired else "N", "days": portal.days,
                        "scope": portal.scope, "domain": portal.domain, "uri": fake.app_uri,
                        "client_endpoint": portal.client_endpoint, "member_id": portal.member_id,
                        "member_type": "portal"},
        }
        return json_resp(200, {"result": result, "time": time_block(start)})
