"""What the fake Bitrix24 knows: portals, their users and tasks, token chains, the call log, faults.

Plain dataclasses; `FakeBitrix24` guards them all with one lock because tests hit it from many
threads.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CLIENT_ID = "local.fake0000000000.00000001"
BATCH_MAX = 50
DEFAULT_AVATAR = "/bitrix/images/tasks/default_avatar.png"
# Placement codes that placement.list reports; TASK_* and CRM_* are accepted by prefix anyway.
DEFAULT_KNOWN_PLACEMENTS = {
    "TASK_VIEW_TOP_PANEL", "TASK_VIEW_TAB", "TASK_VIEW_SIDEBAR", "TASK_LIST_CONTEXT_MENU",
    "TASK_USER_LIST_TOOLBAR", "TASK_GROUP_LIST_TOOLBAR", "TASK_ROBOT_DESIGNER_TOOLBAR",
    "REST_APP_URI", "PAGE_BACKGROUND_WORKER",
}


class ApiError(Exception):
    """An error answer: `{"error": ..., "error_description": ...}` plus optional extra keys."""

    def __init__(self, status: int, error: str, description: str = "", **extra: Any):
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description, self.extra = status, error, description, extra

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description, **self.extra}


@dataclass
class FakeUser:
    id: int
    name: str = "John"
    last_name: str = "Smith"
    admin: bool = False
    photo: str | None = None
    work_position: str = ""
    email: str = ""


@dataclass
class FakeTask:
    id: int
    title: str = "Task"
    status: str = "2"
    priority: str = "1"
    deadline: str | None = None
    responsible_id: int = 1
    created_by: int = 1
    description: str = ""
    visible_to: set | None = None  # None = everybody may see it
    group_id: str = "0"


@dataclass
class FakeDeal:
    """A CRM deal as crm.deal.get shows it (protocol 16): strings, ``OPPORTUNITY`` a decimal."""

    id: int
    title: str = "Deal"
    stage_id: str = "NEW"
    currency_id: str = "EUR"
    opportunity: str = "0.00"
    close_date: str | None = None
    assigned_by_id: int = 1
    category_id: str = "0"
    visible_to: set | None = None  # None = everybody may see it


@dataclass
class FakePortal:
    domain: str
    member_id: str
    portal_base: str  # "http://127.0.0.1:PORT"
    app_status: str = "L"
    scope: str = "task,placement"
    admin_user_id: int = 1
    installed: bool = True
    application_token: str = field(default_factory=lambda: secrets.token_hex(16))
    users: dict = field(default_factory=dict)  # id -> FakeUser
    tasks: dict = field(default_factory=dict)  # id -> FakeTask
    deals: dict = field(default_factory=dict)  # id -> FakeDeal
    placements: list = field(default_factory=list)  # dicts as placement.get returns them
    events: list = field(default_factory=list)  # dicts as event.get returns them
    # The trial or subscription (protocol 15): what both app.info variants report.
    version: int = 1
    payment_expired: bool = False
    days: int | None = None
    license: str = "en_project"
    # Trial or subscription over (15.4): the OAuth server issues no tokens and REST refuses.
    payment_required: bool = False
    # Keys merged into the portal's app.info answer as they are, for odd answers (DAYS as a
    # string, an unknown STATUS letter, a field missing as None).
    app_info_extra: dict = field(default_factory=dict)
    bucket_level: float = 0.0
    bucket_ts: float = 0.0
    # Seconds this portal's REST waits before answering, on top of the fake's own latency: real
    # portals differ (100-500 ms, sometimes seconds), and one slow portal must not slow the others.
    latency: float = 0.0
    # The offline queue (protocol 13): record dicts as event.offline.list shows them, plus "_key".
    offline_records: list = field(default_factory=list)
    offline_last_id: int = 0

    @property
    def client_endpoint(self) -> str:
        return f"{self.portal_base}/{self.domain}/rest/"

    @property
    def scopes(self) -> set:
        return {s.strip() for s in self.scope.split(",") if s.strip()}


@dataclass
class AccessToken:
    token: str
    member_id: str
    user_id: int
    expires_at: float  # unix time
    expired: bool = False  # forced expiry (expire_access_token or chain rotation)
    revoked: bool = False  # app uninstalled


@dataclass
class RefreshToken:
    token: str
    member_id: str
    user_id: int
    access_token: str  # the access token issued together with it (same chain)
    used: bool = False
    revoked: bool = False


@dataclass
class Call:
    """One logged request; `params` keeps token values because tests assert on them."""

    server: str
    method: str
    http_method: str
    path: str
    params: dict
    domain: str | None
    status: int
    ts: float
    thread: str
    in_batch: bool = False


@dataclass
class Fault:
    key: str
    status: int
    error: str
    description: str
    times: int
    body: str | None
    content_type: str | None


@dataclass
class Hang:
    key: str
    seconds: float
    times: int | None
    after: bool
