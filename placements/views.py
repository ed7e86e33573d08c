"""The widget's two endpoints: the handler Bitrix24 frames, and the action the page's script calls.

Each view parses, verifies, calls one service and renders (ARCHITECTURE.md, "HTTP endpoints").
"""
from __future__ import annotations

import json
import logging

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from placements import registry, states
from placements.services import (
    WidgetPage,
    portal_for_widget,
    widget_action,
    widget_language,
    widget_open,
    widget_request_parse,
)
from placements.signing import ActionTokenInvalid, action_token_read
from portals import failures, metrics, payload
from portals.bitrix import capacity, errors
from portals.failures import Refused, failure_status
from portals.framing import allow_framing_by
from portals.responses import json_error
from portals.tokens import ReauthRequired

logger = logging.getLogger(__name__)


class RequestTooLarge(payload.PayloadError):
    state = "too_large"


def _params(request: HttpRequest) -> dict:
    try:
        return payload.merged_params(request)
    except (RequestDataTooBig, TooManyFieldsSent):
        raise RequestTooLarge("The request is too large to come from Bitrix24.") from None


def _page_context(*, state: str, lang: str, placement: type[registry.Placement] = registry.Placement) -> dict:
    """What base.html needs on every widget page: the state shown, in the placement's words, and
    every sentence the page's script may show (rendered in the page's language)."""
    words = placement.words
    return {
        "lang": lang, "state": state, "placement": placement, "words": words,
        "shown_state": states.state(state, words), "not_found": states.state("not_found", words),
        # JSON in the root's data-messages (autoescaped): a data attribute needs no CSP nonce.
        "script_messages": json.dumps(states.page_messages(words=words, actions=placement.action_names())),
    }


def _refusal_page(request: HttpRequest, *, status: int, state: str, lang: str) -> HttpResponse:
    """A 400/402/403 page. It names no portal and offers at most *Try again* (a reload of the
    Bitrix24 page), so any page may frame it: the person in the card reads why it is empty."""
    with translation.override(lang):
        response = render(request, "placements/refused.html", _page_context(state=state, lang=lang), status=status)
    return allow_framing_by(response, "*")


def _widget_page(request: HttpRequest, page: WidgetPage) -> HttpResponse:
    with translation.override(page.lang):
        context = {
            **_page_context(state=page.state, lang=page.lang, placement=page.placement),
            "page": page,
            "entity": page.entity,
            "viewer": page.viewer,
            "action_url": request.build_absolute_uri(reverse("placements:action")),
            "action_token": page.action_token,
            "actions": page.placement.action_names(),
        }
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
        # The reason is English and technical: the log's, never the page's.
        logger.info("widget refused (%s): %s: %s", status, state, exc)
        metrics.widget_refusals.labels(state).inc()
        return _refusal_page(request, status=status, state=state, lang=lang)
    request.log_context = {  # verified: Bitrix24 accepted the posted token for this portal
        "member_id": portal.member_id, "domain": portal.domain, "placement": page.placement.code,
        "entity_id": widget_request.entity_id, "user_id": page.viewer.get("id"), "detail": page.detail,
    }
    return _widget_page(request, page)


def _action_failed(status: int, state: str, *, grant, answer: dict | None = None) -> JsonResponse:
    """``state`` names the note the page shows (the page has it in its own language);
    ``message`` is the same sentence for any other reader, and the entity as it is now beside."""
    placement = (grant and registry.get(grant.placement)) or registry.Placement
    with translation.override(grant.lang if grant else "en"):
        message = states.failed_note(state, placement.words)
    return json_error(status, message, state=state, **(answer or {}))


def _failure_state(exc: Exception) -> str:
    """Which of the page's notes explains ``exc`` (placements/states.py, FAILED_NOTES)."""
    if isinstance(exc, payload.PayloadError):
        return getattr(exc, "state", "bad_request")
    if isinstance(exc, (ActionTokenInvalid, ReauthRequired, errors.AuthError)):
        return "session_expired"  # reloading the Bitrix24 page issues a new token and session
    if isinstance(exc, Refused):  # ActionRefused, PaymentRequired: each names its own state
        return getattr(exc, "state", "refused")
    if isinstance(exc, (capacity.PortalBusy, errors.RateLimited)):
        return "busy"
    if isinstance(exc, errors.TransportError):
        return "unreachable"
    return "error"


@csrf_exempt  # authorised by the signed token, not by a cookie (cookies die in a third-party iframe)
@require_POST
def action(request: HttpRequest) -> JsonResponse:
    """POST /placements/action/: reload (or start, pause, complete, approve...) the widget's entity.
    Codes go to the log; a failure's answer names a state the page explains."""
    grant = None
    try:
        params = _params(request)
        grant = action_token_read(token=params.get("token", "").strip())
        answer = widget_action(grant=grant, action=params.get("action", "").strip())
    except failures.EXPECTED as exc:
        status = failure_status(exc)
        logger.info("widget action refused (%s): %s", status, getattr(exc, "code", None) or exc)
        return _action_failed(status, _failure_state(exc), grant=grant, answer=getattr(exc, "answer", None))
    return JsonResponse(answer)
