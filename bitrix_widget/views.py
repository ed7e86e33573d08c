"""Project-level views: the health check, the metrics a Prometheus scraper reads, the home page."""
from django.conf import settings
from django.db import connection
from django.db.utils import DatabaseError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET

from placements.registry import all_placements, required_scopes
from portals import metrics


def database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return False
    return True


@require_GET
def healthz(request):
    """200 when the database answers, 503 when it does not (for load balancers)."""
    if not database_answers():
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@require_GET
def metrics_view(request):
    """GET /metrics: Prometheus text, for a scraper that sends ``Authorization: Bearer
    $METRICS_TOKEN``. Unset token: 404 (the endpoint does not exist); wrong or missing: 401."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off: set METRICS_TOKEN")
    # Constant time: the answer's timing must not tell a guesser how much of the token was right.
    if not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
        response = HttpResponse("send Authorization: Bearer <METRICS_TOKEN>\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


def _url_name_or_none(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def registration(*, base: str) -> dict:
    """What an operator types into Bitrix24's local-app form: our URLs and the scopes we need."""
    base = base.rstrip("/")
    install = reverse("portals:install")
    placements = all_placements()
    return {
        "base": base,
        "install_path": base + install,
        # The app's own page (any user opening the app); the install page until it exists.
        "handler_path": base + (_url_name_or_none("portals:app") or install),
        "placement_handler": base + reverse("placements:handler"),
        "event_url": base + reverse("portals:events"),
        "placements": [placement.code for placement in placements],
        "scopes": required_scopes(),
    }


@require_GET
def home(request):
    """GET /: what this app is, its health and what to register in Bitrix24; in development
    without credentials, the way into the sandbox."""
    base = settings.B24_APP_BASE_URL or request.build_absolute_uri("/")
    context = {
        "database_ok": database_answers(),
        "registration": registration(base=base),
        "base_configured": bool(settings.B24_APP_BASE_URL),
        "configured": bool(settings.B24_CLIENT_ID and settings.B24_CLIENT_SECRET),
        "sandbox": settings.SANDBOX,
    }
    return render(request, "home.html", context)
