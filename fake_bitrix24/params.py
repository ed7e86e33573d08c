"""Request parameters as Bitrix24 reads them (PHP bracket keys, case-insensitive names) and the
small answer helpers every REST area shares."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from fake_bitrix24.state import ApiError


def _insert(target: dict, key: str, value: Any) -> None:
    """Put `a[b][]=v` into nested dicts the way PHP's parse_str does (`[]` appends)."""
    if "[" not in key or not key.endswith("]"):
        target[key] = value
        return
    base, rest = key.split("[", 1)
    parts = [base] + rest[:-1].split("][")
    cur: Any = target
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            if last:
                cur.append(value)
                return
            nxt: Any = [] if parts[i + 1] == "" else {}
            cur.append(nxt)
            cur = nxt
            continue
        if last:
            cur[part] = value
            return
        if part not in cur or not isinstance(cur[part], (dict, list)):
            cur[part] = [] if parts[i + 1] == "" else {}
        cur = cur[part]


def parse_php_query(qs: str) -> dict:
    """Parse a urlencoded string with PHP bracket keys into nested dicts/lists."""
    out: dict = {}
    for k, v in parse_qsl(qs, keep_blank_values=True):
        _insert(out, k, v)
    return out


def ci(params: dict, name: str, default: Any = None) -> Any:
    """Case-insensitive parameter lookup (Bitrix upper-cases keys for placement/event methods)."""
    if name in params:
        return params[name]
    low = name.lower()
    for k, v in params.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return default


def truthy(v: Any) -> bool:
    return str(v).strip().lower() in {"1", "true", "y", "yes"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def time_block(start: float) -> dict:
    finish = time.time()
    return {
        "start": start, "finish": finish, "duration": finish - start, "processing": finish - start,
        "date_start": iso(start), "date_finish": iso(finish),
        "operating_reset_at": int(finish) + 600, "operating": 0,
    }


def php_empty(d: dict) -> dict | list:
    """PHP json_encode turns an empty array into `[]`, so real Bitrix sends [] for empty maps."""
    return d if d else []


def norm_key(key: str) -> str:
    """A method name or path as the fake keys it: lower case, no slashes, no `.json`."""
    key = key.strip().strip("/").lower()
    return key[:-5] if key.endswith(".json") else key


def require_string(p: dict, *names: str) -> list:
    """The named arguments, each a non-empty string, or Bitrix24's ERROR_ARGUMENT."""
    values = []
    for name in names:
        val = ci(p, name)
        if not val or not isinstance(val, str):
            raise ApiError(400, "ERROR_ARGUMENT", f"Argument '{name}' is null or empty", argument=name)
        values.append(val)
    return values
