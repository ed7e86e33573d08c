"""Bitrix24-facing views of the portals app: the install page, the app's own page and the event
handler.

Each view parses, verifies, calls one service and renders; the services hold the logic.
"""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from portals import app_page, event_receivers, failures, payload
from portals.bitrix.client import oauth_server_for
from portals.failures import failure_message, failure_status
from portals.framing import allow_framing_by
from portals.responses import json_error
from portals.services import (
    InstallGrant,
    NotAdministrator,
    business_event_portal,
    portal_install,
    portal_payment_doorbell,
    portal_uninstall,
    portal_update,
)

logger = logging.getLogger(__name__)


def _install_page(request, *, status: int, context: dict, frame_origin: str | None) -> HttpResponse:
    lang = payload.language_code(request.GET.get("LANG", ""))
    with translation.override(lang):
        response = render(request, "portals/install.html", {**context, "lang": lang}, status=status)
    return allow_framing_by(response, frame_origin, request=request if frame_origin != "*" else None)


def _page_grant(params: dict) -> InstallGrant:
    """What an app page POST (install page or app page, PLACEMENT=DEFAULT) says about its user."""
    grant = InstallGrant(
        member_id=payload.member_id_field(params),
        domain=payload.domain_field(params, "DOMAIN"),
        access_token=payload.token_field(params, "AUTH_ID"),
        refresh_token=payload.token_field(params, "REFRESH_ID", required=False),
        expires_in=payload.seconds_field(params, "AUTH_EXPIRES"),
        server_endpoint=params.get("SERVER_ENDPOINT") or None,
        application_token=payload.token_field(params, "APPLICATION_TOKEN", required=False),
        app_status=params.get("status", "")[:1],
        scope=params.get("APPLICATION_SCOPE", "")[:1024],
    )
    payload.placement_options(params)  # unused here, but a malformed one is not Bitrix24
    placement = params.get("PLACEMENT", "DEFAULT")
    if placement != "DEFAULT":
        raise payload.PayloadError(f"PLACEMENT must be DEFAULT on the app's pages, not {placement[:40]!r}.")
    return grant


@csrf_exempt
@require_POST
def install(request: HttpRequest) -> HttpResponse:
    """POST /portals/install/: the admin opened the app's install page (PLACEMENT=DEFAULT)."""
    try:
        params = payload.merged_params(request)
        grant = _page_grant(params)
        portal, bind = portal_install(grant=grant)
    except NotAdministrator as exc:
        # An ordinary user opened the install page: say who must finish it; nothing was stored.
        logger.info("install by a non-administrator on %s: nothing stored", exc.domain)
        return _install_page(request, status=200, context={"ok": False, "admin_required": True,
                                                           "domain": exc.domain}, frame_origin=exc.origin)
    except failures.EXPECTED as exc:
        status = failure_status(exc)
        logger.info("install refused: %s %s", status, getattr(exc, "code", type(exc).__name__))
        return _install_page(
            request, status=status, context={"ok": False, "message": failure_message(exc)}, frame_origin="*"
        )
    request.log_context = {"member_id": portal.member_id, "domain": portal.domain}  # verified
    status = 200 if bind.ok else 502
    context = {"ok": bind.ok, "portal": portal, "bind": bind, "disabled": portal.disabled_by_operator}
    if not bind.ok:
        context["message"] = "Bitrix24 refused to register the app's widget or events: " + "; ".join(
            f"{key}: {error}" for key, error in bind.failed.items()
        ) + ". Check the app's scopes (task, placement) and open the app again to retry."
    return _install_page(request, status=status, context=context, frame_origin=portal.origin)


# The fields the repair button posts back: what Bitrix24 posted, so the repair is verified like
# an install (the OAuth server, then ``profile`` ADMIN) and needs no state of ours in between.
REPAIR_QUERY = ("DOMAIN", "PROTOCOL", "LANG", "APP_SID")
REPAIR_BODY = ("AUTH_ID", "AUTH_EXPIRES", "REFRESH_ID", "SERVER_ENDPOINT", "APPLICATION_TOKEN",
               "APPLICATION_SCOPE", "member_id", "status", "PLACEMENT")


@csrf_exempt
@require_POST
def app(request: HttpRequest) -> HttpResponse:
    """POST /portals/app/: anyone opened the app from the app list or menu (PLACEMENT=DEFAULT).

    Everyone sees what the app does; an administrator also the portal's state and a repair
    button, whose POST (``repair=1``) runs the install service again."""
    lang = payload.language_code(request.GET.get("LANG", ""))
    frame_origin = "*"
    try:
        params = payload.merged_params(request)
        grant = _page_grant(params)
        portal = app_page.portal_for_app_page(member_id=grant.member_id)
        frame_origin = portal.origin
        repaired = None
        if params.get("repair") == "1":
            repaired = portal_install(grant=grant)[1]
        page = app_page.app_page_load(portal=portal, access_token=grant.access_token, domain=grant.domain)
    except NotAdministrator as exc:
        return _app_page(request, lang=lang, status=403, frame_origin=exc.origin, context={
            "message": _("Only a portal administrator can repair the app's installation.")})
    except failures.EXPECTED as exc:
        status = failure_status(exc)
        logger.info("app page refused: %s %s", status, getattr(exc, "code", type(exc).__name__))
        with translation.override(lang):
            message = str(failure_message(exc))
        return _app_page(request, lang=lang, status=status, frame_origin=frame_origin,
                         context={"message": message})
    request.log_context = {"member_id": portal.member_id, "domain": portal.domain, "user_id": page.viewer_id}
    context = {"page": page, "portal": page.portal, "repaired": repaired}
    if page.admin:
        context["repair_url"] = request.path + "?" + urlencode(
            {key: params[key] for key in REPAIR_QUERY if key in request.GET}
        )
        context["repair_fields"] = {key: params[key] for key in REPAIR_BODY if key in params}
    return _app_page(request, lang=lang, status=200, frame_origin=portal.origin, context=context)


def _app_page(request, *, lang: str, status: int, frame_origin: str, context: dict) -> HttpResponse:
    with translation.override(lang):
        response = render(request, "portals/app.html", {**context, "lang": lang}, status=status)
    return allow_framing_by(response, frame_origin, request=request if frame_origin != "*" else None,
                            form_action="'self'")


def _event_grant(auth: dict) -> InstallGrant:
    return InstallGrant(
        member_id=payload.member_id_field(auth, "member_id"),
        domain=payload.domain_field(auth, "domain", required=False) or None,
        access_token=payload.token_field(auth, "access_token"),
        refresh_token=payload.token_field(auth, "refresh_token", required=False),
        expires=payload.ts_field(auth, "expires") or None,
        expires_in=payload.seconds_field(auth, "expires_in"),
        server_endpoint=auth.get("server_endpoint") or None,
        application_token=payload.token_field(auth, "application_token"),
        app_status=str(auth.get("status", ""))[:1],
        scope=str(auth.get("scope", ""))[:1024],
    )


def _json_error(exc: Exception) -> JsonResponse:
    status = failure_status(exc)
    logger.info("event refused: %s %s", status, getattr(exc, "code", type(exc).__name__))
    return json_error(status, failure_message(exc))


@csrf_exempt
@require_POST
def events(request: HttpRequest) -> JsonResponse:
    """POST /portals/events/: ONAPPINSTALL, ONAPPUPDATE, ONAPPUNINSTALL and ONAPPPAYMENT from
    Bitrix24's queue, and the business events another app receives (portals/event_receivers.py)."""
    try:
        body = payload.parse_bracketed(payload.merged_params(request))
        event = str(body.get("event", "")).upper()
        auth = body.get("auth")
        if not event:
            raise payload.PayloadError("event is missing.")
        if not isinstance(auth, dict):
            raise payload.PayloadError("auth[...] is missing.")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        if event in ("ONAPPINSTALL", "ONAPPUPDATE"):
            grant = _event_grant(auth)
            service = portal_install if event == "ONAPPINSTALL" else portal_update
            try:
                portal, bind = service(grant=grant)
            except NotAdministrator as exc:
                logger.info("%s by a non-administrator on %s: nothing changed", event, exc.domain)
                return json_error(403, str(exc) + " Nothing was changed.")
            request.log_context = {"member_id": portal.member_id, "domain": portal.domain, "event": event}
            return JsonResponse(
                {"status": "success", "event": event, "handlers_bound": bind.ok}
            )
        if event == "ONAPPUNINSTALL":
            member_id = payload.member_id_field(auth, "member_id")
            # Refuse a foreign OAuth server before anything else (no outbound call at all).
            oauth_server_for(auth.get("server_endpoint") or None)
            outcome = portal_uninstall(
                member_id=member_id,
                application_token=payload.token_field(auth, "application_token", required=False),
                clean=str(data.get("CLEAN", "0")) == "1",
            )
            request.log_context = {"event": event, "detail": outcome.detail}
            return JsonResponse({"status": "success", "event": event, "result": outcome.detail})
        if event == "ONAPPPAYMENT":
            # No token at all (protocol 15.3): a doorbell; nothing posted is believed or stored.
            member_id = payload.member_id_field(auth, "member_id")
            oauth_server_for(auth.get("server_endpoint") or None)
            payload.domain_field(auth, "domain", required=False)
            if "data" in body and not isinstance(body["data"], dict):
                raise payload.PayloadError("data[...] must be the payment fields.")
            result = portal_payment_doorbell(member_id=member_id)
            request.log_context = {"event": event, "detail": result}
            return JsonResponse({"status": "success", "event": event})
        receive = event_receivers.receiver_for(event)
        if receive is None:
            raise payload.PayloadError(f"Unknown event {event[:40]!r}.")
        portal = business_event_portal(
            member_id=payload.member_id_field(auth, "member_id"),
            application_token=payload.token_field(auth, "application_token"),
        )
        request.log_context = {"member_id": portal.member_id, "domain": portal.domain, "event": event}
        answer = receive(
            event_receivers.BusinessEvent(portal=portal, name=event, data=data, ts=payload.ts_field(body))
        )
        return JsonResponse({"status": "success", "event": event, **answer})
    except failures.EXPECTED as exc:
        return _json_error(exc)
