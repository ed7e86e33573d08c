"""Reading what Bitrix24 posts: query string plus form body, and PHP-style bracket keys."""
from __future__ import annotations

import json
import re

from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

_TOKEN = re.compile(r"^[A-Za-z0-9._\-]{1,512}$")
_MEMBER_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?(?::\d{1,5})?$")
_BRACKETS = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
MAX_BRACKET_DEPTH = 4


LANGUAGES = ("en", "ru", "de", "uk", "pl")
# Bitrix24's LANG codes that are not the ISO code Django's catalogues use.
BITRIX_LANGUAGE_CODES = {"ua": "uk"}


_ASCII_NUMBER = re.compile(r"[0-9]+")


def is_ascii_number(value: object) -> bool:
    """Only 0-9: ``str.isdigit()`` also accepts ``²``, ``①`` (which ``int()`` refuses: a 500) and
    Arabic-Indic digits (which ``int()`` reads, so ``٣`` would reach Bitrix24 as a task id)."""
    return isinstance(value, str) and _ASCII_NUMBER.fullmatch(value) is not None


class PayloadError(ValueError):
    """The request is malformed; ``str()`` says what is wrong, for a person to read."""


class FilePartRefused(MultiPartParserError):
    """A multipart body carried a file: Bitrix24 never posts one to us."""


class _RefuseFileParts(FileUploadHandler):
    """Stops a multipart body at its first file part, before a byte of the file is read (the
    default handlers would read it into memory or a temporary file, however large)."""

    def new_file(self, *args, **kwargs):
        raise FilePartRefused("file part")

    def receive_data_chunk(self, raw_data, start):  # never reached: new_file refuses first
        raise FilePartRefused("file part")

    def file_complete(self, file_size):
        return None


def merged_params(request: HttpRequest) -> dict[str, str]:
    """Query string and body in one dict (Bitrix24 splits them, protocol 0.1); the body wins.

    PayloadError when the body carries a file part (refused before it is read)."""
    if not hasattr(request, "_post"):  # the body has not been parsed yet
        request.upload_handlers = [_RefuseFileParts(request)]
    params = {key: request.GET.get(key, "") for key in request.GET}
    try:
        params.update({key: request.POST.get(key, "") for key in request.POST})
    except FilePartRefused:
        raise PayloadError("Files are not accepted here: Bitrix24 never sends one.") from None
    except MultiPartParserError:
        raise PayloadError("The request body is not a well-formed form.") from None
    return params


def parse_bracketed(flat: dict[str, str]) -> dict:
    """``{"auth[member_id]": "x"}`` -> ``{"auth": {"member_id": "x"}}``, at most 4 levels deep."""
    tree: dict = {}
    for key, value in flat.items():
        match = _BRACKETS.match(key)
        if not match:
            raise PayloadError(f"The field name {key[:40]!r} is malformed.")
        path = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        if len(path) > MAX_BRACKET_DEPTH:
            raise PayloadError(f"The field {key[:40]!r} is nested too deeply.")
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PayloadError(f"The field {key[:40]!r} conflicts with another field.")
            node = child
        if isinstance(node.get(path[-1]), dict):
            raise PayloadError(f"The field {key[:40]!r} conflicts with another field.")
        node[path[-1]] = value
    return tree


def require(params: dict, name: str, *, label: str | None = None) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{label or name} is missing.")
    return value.strip()


def token_field(params: dict, name: str, *, required: bool = True) -> str:
    value = params.get(name, "")
    if not isinstance(value, str):
        raise PayloadError(f"{name} is malformed.")
    value = value.strip()
    if not value:
        if required:
            raise PayloadError(f"{name} is missing.")
        return ""
    if not _TOKEN.match(value):
        raise PayloadError(f"{name} is not a valid token.")
    return value


def member_id_field(params: dict, name: str = "member_id") -> str:
    value = require(params, name)
    if not _MEMBER_ID.match(value):
        raise PayloadError(f"{name} is not a valid portal id.")
    return value


def normalise_domain(value: object) -> str:
    """A host name as we store and compare it: no trailing dot (same host), lower case."""
    return str(value or "").strip().rstrip(".").lower()


def domain_field(params: dict, name: str = "DOMAIN", *, required: bool = True) -> str:
    value = params.get(name, "")
    value = normalise_domain(value) if isinstance(value, str) else ""
    if not value:
        if required:
            raise PayloadError(f"{name} is missing.")
        return ""
    if not _DOMAIN.match(value):
        raise PayloadError(f"{name} is not a valid domain name.")
    return value


def seconds_field(params: dict, name: str, *, default: int = 3600) -> int:
    value = params.get(name, "")
    if value in (None, ""):
        return default
    if not isinstance(value, str) or not is_ascii_number(value.strip()) or len(value.strip()) > 9:
        raise PayloadError(f"{name} must be a number of seconds.")
    return int(value.strip())


MAX_PLACEMENT_OPTIONS_BYTES = 4096
# PLACEMENT_OPTIONS is a flat object in every placement we know; deeper nesting is not Bitrix24.
MAX_PLACEMENT_OPTIONS_DEPTH = 4


def _deeper_than(value, limit: int) -> bool:
    """Is anything in ``value`` more than ``limit`` levels down? A loop, not recursion: 4 KB of
    ``{"a":`` is 650 levels, enough to exhaust Python's stack (a 500) in a recursive walk."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if level > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, level + 1) for child in children)
    return False


def placement_options(params: dict, name: str = "PLACEMENT_OPTIONS") -> dict:
    """``PLACEMENT_OPTIONS`` as a dict: a JSON object of at most 4 KB.

    Missing, empty and the literal ``undefined`` (some placements send it, protocol 6) give {}.
    """
    raw = params.get(name, "")
    if not isinstance(raw, str):
        raise PayloadError(f"{name} is malformed.")
    raw = raw.strip()
    if raw in ("", "undefined", "null"):
        return {}
    if len(raw.encode()) > MAX_PLACEMENT_OPTIONS_BYTES:
        raise PayloadError(f"{name} is too large.")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise PayloadError(f"{name} is not valid JSON.") from None
    if isinstance(value, list) and not value:  # PHP encodes an empty object as []
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{name} must be a JSON object.")
    if _deeper_than(value, MAX_PLACEMENT_OPTIONS_DEPTH):
        raise PayloadError(f"{name} is nested too deeply.")
    return value


def language_code(value: str) -> str:
    """Bitrix24's LANG (``en``, ``ru``, ``de``, ``ua``, ``pl``, ``br``...) as one of ours, else English."""
    code = (value or "").strip().lower().replace("_", "-").split("-")[0]
    code = BITRIX_LANGUAGE_CODES.get(code, code)
    return code if code in LANGUAGES else "en"


def ts_field(params: dict, name: str = "ts") -> str:
    """When Bitrix24's queue sent the event (unix seconds, as a string); "" when absent."""
    value = params.get(name, "")
    if not isinstance(value, str):
        raise PayloadError(f"{name} is malformed.")
    value = value.strip()
    if value and not (is_ascii_number(value) and len(value) <= 20):
        raise PayloadError(f"{name} must be a unix time in seconds.")
    return value
