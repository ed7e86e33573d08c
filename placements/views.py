"""The widget's two endpoints: the handler Bitrix24 frames, and the action the page's script calls.

Each view parses, verifies, calls one service and renders (ARCHITECTURE.md, "HTTP endpoints").
"""
from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from placements.services import (
    WidgetPage,
    portal_for_widget,
    widget_action,
    widget_language,
    widget_open,
    widget_request_parse,
)
from placements.signing import action_token_read
from portals import failures, metrics, payload
from portals.failures import Refused, failure_message, failure_status
from portals.framing import allow_framing_by
from portals.responses import json_error

logger = logging.getLogger(__name__)


def _params(request: HttpRequest) -> dict:
    try:
        return payload.merged_params(request)
    except (RequestDataTooBig, TooManyFieldsSent):
        raise payload.PayloadError("The request is too large to come from Bitrix24.") from None


def _refusal_page(request: HttpRequest, *, status: int, state: str, message: str, lang: str) -> HttpResponse:
    """A 400/403 page. It names no portal and offers nothing to click, so any page may frame it
    (the person inside the task card must be able to read why the widget is empty)."""
    with translation.override(lang):
        response = render(
            request, "placements/refused.html", {"state": state, "message": message, "lang": lang}, status=status
        )
    return allow_framing_by(response, "*")


def _widget_page(request: HttpRequest, page: WidgetPage) -> HttpResponse:
    context = {
        "page": page,
        "state": page.state,
        "entity": page.entity,
        "viewer": page.viewer,
        "lang": page.lang,
        "action_url": request.build_absolute_uri(reverse("placements:action")),
        "action_token": page.action_token,
        "actions": page.placement.action_names(),
        "placement": page.placement,
        "words": page.placement.words,
    }
    with translation.override(page.lang):
        response = render(request, page.placement.template, context, status=page.status)
    if page.state == "busy":
        response["Retry-After"] = "5"
    return allow_framing_by(response, page.portal.origin, request=request)


@csrf_exempt  # a cross-site form POST from the portal carries no CSRF token (protocol 10)
@require_POST
def handler(request: HttpRequest) -> HttpResponse:
    """POST /placements/handler/: a user opened one of our widgets; dispatch on PLACEMENT."""
    lang = widget_language(request.GET.get("LANG", ""))
    try:
        widget_request = widget_request_parse(params=_params(request))
        portal = portal_for_widget(member_id=widget_request.member_id)
        page = widget_open(portal=portal, request=widget_request)
    except (payload.PayloadError, Refused) as exc:
        status, state = failure_status(exc), getattr(exc, "state", "bad_request")
        logger.info("widget refused (%s): %s", status, exc if status == 400 else state)
        metrics.widget_refusals.labels(state).inc()
        # args[0], not str(exc): a lazy translation, rendered in the viewer's language below.
        return _refusal_page(request, status=status, state=state, message=exc.args[0], lang=lang)
    request.log_context = {  # verified: Bitrix24 accepted the posted token for this portal
        "member_id": portal.member_id, "domain": portal.domain, "placement": page.placement.code,
        "entity_id": widget_request.entity_id, "user_id": page.viewer.get("id"), "detail": page.detail,
    }
    return _widget_page(request, page)


@csrf_exempt  # authorised by the signed token, not by a cookie (cookies die in a third-party iframe)
@require_POST
def action(request: HttpRequest) -> JsonResponse:
    """POST /placements/action/: reload (or start, complete, defer...) the widget's entity."""
    try:
        params = _params(request)
        grant = action_token_read(token=params.get("token", "").strip())
        answer = widget_action(grant=grant, action=params.get("action", "").strip())
    except failures.EXPECTED as exc:
        status = failure_status(exc)
        logger.info("widget action refused (%s): %s", status, getattr(exc, "code", type(exc).__name__))
        return json_error(status, failure_message(exc))
    return JsonResponse(answer)
