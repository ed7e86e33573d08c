"""The offline queue: event.offline.get/clear/error/list (protocol 13).

Bitrix24 queues a record when an object changes and an offline handler is bound for the event;
the queue keeps one record per changed object (the latest state), not a history. ``get`` with
``clear=1`` (the default) deletes what it returns; with ``clear=0`` it reserves the records under
a ``process_id`` that ``clear``/``error`` then settle, and a later ``get`` with that
``process_id`` returns what is still unsettled. Records marked by ``error`` come back only with
``error=1``. All four methods are for administrators only.
"""
from __future__ import annotations

import secrets
import time

from fake_bitrix24.params import ci, iso, truthy
from fake_bitrix24.state import ApiError

ADMIN_ONLY = {"event.offline.get", "event.offline.clear", "event.offline.error", "event.offline.list"}
PAGE = 50
PUBLIC_FIELDS = ("ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL", "MESSAGE_ID")


def offline_bound(portal, event_name: str) -> bool:
    return any(e["event"] == event_name and e["offline"] for e in portal.events)


def queue_record(portal, event_name: str, object_key: str, event_data) -> dict | None:
    """An object changed: queue (or refresh) its record, if the app bound the event offline.

    An unreserved record of the same object and event is stamped with the new change instead of
    adding another (latest state per object, 13.1); a reserved one stays as it was and a new
    record is added beside it (what Bitrix24 does then is unverified)."""
    event_name = event_name.upper()
    if not portal.installed or not offline_bound(portal, event_name):
        return None
    stamp = iso(time.time())
    for record in portal.offline_records:
        if record["_key"] == (event_name, object_key) and not record["PROCESS_ID"] and record["ERROR"] == "0":
            record.update(TIMESTAMP_X=stamp, EVENT_DATA=event_data, MESSAGE_ID=secrets.token_hex(8))
            return record
    portal.offline_last_id += 1
    record = {
        "ID": str(portal.offline_last_id), "TIMESTAMP_X": stamp, "EVENT_NAME": event_name,
        "EVENT_DATA": event_data, "EVENT_ADDITIONAL": False, "MESSAGE_ID": secrets.token_hex(8),
        "PROCESS_ID": "", "ERROR": "0", "_key": (event_name, object_key),
    }
    portal.offline_records.append(record)
    return record


def public(record: dict, *, listing: bool = False) -> dict:
    row = {name: record[name] for name in PUBLIC_FIELDS}
    if listing:
        row.update(PROCESS_ID=record["PROCESS_ID"], ERROR=record["ERROR"])
    return row


def _name_filter(p: dict):
    flt = ci(p, "filter") or {}
    if not isinstance(flt, dict):
        return None
    for key, value in flt.items():
        if str(key).lstrip("=").upper() == "EVENT_NAME":
            return str(value).upper()
    return None


def _limit(p: dict) -> int:
    try:
        return max(1, min(int(ci(p, "limit", PAGE) or PAGE), PAGE))
    except (TypeError, ValueError):
        raise ApiError(400, "ERROR_ARGUMENT", "Argument 'limit' must be a number", argument="limit") from None


def get(fake, portal, user, p):
    clear = truthy(ci(p, "clear", 1))
    process_id = str(ci(p, "process_id", "") or "")
    if process_id:
        records = [r for r in portal.offline_records if r["PROCESS_ID"] == process_id]
    else:
        errored = "1" if truthy(ci(p, "error", 0)) else "0"
        name = _name_filter(p)
        records = [
            r for r in portal.offline_records
            if not r["PROCESS_ID"] and r["ERROR"] == errored and (name is None or r["EVENT_NAME"] == name)
        ]
    records = sorted(records, key=lambda r: (r["TIMESTAMP_X"], int(r["ID"])))[: _limit(p)]
    if clear:
        portal.offline_records[:] = [r for r in portal.offline_records if r not in records]
        return {"process_id": None, "events": [public(r) for r in records]}
    if records and not process_id:
        process_id = secrets.token_hex(16)
        for record in records:
            record["PROCESS_ID"] = process_id
    return {"process_id": process_id or None, "events": [public(r) for r in records]}


def _process_id(p: dict) -> str:
    process_id = ci(p, "process_id")
    if not process_id or not isinstance(process_id, str):
        raise ApiError(400, "ERROR_ARGUMENT", "Argument 'process_id' is null or empty", argument="process_id")
    return process_id


def _values(p: dict, name: str) -> set | None:
    value = ci(p, name)
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        value = [value]
    return {str(v) for v in value}


def clear(fake, portal, user, p):
    process_id = _process_id(p)
    ids, message_ids = _values(p, "id"), _values(p, "message_id")

    def settled(record) -> bool:
        if record["PROCESS_ID"] != process_id:
            return False
        if ids is not None:  # message_id is ignored when id is given (13.4)
            return record["ID"] in ids
        return message_ids is None or record["MESSAGE_ID"] in message_ids

    portal.offline_records[:] = [r for r in portal.offline_records if not settled(r)]
    return True


def error(fake, portal, user, p):
    process_id = _process_id(p)
    message_ids = _values(p, "message_id") or set()
    for record in portal.offline_records:
        if record["PROCESS_ID"] == process_id and record["MESSAGE_ID"] in message_ids:
            record.update(PROCESS_ID="", ERROR="1")
    return True


def listing(fake, portal, user, p):
    try:
        start = max(0, int(ci(p, "start", 0) or 0))
    except (TypeError, ValueError):
        start = 0
    rows = sorted(portal.offline_records, key=lambda r: int(r["ID"]))
    return [public(r, listing=True) for r in rows[start:start + PAGE]]


METHODS = {
    "event.offline.get": get,
    "event.offline.clear": clear,
    "event.offline.error": error,
    "event.offline.list": listing,
}
