"""Fixtures for the widget tests: an installed portal with a viewer and a task, and the POST
Bitrix24 sends when that viewer opens the task card (protocol 0.1: query string + form body)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from tests.helpers import install_portal

TASK_ID = 31
VIEWER_ID = 2


@dataclass
class Widget:
    """An installed portal (``portal``/``fake_portal``), its viewer's fresh tokens and a task."""

    fake: object
    portal: object
    fake_portal: object
    tokens: dict
    task: object

    def payload(self, *, tokens: dict | None = None, **overrides) -> tuple[dict, dict]:
        """(query, body) of the widget POST; an override of None drops the field."""
        tokens = tokens or self.tokens
        query = {"DOMAIN": self.fake_portal.domain, "PROTOCOL": "1", "LANG": "en", "APP_SID": "b" * 32}
        body = {
            "AUTH_ID": tokens["access_token"],
            "AUTH_EXPIRES": "3600",
            "REFRESH_ID": tokens["refresh_token"],
            "SERVER_ENDPOINT": self.fake.oauth_url + "/rest/",
            "APPLICATION_TOKEN": self.fake_portal.application_token,
            "member_id": self.fake_portal.member_id,
            "status": "L",
            "PLACEMENT": "TASK_VIEW_TOP_PANEL",
            "PLACEMENT_OPTIONS": json.dumps(
                {"taskId": str(self.task.id), "URI": f"/company/personal/user/{VIEWER_ID}/tasks/task/view/{self.task.id}/"}
            ),
        }
        for key, value in overrides.items():
            target = query if key in query else body
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        return query, body

    def post(self, client, *, headers: dict | None = None, **overrides):
        query, body = self.payload(**overrides)
        return client.post("/placements/handler/?" + urlencode(query), body, headers=headers)

    def action_token(self, client, **overrides) -> str:
        response = self.post(client, **overrides)
        assert response.status_code == 200, response.content.decode()[:500]
        return action_token_from(response.content.decode())


def action_token_from(html: str) -> str:
    import re

    match = re.search(r'data-action-token="([^"]+)"', html)
    assert match, "the page has no action token"
    return match.group(1)


def widget_setup(fake, client, *, status: str = "2") -> Widget:
    """Install a portal through the real install page; user 2 views task 31 (overdue)."""
    portal, fake_portal = install_portal(client, fake)
    fake.add_user(fake_portal, VIEWER_ID, name="Anna", last_name="Petrova", photo="/upload/anna.png")
    task = fake.add_task(
        fake_portal, TASK_ID, title="Prepare the quarterly report", status=status, priority="2",
        deadline="2025-01-15T18:00:00+03:00", responsible_id=VIEWER_ID, created_by=1,
    )
    tokens = fake.issue_tokens(fake_portal, user_id=VIEWER_ID)
    fake.reset_calls()
    return Widget(fake=fake, portal=portal, fake_portal=fake_portal, tokens=tokens, task=task)


@pytest.fixture
def widget(fake_b24, client, db) -> Widget:
    return widget_setup(fake_b24, client)
