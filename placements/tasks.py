"""How a Bitrix24 task looks in the widget: ``tasks.task.get``'s answer turned into plain words.

Bitrix24 sends every scalar as a string, ``result: []`` for a missing or forbidden task and
relative picture paths (protocol 7); this module absorbs all three so templates stay dumb.
"""
from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urljoin, urlsplit

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format, time_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

TASK_SELECT = ["ID", "TITLE", "STATUS", "PRIORITY", "DEADLINE", "RESPONSIBLE_ID", "CREATED_BY"]
# The status actions the widget offers, each a ``tasks.task.<name>`` method and a key of the
# ``action`` block in which Bitrix24 says whether this viewer may take it now (protocol 7).
# disapprove is "Return to work" for a task awaiting control.
TASK_ACTIONS = ("start", "pause", "complete", "approve", "disapprove", "renew", "defer")

STATUS_LABELS = {
    "1": gettext_lazy("New"),
    "2": gettext_lazy("Pending"),
    "3": gettext_lazy("In progress"),
    "4": gettext_lazy("Awaiting control"),
    "5": gettext_lazy("Completed"),
    "6": gettext_lazy("Deferred"),
    "7": gettext_lazy("Declined"),
}
PRIORITY_LABELS = {
    "0": gettext_lazy("Low"),
    "1": gettext_lazy("Medium"),
    "2": gettext_lazy("High"),
}
# A task in one of these states is not "overdue" whatever its deadline says.
FINISHED_STATUSES = {"4", "5", "7"}


def _text(value, limit: int = 500) -> str:
    return str(value).strip()[:limit] if isinstance(value, (str, int)) and not isinstance(value, bool) else ""


# What a browser ignores in a URL (tab, CR, LF anywhere; C0 controls and spaces at the ends)
# and what it reads as "/" (a backslash): " /\n/evil.example.com" and "/\\evil.example.com"
# look relative to a naive check, yet a browser opens another host.
_IGNORED_IN_URLS = re.compile(r"[\t\n\r]")


def _url_as_browsers_read_it(value) -> str:
    text = str(value) if isinstance(value, str) else ""
    return _IGNORED_IN_URLS.sub("", text).strip("".join(map(chr, range(0x21)))).replace("\\", "/")[:1000]


def portal_path_url(origin: str, path) -> str:
    """A relative ``path`` (PLACEMENT_OPTIONS.URI) as a URL on the portal itself, or ""."""
    path = _url_as_browsers_read_it(path)
    if not path.startswith("/") or path.startswith("//") or any(ord(char) < 0x20 or char == "\x7f" for char in path):
        return ""
    url = urljoin(origin + "/", path)
    return url if urlsplit(url).netloc == urlsplit(origin).netloc else ""


def portal_url(origin: str, path) -> str:
    """``path`` (relative or absolute) as an http(s) URL on the portal, or "" when it is neither."""
    path = _url_as_browsers_read_it(path) if isinstance(path, str) else _text(path, 1000)
    if not path:
        return ""
    url = urljoin(origin + "/", path)
    return url if urlsplit(url).scheme in ("http", "https") else ""


def portal_path(origin: str, url: str) -> str:
    """The path of ``url`` when it is on the portal itself, else "" (openPath takes paths only)."""
    if not url.startswith(origin + "/"):
        return ""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def person_view(person, *, origin: str) -> dict:
    person = person if isinstance(person, dict) else {}
    name = _text(person.get("name"), 200)
    initials = "".join(word[0] for word in name.split()[:2]).upper() or "?"
    url = portal_url(origin, person.get("link"))
    return {
        "id": _text(person.get("id"), 20),
        "name": name or _("Unknown user"),
        "initials": initials,
        "icon": portal_url(origin, person.get("icon")),
        "url": url,
        # BX24.openPath opens a path on the same portal in a slider (protocol 17).
        "path": portal_path(origin, url),
        "position": _text(person.get("workPosition"), 200),
    }


def deadline_view(value, *, status: str, now: dt.datetime | None = None) -> dict | None:
    """The deadline in the portal's own offset, and whether the task is past it."""
    text = _text(value, 64)
    try:
        deadline = parse_datetime(text) if text else None
    except ValueError:
        deadline = None
    if deadline is None:
        return None
    if timezone.is_naive(deadline):
        deadline = timezone.make_aware(deadline, dt.timezone.utc)
    overdue = status not in FINISHED_STATUSES and deadline < (now or timezone.now())
    # "15 января 2025, 18:00": the date as the language writes it (bitrix_widget/formats), then the time.
    text = f"{date_format(deadline, 'DATE_FORMAT')}, {time_format(deadline, 'H:i')}"
    return {"iso": deadline.isoformat(), "text": text, "overdue": overdue}


def task_view(result, *, origin: str, uri=None, viewer_id: int | None = None) -> dict | None:
    """The task for the page and the action answer; None when Bitrix24 answered ``[]``."""
    task = result.get("task") if isinstance(result, dict) else None
    if not isinstance(task, dict) or not _text(task.get("id")):
        return None
    task_id = _text(task.get("id"), 20)
    status = _text(task.get("status"), 4)
    priority = _text(task.get("priority"), 4)
    url = portal_path_url(origin, uri) or portal_url(
        origin, f"/company/personal/user/{viewer_id or 0}/tasks/task/view/{task_id}/"
    )
    allowed = task.get("action") if isinstance(task.get("action"), dict) else None
    return {
        "id": task_id,
        "title": _text(task.get("title"), 1000) or _("Untitled task"),
        "status": status,
        "status_label": str(STATUS_LABELS.get(status, _("Unknown status"))),
        "priority": priority,
        "priority_label": str(PRIORITY_LABELS.get(priority, PRIORITY_LABELS["1"])),
        "deadline": deadline_view(task.get("deadline"), status=status),
        "responsible": person_view(task.get("responsible"), origin=origin),
        "creator": person_view(task.get("creator"), origin=origin),
        "url": url,
        # Bitrix24 says which actions this user may take now; without that answer, offer only the
        # three every task has, as the widget always did.
        "can": {
            name: bool(allowed.get(name)) if allowed is not None else name in ("start", "complete", "defer")
            for name in TASK_ACTIONS
        },
    }
