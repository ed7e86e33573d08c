"""How a Bitrix24 deal looks in the deal card's tab: ``crm.deal.get``'s answer in plain words.

Values arrive as strings or null, ``OPPORTUNITY`` is a decimal string and the stage is only an id
(protocol 16): the stage's name comes from ``crm.status.list`` and the responsible's from
``user.get``, both in the same batch; without them the page still shows the id.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_date, parse_datetime
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _

from placements.tasks import _text, person_view, portal_url

SEMANTICS = {"P": "in_progress", "S": "won", "F": "lost"}


def _stage_name(stage_id: str, rows) -> str:
    """The stage's name from crm.status.list rows (a lead status may share the STATUS_ID)."""
    for row in rows if isinstance(rows, list) else []:
        if (isinstance(row, dict) and _text(row.get("STATUS_ID"), 50) == stage_id
                and _text(row.get("ENTITY_ID"), 50).startswith("DEAL_STAGE")):
            return _text(row.get("NAME"), 200)
    return ""


def amount_view(opportunity, currency) -> dict:
    """``1000000.00`` and ``EUR`` as the viewer's language writes them (1,000,000.00 / 1.000.000,00)."""
    currency = _text(currency, 10).upper()
    try:
        value = Decimal(_text(opportunity, 40) or "0")
    except InvalidOperation:
        value = Decimal(0)
    number = number_format(value, decimal_pos=2, use_l10n=True, force_grouping=True)
    return {"value": str(value), "currency": currency, "text": f"{number} {currency}".strip()}


def close_date_view(value) -> dict | None:
    """The close date (a date: its time is midnight in the portal's zone, protocol 16)."""
    text = _text(value, 64)
    try:
        moment = parse_datetime(text) if "T" in text else None
        day = moment.date() if moment else parse_date(text[:10]) if text else None
    except ValueError:
        day = None
    if not isinstance(day, dt.date):
        return None
    return {"iso": day.isoformat(), "text": date_format(day, "DATE_FORMAT")}


def responsible_view(user_id: str, rows, *, origin: str) -> dict:
    """user.get's row for the responsible, as the shared person block shows people."""
    row = next((r for r in rows if isinstance(r, dict) and _text(r.get("ID"), 20) == user_id), None) \
        if isinstance(rows, list) else None
    if row is None:
        person = {"id": user_id, "name": _("User #%(id)s") % {"id": user_id} if user_id else ""}
    else:
        person = {"id": user_id, "name": f"{_text(row.get('NAME'), 100)} {_text(row.get('LAST_NAME'), 100)}".strip(),
                  "icon": row.get("PERSONAL_PHOTO"), "workPosition": row.get("WORK_POSITION")}
    if user_id:
        person["link"] = f"/company/personal/user/{user_id}/"
    return person_view(person, origin=origin)


def deal_view(result, *, stages=None, people=None, origin: str) -> dict | None:
    """The deal for the page and the action answer; None when crm.deal.get gave no deal."""
    if not isinstance(result, dict) or not _text(result.get("ID")):
        return None
    deal_id = _text(result.get("ID"), 20)
    stage_id = _text(result.get("STAGE_ID"), 50)
    return {
        "id": deal_id,
        "title": _text(result.get("TITLE"), 1000) or _("Untitled deal"),
        "stage": stage_id,
        "stage_label": _stage_name(stage_id, stages) or stage_id or _("Unknown stage"),
        "semantic": SEMANTICS.get(_text(result.get("STAGE_SEMANTIC_ID"), 2), "in_progress"),
        "amount": amount_view(result.get("OPPORTUNITY"), result.get("CURRENCY_ID")),
        "close_date": close_date_view(result.get("CLOSEDATE")),
        "responsible": responsible_view(_text(result.get("ASSIGNED_BY_ID"), 20), people, origin=origin),
        "url": portal_url(origin, f"/crm/deal/details/{deal_id}/"),
    }
