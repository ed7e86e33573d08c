"""A simulated Bitrix24 portal: the install step, task cards framing the real widget, controls.

Every frame is loaded the way Bitrix24 loads it, by a form POST into an iframe with the fields a
portal sends; the app answers through its real views. Development only (DEBUG on, loopback).
"""
from __future__ import annotations

import ipaddress
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.request import split_domain_port
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from placements.tasks import STATUS_LABELS
from portals.models import Portal
from portals.subscription import portal_subscription_refresh
from sandbox import runtime
from sandbox.runtime import ADMIN_USER_ID, DEAL_PLACEMENT, EMPLOYEE_USER_ID, TASK_PLACEMENT, sandbox

LANGUAGES = ("en", "ru", "de")


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def sandbox_only(view):
    """404 unless DEBUG is on and the browser is on this machine; a host name without a dot
    (localhost) is sent to 127.0.0.1, since Bitrix24 binds only dotted handler hosts (protocol 5.1)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not (settings.DEBUG and settings.SANDBOX) or not _loopback(request.META.get("REMOTE_ADDR")):
            raise Http404("The sandbox runs only in development, for a browser on this machine.")
        hostname, port = split_domain_port(request.get_host())
        if "." not in hostname and request.method == "GET":
            return redirect(f"{request.scheme}://127.0.0.1{':' + port if port else ''}{request.get_full_path()}")
        return view(request, *args, **kwargs)

    return wrapped


def _lang(request: HttpRequest) -> str:
    lang = request.GET.get("lang", "en")
    return lang if lang in LANGUAGES else "en"


def _viewer(request: HttpRequest) -> int:
    return EMPLOYEE_USER_ID if request.GET.get("user") == str(EMPLOYEE_USER_ID) else ADMIN_USER_ID


def _base_url(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


def _chrome(request: HttpRequest, **context) -> dict:
    """What every sandbox page shows around its frame: the portal, the viewer, the controls."""
    box = sandbox()
    lang, viewer = _lang(request), _viewer(request)
    return {
        "box": box,
        "lang": lang,
        "languages": LANGUAGES,
        "viewer": box.user(viewer),
        "users": [box.user(ADMIN_USER_ID), box.user(EMPLOYEE_USER_ID)],
        "tasks": sorted(box.portal.tasks.values(), key=lambda task: task.id),
        "deals": sorted(box.portal.deals.values(), key=lambda deal: deal.id),
        "slow": box.slow,
        "unpaid": box.unpaid,
        "has_app_page": app_page_path() is not None,
        "superuser_command": (
            "DEBUG=true DJANGO_SUPERUSER_PASSWORD=admin .venv/bin/python manage.py createsuperuser "
            "--noinput --username admin --email admin@example.com"
        ),
        **context,
    }


def _next_url(request: HttpRequest) -> str:
    """Where the install step goes on: the sandbox page that asked (never another site)."""
    wanted = request.GET.get("next", "")
    if wanted.startswith("/sandbox/") and "//" not in wanted and "\\" not in wanted:
        return wanted
    return reverse("sandbox:task", args=[1]) + "?" + urlencode({"lang": _lang(request)})


def _unless_installed(request: HttpRequest) -> HttpResponse | None:
    """None when the app is installed on this run's fake. Otherwise: after an uninstall, a page
    saying so; after a server restart (a new fake), the install step, then back here."""
    box = sandbox()
    if box.installed_here():
        return None
    if box.portal.installed:
        return redirect(f"{reverse('sandbox:portal')}?{urlencode({'next': request.get_full_path()})}")
    return render(request, "sandbox/not_installed.html", _chrome(request))


@require_GET
@sandbox_only
def portal(request: HttpRequest) -> HttpResponse:
    """GET /sandbox/: the demo portal. Installs the app first (the administrator's install page,
    framed and POSTed as Bitrix24 does), then opens the first task card."""
    box = sandbox()
    if box.installed_here():
        return redirect(_next_url(request))
    action, fields = box.install_post(base_url=_base_url(request), lang=_lang(request))
    context = _chrome(
        request, frame_action=action, frame_fields=fields, frame_title="Install the app", next_url=_next_url(request),
    )
    return render(request, "sandbox/install.html", context)


def _frame(request: HttpRequest, *, placement: str, options: dict) -> dict:
    """The frame of ``placement`` as the card shows it: Bitrix24's form POST into the handler
    the app bound, or nothing when the app did not bind that placement (B24_PLACEMENTS)."""
    box = sandbox()
    handler = box.bound_handler(placement)
    if handler is None:
        return {"placement": placement, "frame_action": None}
    query, fields = box.frame_post(user_id=_viewer(request), placement=placement, options=options, lang=_lang(request))
    return {"placement": placement, "frame_action": f"{handler}?{urlencode(query)}", "frame_fields": fields}


@require_GET
@sandbox_only
def task_card(request: HttpRequest, task_id: int) -> HttpResponse:
    """GET /sandbox/tasks/<id>/: a task card whose Applications block frames our widget."""
    box = sandbox()
    task = box.task(task_id)
    if task is None:
        raise Http404("The demo portal has no such task.")
    if (elsewhere := _unless_installed(request)) is not None:
        return elsewhere
    uri = f"/company/personal/user/{task.responsible_id}/tasks/task/view/{task.id}/"
    context = _chrome(
        request, task=task, status_label=STATUS_LABELS.get(task.status, task.status),
        responsible=box.user(task.responsible_id), creator=box.user(task.created_by),
        deadline=parse_datetime(task.deadline) if task.deadline else None, frame_title="Task widget",
        **_frame(request, placement=TASK_PLACEMENT, options={"taskId": str(task.id), "URI": uri}),
    )
    return render(request, "sandbox/task.html", context)


@require_GET
@sandbox_only
def deal_card(request: HttpRequest, deal_id: int) -> HttpResponse:
    """GET /sandbox/deals/<id>/: a deal card whose tab frames our deal widget."""
    box = sandbox()
    deal = box.deal(deal_id)
    if deal is None:
        raise Http404("The demo portal has no such deal.")
    if (elsewhere := _unless_installed(request)) is not None:
        return elsewhere
    context = _chrome(
        request, deal=deal, stage_name=box.stage_name(deal.stage_id), responsible=box.user(deal.assigned_by_id),
        close_date=parse_datetime(deal.close_date) if deal.close_date else None, frame_title="Deal widget",
        **_frame(request, placement=DEAL_PLACEMENT, options={"ID": str(deal.id)}),
    )
    return render(request, "sandbox/deal.html", context)


def app_page_path() -> str | None:
    """The app's own page (the local app's "handler path"), once the app has one."""
    try:
        return reverse("portals:app")
    except NoReverseMatch:
        return None


@require_GET
@sandbox_only
def app_page(request: HttpRequest) -> HttpResponse:
    """GET /sandbox/app/: the user opens the app from the portal's menu (PLACEMENT=DEFAULT)."""
    box = sandbox()
    path = app_page_path()
    if path is None:
        raise Http404("The app has no page of its own yet.")
    if (elsewhere := _unless_installed(request)) is not None:
        return elsewhere
    query, fields = box.frame_post(user_id=_viewer(request), placement="DEFAULT", options={}, lang=_lang(request))
    context = _chrome(request, app_open=True, frame_action=f"{_base_url(request)}{path}?{urlencode(query)}",
                      frame_fields=fields, frame_title="The app")
    return render(request, "sandbox/app.html", context)


@require_GET
@sandbox_only
def task_state(request: HttpRequest, task_id: int) -> JsonResponse:
    """The fake's own view of a task, so the card shows what the widget's actions changed."""
    task = sandbox().task(task_id)
    if task is None:
        raise Http404("The demo portal has no such task.")
    return JsonResponse({"id": task.id, "title": task.title, "status": task.status,
                         "status_label": str(STATUS_LABELS.get(task.status, task.status))})


def _demo_portal_row(box) -> Portal:
    return Portal.objects.get(member_id=box.portal.member_id)


@require_POST
@sandbox_only
def control(request: HttpRequest, name: str) -> JsonResponse:
    """POST /sandbox/controls/<name>/: make the demo portal misbehave the way real ones do."""
    box = sandbox()
    if name == "expire-token":
        box.expire_tokens()
        message = ("Every access token of the demo portal has expired. Click an action in the widget: "
                   "the app refreshes the viewer's token and carries on.")
    elif name == "slow-portal":
        box.set_slow(request.POST.get("on") == "1")
        message = (f"The portal now takes {runtime.SLOW_LATENCY:g} s per REST call: open the card again, or "
                   "click an action, and watch the widget wait." if box.slow else
                   f"The portal answers in {runtime.NORMAL_LATENCY * 1000:.0f} ms again.")
    elif name == "unpaid":
        if request.POST.get("on") == "1":
            box.require_payment()
            message = ("The demo portal's subscription is over: Bitrix24 answers PAYMENT_REQUIRED. Open the card "
                       "again: the widget asks the user to have an administrator renew it.")
        else:
            answers = box.pay()
            statuses = ", ".join(str(answer["status"]) for answer in answers) or "no handler was bound"
            message = f"Paid: Bitrix24 sent ONAPPPAYMENT (the app answered {statuses}). "
            if _demo_portal_row(box).status == Portal.Status.PAYMENT_REQUIRED:
                # The app believes a doorbell only 30 s after its last app.info read (forged ones
                # must not spend the portal's calls); sync_portals is the operator's way.
                portal_subscription_refresh(portal=_demo_portal_row(box))
                message += ("The app had read app.info moments ago, so it ignored the doorbell; the sandbox ran "
                            "what sync_portals runs for this portal instead. ")
            message += f"The portal is {_demo_portal_row(box).status} again: open the card again."
        return JsonResponse({"message": message, "unpaid": box.unpaid})
    elif name == "uninstall":
        answers = box.uninstall()
        statuses = ", ".join(str(answer["status"]) for answer in answers) or "no handler was bound"
        message = (f"The app was deleted from the demo portal; Bitrix24 sent ONAPPUNINSTALL (the app answered "
                   f"{statuses}). The admin now shows the portal as uninstalled; open the portal to install it again.")
        return JsonResponse({"message": message, "answers": answers, "reload": True})
    else:
        raise Http404("No such control.")
    return JsonResponse({"message": message, "slow": box.slow})
