"""Fixtures for the operator tests (commands and admin): installed portals and a command runner."""
from __future__ import annotations

from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.helpers import install_portal


@dataclass
class CommandRun:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]


def run_command(name: str, *args: str) -> CommandRun:
    """call_command with its exit status: 0, or the CommandError's returncode (as manage.py exits)."""
    out, err = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return CommandRun(exc.returncode, out.getvalue(), err.getvalue() + str(exc))
    return CommandRun(0, out.getvalue(), err.getvalue())


@pytest.fixture
def install_portals(client, fake_b24):
    """Factory: install ``count`` portals through the real install page; [(Portal, FakePortal)]."""

    def install(count: int = 3, prefix: str = "portal"):
        return [
            install_portal(client, fake_b24, domain=f"{prefix}-{index}.example.com")
            for index in range(1, count + 1)
        ]

    return install


@pytest.fixture
def staff_client(client, django_user_model):
    """A logged-in staff superuser (sees every admin page and action)."""
    user = django_user_model.objects.create_superuser("operator", "operator@example.com", "pw-operator-1")
    client.force_login(user)
    return client
