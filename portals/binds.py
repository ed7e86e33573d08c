"""What the app binds on a portal at install: a registry that other apps fill in.

``portals`` names no placement and no business event. An app that needs something bound on
every portal (placements: its widgets; events: its business events) registers a provider in
its ``AppConfig.ready()``; the install collects every provider's commands into one ``batch``,
so its outcome (bound, already bound, failed) is shown on the install page, and
``sync_portals`` compares the same commands with ``placement.get``/``event.get`` to bind what
an update dropped.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import urljoin

from django.conf import settings
from django.urls import reverse

from portals.bitrix import errors

BindCommands = dict[str, tuple[str, dict]]
BindProvider = Callable[[], BindCommands]

_PROVIDERS: dict[str, BindProvider] = {}


def bind_provider_register(*, name: str, provider: BindProvider) -> None:
    """``provider()`` returns batch commands keyed by a name unique across providers (the key
    is what the install page reports). Registering a name again replaces it (``ready()`` may run
    twice in tests)."""
    _PROVIDERS[name] = provider


def bind_provider_unregister(*, name: str) -> None:
    _PROVIDERS.pop(name, None)


def bind_commands() -> BindCommands:
    """Every registered provider's commands, in registration order."""
    commands: BindCommands = {}
    for provider in _PROVIDERS.values():
        commands.update(provider())
    return commands


def _param(params: dict, name: str):
    """Bitrix24 reads bind parameters in any case (``PLACEMENT`` or ``placement``)."""
    return next((value for key, value in params.items() if str(key).lower() == name), None)


def _same(value, expected) -> bool:
    return isinstance(value, str) and isinstance(expected, str) and value.strip().upper() == expected.strip().upper()


def _same_url(value, expected) -> bool:
    return isinstance(value, str) and isinstance(expected, str) and value.strip().rstrip("/") == expected.strip().rstrip("/")


def bind_command_present(command: tuple[str, dict], *, placements: list[dict], events: list[dict]) -> bool:
    """Is what a bind command asks for already there, in ``placement.get``'s or ``event.get``'s
    rows? Only a row with the same handler URL counts: another handler on the same placement or
    event is someone else's (protocol 5.3: a handler is identified by placement and URL)."""
    method, params = command
    if method == "placement.bind":
        code, handler = _param(params, "placement"), _param(params, "handler")
        return any(
            _same(row.get("placement"), code) and _same_url(row.get("handler"), handler) for row in placements
        )
    if method == "event.bind":
        name, handler = _param(params, "event"), _param(params, "handler")
        offline = str(_param(params, "event_type") or "online").lower() == "offline"
        for row in events:
            row_offline = str(row.get("offline", "0")).strip().lower() in ("1", "true", "y")
            if not _same(row.get("event"), name) or row_offline != offline:
                continue
            if offline or _same_url(row.get("handler"), handler):  # offline binds have no handler (13.2)
                return True
        return False
    return False  # nothing to compare with: bind it ("already bound" counts as success)


# What the app offers a portal's users, for its own page: (title, where to find it), both for a
# person to read. An app that adds something users see registers a provider, as for binds.
Feature = tuple[str, str]
FeatureProvider = Callable[[], list[Feature]]
_FEATURES: dict[str, FeatureProvider] = {}


def feature_provider_register(*, name: str, provider: FeatureProvider) -> None:
    _FEATURES[name] = provider


def features() -> list[Feature]:
    """Every registered provider's features, in registration order."""
    return [feature for provider in _FEATURES.values() for feature in provider()]


def public_url(viewname: str) -> str:
    """Our public URL for a view, given to Bitrix24: ``reverse()`` on B24_APP_BASE_URL, never a
    host taken from a request (a posted Host would let anyone choose where Bitrix24 posts)."""
    base = (settings.B24_APP_BASE_URL or "").rstrip("/")
    if not base:
        raise errors.NotConfigured("NOT_CONFIGURED", "B24_APP_BASE_URL must be set")
    return urljoin(base + "/", reverse(viewname).lstrip("/"))
