"""What the app binds on a portal at install: a registry that other apps fill in.

``portals`` names no placement and no business event. An app that needs something bound on
every portal (placements: its widgets; events: its business events) registers a provider in
its ``AppConfig.ready()``; the install collects every provider's commands into one ``batch``,
so its outcome (bound, already bound, failed) is shown on the install page.
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


def public_url(viewname: str) -> str:
    """Our public URL for a view, given to Bitrix24: ``reverse()`` on B24_APP_BASE_URL, never a
    host taken from a request (a posted Host would let anyone choose where Bitrix24 posts)."""
    base = (settings.B24_APP_BASE_URL or "").rstrip("/")
    if not base:
        raise errors.NotConfigured("NOT_CONFIGURED", "B24_APP_BASE_URL must be set")
    return urljoin(base + "/", reverse(viewname).lstrip("/"))
