"""Serving a widget: read Bitrix24's POST, load what the page shows in one batch, act for the viewer.

The posted AUTH_ID is the only thing in a widget POST that proves anything, and only Bitrix24 can
check it: so the open uses it against the *stored* client_endpoint (never the posted DOMAIN), and
the viewer's rights are Bitrix24's to enforce (protocol 0.6 and 11).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.utils import translation

from placements import registry
from placements.models import Invocation
from placements.signing import ActionGrant, ActionTokenInvalid, action_token_issue
from portals import metrics, payload
from portals.bitrix import capacity, client, errors
from portals.credentials import credential_store_viewer, portal_still_installed
from portals.failures import Refused, failure_status
from portals.models import Credential, Portal
from portals.relocation import following_a_move
from portals.tokens import ReauthRequired, portal_batch, portal_mark_payment_required

logger = logging.getLogger(__name__)

class WidgetRefused(Refused):
    """A widget POST we do not serve (403): nothing is written and nothing is called.

    The message is English, for the log; the page shows the translated sentences of ``state``
    (placements/states.py)."""

    state = "refused"
    status = 403


class NotInstalled(WidgetRefused):
    state = "not_installed"


class SessionExpired(WidgetRefused):
    """Bitrix24 refused the posted AUTH_ID: reloading the Bitrix24 page posts a fresh one."""

    state = "session_expired"


class PaymentRequired(WidgetRefused):
    """The app's trial or subscription on the portal is over: the page asks for a renewal."""

    state = "payment_required"
    status = 402


PAYMENT_REQUIRED = "the app's subscription on the portal has ended"


class ActionRefused(Refused):
    """An action that did not happen (403): ``state`` names the note the widget shows; ``answer``
    is the entity as it is now (``{"task": ...}``) when Bitrix24 told us, so the page shows it
    instead of a stale one."""

    def __init__(self, detail: str, *, state: str = "refused", answer: dict | None = None):
        super().__init__(detail)
        self.state, self.answer = state, answer


widget_language = payload.language_code  # one rule for every page a person reads


@dataclass
class WidgetRequest:
    """What a widget POST says, parsed and bounded; believed only once Bitrix24 accepts AUTH_ID."""

    placement: type[registry.Placement]
    member_id: str
    domain: str
    access_token: str
    refresh_token: str
    expires_in: int
    entity_id: str
    options: dict
    lang: str


def widget_request_parse(*, params: dict) -> WidgetRequest:
    """PayloadError (a 400) for anything that is not a well-formed Bitrix24 widget POST."""
    code = payload.require(params, "PLACEMENT")
    placement = registry.get(code)
    if placement is None:
        raise payload.PayloadError(f"This app has no widget for the placement {code[:40]!r}.")
    options = payload.placement_options(params)
    return WidgetRequest(
        placement=placement,
        member_id=payload.member_id_field(params),
        domain=payload.domain_field(params, "DOMAIN"),
        access_token=payload.token_field(params, "AUTH_ID"),
        refresh_token=payload.token_field(params, "REFRESH_ID", required=False),
        expires_in=payload.seconds_field(params, "AUTH_EXPIRES"),
        entity_id=placement.entity_id(options),
        options=options,
        lang=widget_language(params.get("LANG", "")),
    )


def portal_for_widget(*, member_id: str) -> Portal:
    """The installed portal the POST names (one query), or WidgetRefused before any outbound call.

    Its domain is compared with the posted DOMAIN in ``widget_open``, after the stored endpoint
    has had the chance to say (302) that the portal moved."""
    try:
        # The open never reads application_token (only ONAPPUNINSTALL does): left unloaded,
        # it is not decrypted on every open.
        portal = Portal.objects.served().defer("application_token").get(member_id=member_id)
    except Portal.DoesNotExist:
        # Unknown or uninstalled: calling the stored endpoint would hand a stranger's token around.
        raise NotInstalled("the app is not installed on this portal") from None
    if portal.status == Portal.Status.PAYMENT_REQUIRED:
        # Bitrix24 would refuse every call until the renewal (ONAPPPAYMENT brings the portal back).
        raise PaymentRequired(PAYMENT_REQUIRED)
    return portal


DOMAIN_MISMATCH = "the posted DOMAIN does not match the installed portal"


def _same_domain(a: str, b: str) -> bool:
    return payload.normalise_domain(a) == payload.normalise_domain(b)


@dataclass
class WidgetPage:
    """What the handler page shows: a state, and the entity when there is one."""

    state: str  # ok, not_found, unreachable, busy, error
    status: int
    placement: type[registry.Placement]
    portal: Portal
    lang: str
    entity: dict | None = None
    viewer: dict = field(default_factory=dict)
    action_token: str = ""
    detail: str = ""


def _viewer(profile) -> dict | None:
    if not isinstance(profile, dict) or not payload.is_ascii_number(str(profile.get("ID", ""))):
        return None
    name = f"{profile.get('NAME') or ''} {profile.get('LAST_NAME') or ''}".strip()
    return {"id": int(profile["ID"]), "name": name[:200], "admin": profile.get("ADMIN") is True}


def _outcome_for(exc: Exception) -> tuple[str, int, str]:
    """(state, HTTP status, detail) of an open that Bitrix24 did not answer usefully."""
    status = failure_status(exc)
    if isinstance(exc, (capacity.PortalBusy, errors.RateLimited)):
        return "busy", status, f"Bitrix24 is slow to answer ({exc.code})"
    if isinstance(exc, errors.Timeout):
        return "unreachable", status, "Bitrix24 did not answer in time"
    if isinstance(exc, (errors.TransportError, client.UntrustedEndpoint)):
        return "unreachable", status, f"Bitrix24 could not be reached ({getattr(exc, 'code', 'ENDPOINT')})"
    return "error", status, f"Bitrix24 answered with an error ({getattr(exc, 'code', '') or 'unknown'})"


def widget_open(*, portal: Portal, request: WidgetRequest) -> WidgetPage:
    """One batch (viewer's profile + the entity) with the posted token; one Invocation row.

    Raises SessionExpired when Bitrix24 refuses the token: the user is not proven, so nothing
    is stored. Unreachable, slow or failing Bitrix24 gives a page with that state, not an
    exception. A portal whose tokens Bitrix24 kept refusing lately (someone posting junk
    AUTH_IDs) gets a "busy" page for unknown tokens instead of spending its calls on them.
    """
    if not capacity.token_admit(key=portal.member_id, token=request.access_token):
        logger.warning("widget open throttled: portal %s refused too many tokens lately", portal.member_id)
        return WidgetPage(state="busy", status=429, placement=request.placement, portal=portal,
                          lang=request.lang, detail="refused tokens throttled")  # unproven: no row
    accepted: bool | None = None  # no verdict from Bitrix24 (busy, unreachable)
    try:
        page = _widget_open_admitted(portal=portal, request=request)
        accepted = True if page.viewer else None
        return page
    except WidgetRefused:
        accepted = False
        raise
    finally:
        capacity.token_verdict(key=portal.member_id, token=request.access_token, accepted=accepted)


def _widget_open_admitted(*, portal: Portal, request: WidgetRequest) -> WidgetPage:
    started = time.monotonic()
    placement = request.placement
    page = WidgetPage(state="ok", status=200, placement=placement, portal=portal, lang=request.lang)
    commands = {"profile": ("profile", {}), **placement.load_commands(request.entity_id)}
    try:
        # The open's one batch; a portal that changed its address (302) is re-learnt from the
        # trusted OAuth server with the posted token (never from Location or DOMAIN), once.
        result = following_a_move(
            portal=portal, access_token=request.access_token,
            # No QUERY_LIMIT_EXCEEDED retries inside a widget request (a person waits, a thread is
            # held): the page says "try again"; retries belong to commands and the queue.
            action=lambda token: client.batch(client_endpoint=portal.client_endpoint, access_token=token,
                                              commands=commands, retry_rate_limited=False),
        )
    except errors.PaymentRequired:
        logger.info("widget: portal %s answered PAYMENT_REQUIRED", portal.member_id)
        portal_mark_payment_required(portal=portal)
        raise PaymentRequired(PAYMENT_REQUIRED) from None
    except errors.AuthError as exc:
        logger.info("widget refused: portal %s answered %s for the posted token", portal.member_id, exc.code)
        if isinstance(exc, errors.NotInstalled):
            raise NotInstalled(f"the portal answered {exc.code}") from None
        raise SessionExpired(f"the portal answered {exc.code} for the posted token") from None
    except (errors.BitrixError, client.UntrustedEndpoint) as exc:
        page.state, page.status, page.detail = _outcome_for(exc)
        result = None
    if not _same_domain(portal.domain, request.domain):
        # A member_id copied from another portal's page, posted with a domain of the attacker's.
        # (A portal that really moved answered 302 above and now has the posted domain.)
        raise WidgetRefused(DOMAIN_MISMATCH)
    if page.state == "busy":
        # Bitrix24 is slow or limits this portal: answer at once and write nothing, so that an
        # overloaded portal's crowd costs the server as little as possible (the metric counts it).
        metrics.widget_opens.labels(placement.code, "busy").inc()
        return page
    viewer = _viewer(result.results.get("profile")) if result else None
    if result and viewer is None:
        error = result.errors.get("profile")
        if isinstance(error, errors.AuthError):
            raise SessionExpired(f"the profile call answered {error.code}")
        page.state, page.status, page.detail = _outcome_for(error or errors.BitrixError("NO_PROFILE"))
    if viewer is not None:
        page.viewer = viewer
        _fill_entity(page, result=result, request=request)
    # The invocation first: an uninstall that commits after it purges it (CLEAN), and one that
    # committed before is seen by the viewer's store (or by the check) just after.
    invocation = Invocation.objects.create(
        portal=portal, placement=placement.code, entity_id=request.entity_id,
        user_id=viewer["id"] if viewer else None, lang=request.lang,
        outcome=Invocation.Outcome.OK if page.state in ("ok", "not_found") else Invocation.Outcome.ERROR,
        detail=page.detail[:255], duration_ms=int((time.monotonic() - started) * 1000),
    )
    if viewer is not None:
        still_installed = credential_store_viewer(
            portal=portal, user_id=viewer["id"], access_token=request.access_token,
            refresh_token=request.refresh_token, expires_in=request.expires_in,
        )
    else:
        still_installed = portal_still_installed(portal=portal)
    if not still_installed:  # uninstalled while this open's batch was in flight
        invocation.delete()
        page.action_token = ""
        raise NotInstalled("the app was uninstalled during the open")
    metrics.widget_opens.labels(placement.code, "ok" if page.state in ("ok", "not_found") else "error").inc()
    metrics.widget_open_seconds.labels(placement.code).observe(time.monotonic() - started)
    return page


def _entity_errors(placement: type[registry.Placement], result: client.BatchResult) -> list[errors.BitrixError]:
    """The load commands' errors that decide the page: not the viewer's profile, not the action's
    (Bitrix24 refusing the action is a refusal, never "not found"), not an optional command's."""
    return [
        error for key, error in result.errors.items()
        if key not in ("profile", "action") and key not in placement.optional_commands
    ]


def _fill_entity(page: WidgetPage, *, result: client.BatchResult, request: WidgetRequest) -> None:
    entity_errors = _entity_errors(page.placement, result)
    denied = [error for error in entity_errors if page.placement.is_missing(error)]
    if entity_errors and len(denied) < len(entity_errors):
        page.state, page.status, page.detail = _outcome_for(entity_errors[0])
        return
    with translation.override(page.lang):
        page.entity = None if denied else page.placement.view(
            result.results, origin=page.portal.origin, options=request.options, viewer_id=page.viewer["id"]
        )
    if page.entity is None:
        page.state, page.detail = "not_found", "not found or no access"
        return
    page.detail = "shown"
    page.action_token = action_token_issue(
        grant=ActionGrant(
            portal_id=page.portal.pk, user_id=page.viewer["id"], placement=page.placement.code,
            entity_id=request.entity_id, lang=page.lang,
        )
    )


def widget_action(*, grant: ActionGrant, action: str) -> dict:
    """Run ``action`` for the token's viewer with their stored credential; the answer is the
    entity after it, under the placement's ``answer_key`` (``{"task": ...}``, ``{"deal": ...}``).

    One batch: the action, then the entity, even when the action fails (``halt`` off), so a
    refusal comes with the entity as it is now (completed elsewhere, say), never a stale one.
    The token service refreshes the viewer's tokens once AUTH_EXPIRES has elapsed, and once more
    if Bitrix24 answers expired_token early. Raises PayloadError (400) for an unknown action,
    ActionTokenInvalid/ActionRefused (403), PaymentRequired (402), BitrixError (502/504).
    """
    placement = registry.get(grant.placement)
    if placement is None:
        raise ActionTokenInvalid("This widget is no longer served. Reopen the card.")
    if action not in placement.action_names():
        raise payload.PayloadError(f"Unknown action {action[:40]!r}.")
    credential = (
        Credential.objects.select_related("portal")
        .filter(portal_id=grant.portal_id, user_id=grant.user_id, portal__in=Portal.objects.served())
        .first()
    )
    if credential is not None and credential.portal.status == Portal.Status.PAYMENT_REQUIRED:
        raise PaymentRequired(PAYMENT_REQUIRED)
    if credential is None or not (credential.access_token or credential.refresh_token):
        raise ActionRefused("no stored credential for the viewer", state="session_expired")
    commands = dict(placement.load_commands(grant.entity_id))
    call = placement.action_command(action, grant.entity_id)
    if call is not None:
        commands = {"action": call, **commands}
    try:
        # No rate-limit retries inside a widget request: the script shows "try again" (a 503).
        result = portal_batch(credential=credential, commands=commands, halt=False, retry_rate_limited=False)
    except errors.PaymentRequired:  # the token service has marked the portal
        raise PaymentRequired(PAYMENT_REQUIRED) from None
    except (ReauthRequired, errors.InvalidToken, errors.ExpiredToken, errors.NotInstalled) as exc:
        # The token service's own words are for operators (they name the user): the viewer
        # only needs to know that reloading the page brings a new session.
        raise ActionRefused(f"session not renewed: {exc.code}", state="session_expired") from None
    entity_errors = _entity_errors(placement, result)
    refusal = result.errors.get("action")
    for error in ([refusal] if refusal else []) + entity_errors:
        if isinstance(error, (errors.TransportError, errors.RateLimited)):
            raise error
    failing = [error for error in entity_errors if not placement.is_missing(error)]
    if failing:
        raise ActionRefused(f"Bitrix24 refused the load: {failing[0].code}", state="error")
    with translation.override(grant.lang):
        entity = None if entity_errors else placement.view(
            result.results, origin=credential.portal.origin, options={}, viewer_id=grant.user_id
        )
    if entity is None:
        raise ActionRefused("the entity is missing or forbidden now", state="not_found")
    if refusal is not None:
        logger.info("widget action %s on %s %s refused: %s %s", action, placement.code, grant.entity_id,
                    refusal.code, refusal.description)
        raise ActionRefused(f"Bitrix24 refused: {refusal.code}", answer={placement.answer_key: entity})
    logger.info("widget action %s on %s %s by user %s", action, placement.code, grant.entity_id, grant.user_id)
    return {placement.answer_key: entity}
