"""CRM methods (protocol 16): crm.deal.get and crm.status.list (the stage names).

CRM errors carry an EMPTY ``error`` code with HTTP 400; "Not found" and "Access denied" appear
only in ``error_description`` (protocol 16), unlike tasks.task.get's empty array.
"""
from __future__ import annotations

from fake_bitrix24.params import ci
from fake_bitrix24.state import ApiError

# Pipeline 0's stages as a fresh portal has them (ENTITY_ID "DEAL_STAGE"); another pipeline's
# are "DEAL_STAGE_<CATEGORY_ID>" with ids like "C1:NEW".
STAGES = [
    ("DEAL_STAGE", "NEW", "New", 10, "#39A8EF", "P"),
    ("DEAL_STAGE", "PREPARATION", "Document preparation", 20, "#2FC6F6", "P"),
    ("DEAL_STAGE", "PREPAYMENT_INVOICE", "Invoice", 30, "#55D0E0", "P"),
    ("DEAL_STAGE", "EXECUTING", "In progress", 40, "#47E4C2", "P"),
    ("DEAL_STAGE", "FINAL_INVOICE", "Final invoice", 50, "#FFA900", "P"),
    ("DEAL_STAGE", "WON", "Deal won", 60, "#7BD500", "S"),
    ("DEAL_STAGE", "LOSE", "Deal lost", 70, "#FF5752", "F"),
    ("DEAL_STAGE_1", "C1:NEW", "New lead", 10, "#39A8EF", "P"),
    ("DEAL_STAGE_1", "C1:WON", "Won", 20, "#7BD500", "S"),
    ("STATUS", "NEW", "Not processed", 10, "#39A8EF", "P"),  # a lead status with the same STATUS_ID
]


def _semantic(stage_id: str) -> str:
    return next((row[5] for row in STAGES if row[1] == stage_id and row[0].startswith("DEAL_STAGE")), "P")


def deal_json(deal) -> dict:
    """The card fields of crm.deal.get's answer, values as strings or null (protocol 16)."""
    return {
        "ID": str(deal.id), "TITLE": deal.title, "TYPE_ID": "SALE", "STAGE_ID": deal.stage_id,
        "PROBABILITY": None, "CURRENCY_ID": deal.currency_id, "OPPORTUNITY": deal.opportunity,
        "IS_MANUAL_OPPORTUNITY": "N", "TAX_VALUE": "0.00", "COMPANY_ID": "0", "CONTACT_ID": None,
        "BEGINDATE": "2024-09-01T02:00:00+02:00", "CLOSEDATE": deal.close_date,
        "OPENED": "Y", "CLOSED": "Y" if _semantic(deal.stage_id) in ("S", "F") else "N", "COMMENTS": None,
        "ASSIGNED_BY_ID": str(deal.assigned_by_id), "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1",
        "DATE_CREATE": "2024-09-01T10:00:00+02:00", "DATE_MODIFY": "2024-09-02T10:00:00+02:00",
        "CATEGORY_ID": deal.category_id, "STAGE_SEMANTIC_ID": _semantic(deal.stage_id),
        "IS_NEW": "N", "IS_RECURRING": "N", "IS_RETURN_CUSTOMER": "N", "IS_REPEATED_APPROACH": "N",
        "SOURCE_ID": None, "ORIGINATOR_ID": None, "ORIGIN_ID": None,
    }


def deal_get(fake, portal, user, p):
    raw = ci(p, "id")
    try:
        deal_id = int(str(raw).strip())
    except (TypeError, ValueError):
        raise ApiError(400, "", "ID is not defined or invalid.") from None
    deal = portal.deals.get(deal_id)
    if deal is None:
        raise ApiError(400, "", "Not found")
    if deal.visible_to is not None and user.id not in deal.visible_to:
        raise ApiError(400, "", "Access denied.")
    return deal_json(deal)


def status_list(fake, portal, user, p):
    """crm.status.list with ``filter`` on ENTITY_ID and/or STATUS_ID, ordered by SORT."""
    wanted = ci(p, "filter") or {}
    wanted = wanted if isinstance(wanted, dict) else {}
    rows = [
        {"ID": str(n + 1), "ENTITY_ID": entity, "STATUS_ID": status, "NAME": name, "NAME_INIT": name,
         "SORT": str(sort), "SYSTEM": "Y", "CATEGORY_ID": entity.rpartition("_")[2] if entity[-1:].isdigit() else "0",
         "COLOR": color, "SEMANTICS": {"S": "S", "F": "F"}.get(semantic)}
        for n, (entity, status, name, sort, color, semantic) in enumerate(STAGES)
    ]
    for key, value in wanted.items():
        rows = [row for row in rows if str(row.get(str(key).upper())) == str(value)]
    return sorted(rows, key=lambda row: int(row["SORT"]))


METHODS: dict = {
    "crm.deal.get": deal_get,
    "crm.status.list": status_list,
}
