"""The sandbox's Bitrix24: one fake (OAuth server + portal REST) on loopback, with a demo portal.

It lives in the server's process (threads, ephemeral 127.0.0.1 ports), so it starts with
``./scripts/dev`` and forgets everything when the server restarts; the demo portal is then simply
installed again through the install page. The app itself is pointed at it by overriding the
Bitrix24 settings in this process, so every request goes through the real code paths.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import urlencode

import requests
from django.conf import settings

from fake_bitrix24 import FakeBitrix24, FakePortal
from fake_bitrix24.rest.crm import STAGES
from placements.registry import required_scopes

logger = logging.getLogger(__name__)

CLIENT_ID = "local.sandbox000000000.00000001"
DEMO_DOMAIN = "demo.bitrix24.sandbox"
DEMO_MEMBER_ID = "sandbox0demo0portal0000000000001"
ADMIN_USER_ID, EMPLOYEE_USER_ID = 1, 2
# Seconds each portal REST call takes: a real portal answers in 100-500 ms; "slow" is a bad day.
NORMAL_LATENCY, SLOW_LATENCY = 0.15, 2.5
TASK_PLACEMENT, DEAL_PLACEMENT = "TASK_VIEW_TOP_PANEL", "CRM_DEAL_DETAIL_TAB"


@dataclass
class Sandbox:
    fake: FakeBitrix24
    portal: FakePortal

    # ------------------------------------------------------------------ what the portal shows

    def installed_here(self) -> bool:
        """Installed on this run's fake: the fake knows our widget and the app stored this endpoint."""
        from portals.models import Portal

        if not self.portal.installed or not self.bound_handler(TASK_PLACEMENT):
            return False
        return Portal.objects.served().filter(
            member_id=self.portal.member_id, client_endpoint=self.portal.client_endpoint
        ).exists()

    def bound_handler(self, placement: str) -> str | None:
        """The handler URL the app bound for ``placement`` (what Bitrix24 frames), or None."""
        bindings = list(self.portal.placements)  # a copy: the fake's threads change the list
        return next((b["handler"] for b in bindings if b["placement"] == placement), None)

    def task(self, task_id: int):
        return self.portal.tasks.get(task_id)

    def deal(self, deal_id: int):
        return self.portal.deals.get(deal_id)

    @staticmethod
    def stage_name(stage_id: str) -> str:
        return next((name for _, status, name, *_ in STAGES if status == stage_id), stage_id)

    def user(self, user_id: int):
        return self.portal.users.get(user_id)

    @property
    def slow(self) -> bool:
        return self.portal.latency >= SLOW_LATENCY

    # ------------------------------------------------------------------ what Bitrix24 posts

    def frame_post(self, *, user_id: int, placement: str, options: dict, lang: str) -> tuple[dict, dict]:
        """(query, body) of the POST Bitrix24 makes into an app frame (protocol 0.1, 1.3, 6),
        with a fresh token pair for ``user_id`` as the portal hands one to every frame it renders."""
        tokens = self.fake.issue_tokens(self.portal, user_id=user_id)
        query = {"DOMAIN": self.portal.domain, "PROTOCOL": "0", "LANG": lang, "APP_SID": secrets.token_hex(16)}
        body = {
            "AUTH_ID": tokens["access_token"],
            "AUTH_EXPIRES": str(tokens["expires_in"]),
            "REFRESH_ID": tokens["refresh_token"],
            "SERVER_ENDPOINT": tokens["server_endpoint"],
            "APPLICATION_TOKEN": self.portal.application_token,
            "APPLICATION_SCOPE": self.portal.scope,
            "member_id": self.portal.member_id,
            "status": self.portal.app_status,
            "PLACEMENT": placement,
            "PLACEMENT_OPTIONS": json.dumps(options),
        }
        return query, body

    def install_post(self, *, base_url: str, lang: str) -> tuple[str, dict]:
        """(action URL, body) of the install page POST the administrator's browser makes."""
        settings.B24_APP_BASE_URL = base_url  # where the app's handlers are bound (placement.bind)
        if not self.portal.installed:
            self.fake.reinstall(self.portal)  # installed again: a new application token (2.1)
        query, body = self.frame_post(user_id=ADMIN_USER_ID, placement="DEFAULT", options={}, lang=lang)
        return f"{base_url}/portals/install/?{urlencode(query)}", body

    # ------------------------------------------------------------------ the controls

    def expire_tokens(self) -> None:
        """Every access token of the portal expires now; refresh tokens stay good (protocol 3.4)."""
        self.fake.expire_all(self.portal)

    def set_slow(self, slow: bool) -> None:
        self.portal.latency = SLOW_LATENCY if slow else NORMAL_LATENCY  # this portal's REST only

    @property
    def unpaid(self) -> bool:
        return self.portal.payment_required

    def require_payment(self) -> None:
        """The trial or subscription ends: tokens and REST answer PAYMENT_REQUIRED (15.4)."""
        self.fake.require_payment(self.portal)

    def pay(self) -> list[dict]:
        """The customer pays: Bitrix24 serves the app again and rings ONAPPPAYMENT (15.3),
        whose envelope carries no token at all."""
        self.fake.pay(self.portal)
        data = {"CODE": self.fake.client_id, "VERSION": "1", "STATUS": self.portal.app_status,
                "PAYMENT_EXPIRED": "N", "DAYS": str(self.portal.days or ""), "LANGUAGE_ID": "en"}
        return self._deliver(self._handlers("ONAPPPAYMENT"), event="ONAPPPAYMENT", data=data, token=False)

    def uninstall(self) -> list[dict]:
        """The administrator deletes the app: tokens die, bindings go, and Bitrix24 calls every
        ONAPPUNINSTALL handler (2.1). Returns each handler's answer."""
        handlers = self._handlers("ONAPPUNINSTALL")  # read first: uninstalling drops the bindings
        self.fake.uninstall(self.portal)
        return self._deliver(handlers, event="ONAPPUNINSTALL", data={"LANGUAGE_ID": "en", "CLEAN": "0"})

    def _handlers(self, event: str) -> list[str]:
        return [e["handler"] for e in list(self.portal.events) if e["event"] == event]

    def _deliver(self, handlers: list[str], *, event: str, data: dict, token: bool = True) -> list[dict]:
        """POST the event to each handler as Bitrix24's queue does (2.3): no user auth, and the
        application token unless ``token`` is off. Returns each handler's answer."""
        body = {
            "event": event,
            "ts": str(int(dt.datetime.now().timestamp())),
            **{f"data[{key}]": value for key, value in data.items()},
            "auth[domain]": self.portal.domain,
            "auth[server_endpoint]": self.fake.oauth_url + "/rest/",
            "auth[status]": self.portal.app_status,
            "auth[client_endpoint]": self.portal.client_endpoint,
            "auth[member_id]": self.portal.member_id,
        }
        if token:
            body["auth[application_token]"] = self.portal.application_token
        answers = []
        for handler in handlers:
            try:
                response = requests.post(handler, data=body, timeout=10)
                answers.append({"handler": handler, "status": response.status_code, "body": response.text[:500]})
            except requests.RequestException as exc:
                answers.append({"handler": handler, "status": None, "body": str(exc)[:500]})
        return answers


def _demo_portal(fake: FakeBitrix24) -> FakePortal:
    # The administrator grants the scopes the app asks for at registration, no more.
    portal = fake.add_portal(domain=DEMO_DOMAIN, member_id=DEMO_MEMBER_ID, admin_user_id=ADMIN_USER_ID,
                             scope=",".join(required_scopes()))
    admin = portal.users[ADMIN_USER_ID]
    admin.name, admin.last_name = "Anna", "Admin"
    fake.add_user(portal, EMPLOYEE_USER_ID, "Eli", "Employee", work_position="Sales manager")
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).replace(hour=15, minute=0, second=0, microsecond=0)
    fake.add_task(
        portal, 1, title="Prepare the quarterly sales report", status="2", priority="2",
        deadline=soon.isoformat(), responsible_id=EMPLOYEE_USER_ID, created_by=ADMIN_USER_ID,
        description="Collect the figures from every region and send the report to the board.",
    )
    fake.add_task(
        portal, 2, title="Call the supplier about the late delivery", status="3", priority="1",
        deadline=(soon - dt.timedelta(days=5)).isoformat(), responsible_id=ADMIN_USER_ID,
        created_by=EMPLOYEE_USER_ID, description="The order from last month has not arrived yet.",
    )
    fake.add_deal(
        portal, 1, title="Website redesign for Northwind", stage_id="PREPARATION", currency_id="EUR",
        opportunity="12500.00", close_date=(soon + dt.timedelta(days=25)).isoformat(), assigned_by_id=EMPLOYEE_USER_ID,
    )
    return portal


_sandbox: Sandbox | None = None
_lock = threading.Lock()


def sandbox() -> Sandbox:
    """The process's sandbox, started on first use: the fake runs and the app's Bitrix24
    settings point at it (client id and secret, the one trusted OAuth server)."""
    global _sandbox
    with _lock:
        if _sandbox is None:
            fake = FakeBitrix24(client_id=CLIENT_ID).start()
            portal = _demo_portal(fake)
            portal.latency = NORMAL_LATENCY
            settings.B24_CLIENT_ID = fake.client_id
            settings.B24_CLIENT_SECRET = fake.client_secret
            settings.B24_OAUTH_SERVERS = [fake.oauth_url]
            _sandbox = Sandbox(fake=fake, portal=portal)
            logger.info("sandbox: a fake Bitrix24 runs on %s (OAuth) and %s (portal %s); open / and click "
                        "'Open the demo portal'", fake.oauth_url, fake.portal_base, portal.domain)
        return _sandbox
