"""`FakeBitrix24`: the OAuth server and every portal's REST, each on its own ephemeral loopback port.

Why a real server: the app code under test uses `requests` against configured URLs, so a loopback
server exercises timeouts, redirects, status codes and concurrency exactly like production does.
Behaviour follows bitrix24-protocol.md (section numbers are cited inline). This module holds the
lifecycle, the setup API tests call, the call log and the dispatch; the OAuth server, the REST
areas and the control API live in their own modules.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from fake_bitrix24 import control, oauth, rest
from fake_bitrix24.rest import offline
from fake_bitrix24.http import Handler, Resp, Server, json_resp, send
from fake_bitrix24.params import norm_key, parse_php_query
from fake_bitrix24.rest.tasks import task_event_data, task_json
from fake_bitrix24.state import (
    DEFAULT_CLIENT_ID, DEFAULT_KNOWN_PLACEMENTS, AccessToken, ApiError, Call, FakeDeal, FakePortal, FakeTask, FakeUser,
    Fault, Hang, RefreshToken,
)


class FakeBitrix24:
    """OAuth server + every portal's REST, each on its own ephemeral loopback port."""

    def __init__(self, client_id: str = DEFAULT_CLIENT_ID, client_secret: str | None = None,
                 oauth_port: int = 0, portal_port: int = 0):
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_hex(20)
        self.app_uri = "https://app.example.com/"
        self.known_placements: set = set(DEFAULT_KNOWN_PLACEMENTS)
        self.latency = 0.0
        self.latency_for: dict = {"oauth": 0.0, "portal": 0.0}
        self.oauth_down = False
        self.portals: dict[str, FakePortal] = {}
        self.calls: list[Call] = []
        # REST methods by name, each `fn(fake, portal, user, params)`; a test may add its own.
        self.methods: dict = dict(rest.METHODS)
        self._ports = (oauth_port, portal_port)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._moved: dict[str, str] = {}  # old domain -> member_id
        self._faults: list[Fault] = []
        self._hangs: list[Hang] = []
        self._rate: tuple[int, float] | None = (50, 2.0)  # protocol 4.4: X=50, Y=2/s
        self._servers: list[Server] = []
        self._threads: list[threading.Thread] = []
        self.oauth_url = ""
        self.portal_base = ""

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "FakeBitrix24":
        self._stop.clear()
        for kind, port in zip(("oauth", "portal"), self._ports):
            srv = Server(("127.0.0.1", port), Handler)
            srv.fake, srv.kind = self, kind  # type: ignore[attr-defined]
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                 name=f"fake-b24-{kind}", daemon=True)
            t.start()
            self._servers.append(srv)
            self._threads.append(t)
        self.oauth_url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.portal_base = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping in latency/hang
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=2)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> "FakeBitrix24":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- setup API

    def add_portal(self, domain: str = "portal-1.example.com", member_id: str | None = None,
                   app_status: str = "L", scope: str = "task,placement", admin_user_id: int = 1) -> FakePortal:
        if not self.portal_base:
            raise RuntimeError("start() the fake before adding portals (client_endpoint needs the port)")
        with self._lock:
            portal = FakePortal(domain=domain, member_id=member_id or secrets.token_hex(16),
                                portal_base=self.portal_base, app_status=app_status, scope=scope,
                                admin_user_id=admin_user_id)
            portal.users[admin_user_id] = FakeUser(admin_user_id, "Admin", "User", admin=True,
                                                   work_position="Administrator")
            self.portals[domain] = portal
            return portal

    def add_user(self, portal: FakePortal, user_id: int, name: str = "John", last_name: str = "Smith",
                 admin: bool = False, photo: str | None = None, work_position: str = "") -> FakeUser:
        with self._lock:
            user = FakeUser(int(user_id), name, last_name, admin=admin, photo=photo, work_position=work_position)
            portal.users[user.id] = user
            return user

    def add_task(self, portal: FakePortal, task_id: int, title: str = "Task", status: str = "2",
                 priority: str = "1", deadline: str | None = None, responsible_id: int = 1,
                 created_by: int = 1, description: str = "", visible_to: set | None = None) -> FakeTask:
        with self._lock:
            task = FakeTask(int(task_id), title, str(status), str(priority), deadline, int(responsible_id),
                            int(created_by), description,
                            None if visible_to is None else {int(u) for u in visible_to})
            portal.tasks[task.id] = task
            return task

    def add_deal(self, portal: FakePortal, deal_id: int, title: str = "Deal", stage_id: str = "NEW",
                 currency_id: str = "EUR", opportunity: str = "0.00", close_date: str | None = None,
                 assigned_by_id: int = 1, category_id: str = "0", visible_to: set | None = None) -> FakeDeal:
        with self._lock:
            deal = FakeDeal(int(deal_id), title, stage_id, currency_id, str(opportunity), close_date,
                            int(assigned_by_id), str(category_id),
                            None if visible_to is None else {int(u) for u in visible_to})
            portal.deals[deal.id] = deal
            return deal

    def task_changed(self, portal: FakePortal, task_id: int, event: str = "ONTASKUPDATE", *,
                     event_data: Any = None) -> dict | None:
        """Someone changed a task in Bitrix24: its offline record is queued (when the app bound
        ``event`` offline, protocol 13) and returned. ``event_data=False`` queues a record with
        no object data, as the docs' examples show (13.3)."""
        if event_data is None:
            event_data = task_event_data(event, task_id)
        with self._lock:
            return offline.queue_record(portal, event, str(task_id), event_data)

    def offline_records(self, portal: FakePortal) -> list[dict]:
        """The portal's offline queue as event.offline.list shows it (with PROCESS_ID and ERROR)."""
        with self._lock:
            return [offline.public(r, listing=True) for r in portal.offline_records]

    def portal_by_member(self, member_id: str) -> FakePortal | None:
        with self._lock:
            return next((p for p in self.portals.values() if p.member_id == member_id), None)

    def issue_tokens(self, portal: FakePortal, user_id: int = 1, expires_in: int = 3600) -> dict:
        """Start a new token chain for (portal, user); shaped like the refresh response (3.3)."""
        with self._lock:
            return self._issue(portal, int(user_id), expires_in)

    def _issue(self, portal: FakePortal, user_id: int, expires_in: int = 3600) -> dict:
        access, refresh = secrets.token_hex(34), secrets.token_hex(34)
        expires = int(time.time()) + int(expires_in)
        self._access[access] = AccessToken(access, portal.member_id, user_id, float(expires))
        self._refresh[refresh] = RefreshToken(refresh, portal.member_id, user_id, access)
        return {
            "access_token": access, "expires": expires, "expires_in": int(expires_in), "scope": portal.scope,
            # docs (3.3): `domain` is the OAuth server's domain, never the portal's
            "domain": urlsplit(self.oauth_url).netloc, "server_endpoint": self.oauth_url + "/rest/",
            "status": portal.app_status, "client_endpoint": portal.client_endpoint,
            "member_id": portal.member_id, "user_id": user_id, "refresh_token": refresh,
        }

    def expire_access_token(self, access_token: str) -> None:
        with self._lock:
            self._access[access_token].expired = True

    def expire_all(self, portal: FakePortal) -> None:
        with self._lock:
            for tok in self._access.values():
                if tok.member_id == portal.member_id:
                    tok.expired = True

    def uninstall(self, portal: FakePortal) -> None:
        """App removed (2.1): tokens die, placement and event handlers are deleted."""
        with self._lock:
            portal.installed = False
            portal.placements.clear()
            portal.events.clear()
            for tok in list(self._access.values()) + list(self._refresh.values()):
                if tok.member_id == portal.member_id:
                    tok.revoked = True

    def reinstall(self, portal: FakePortal) -> None:
        """Installed again with a fresh application_token; old tokens stay dead."""
        with self._lock:
            portal.installed = True
            portal.application_token = secrets.token_hex(16)

    def new_application_token(self, portal: FakePortal) -> str:
        """Rotate the application_token, as ONAPPUPDATE does (2.2)."""
        with self._lock:
            portal.application_token = secrets.token_hex(16)
            return portal.application_token

    def set_subscription(self, portal: FakePortal, *, status: str | None = None, days: int | None = None,
                         payment_expired: bool | None = None, license: str | None = None) -> None:
        """The trial or subscription as both app.info variants report it (protocol 15.2)."""
        with self._lock:
            if status is not None:
                portal.app_status = status
            portal.days = days
            if payment_expired is not None:
                portal.payment_expired = payment_expired
            if license is not None:
                portal.license = license

    def require_payment(self, portal: FakePortal, required: bool = True) -> None:
        """Trial or subscription over (15.4): refreshes and REST calls answer PAYMENT_REQUIRED
        until ``required=False`` (the customer paid)."""
        with self._lock:
            portal.payment_required = required
            if required:
                portal.payment_expired = True

    def pay(self, portal: FakePortal, *, status: str = "P", days: int | None = 30) -> None:
        """The customer paid: Bitrix24 serves the app again with the new status (15.3)."""
        with self._lock:
            portal.payment_required = False
            portal.payment_expired = False
            portal.app_status, portal.days = status, days

    def update_app(self, portal: FakePortal, *, drop_placements: bool = False) -> str:
        """A new app version is installed (2.2): its event handlers vanish (and its placements
        too with ``drop_placements``: the docs do not say), the version goes up and a new
        application_token is issued, which is returned."""
        with self._lock:
            portal.events.clear()
            if drop_placements:
                portal.placements.clear()
            portal.version += 1
            portal.application_token = secrets.token_hex(16)
            return portal.application_token

    def move_portal(self, portal: FakePortal, new_domain: str) -> None:
        """Domain change (4.3): the old path answers 302; member_id stays."""
        with self._lock:
            old = portal.domain
            self.portals.pop(old, None)
            self._moved[old] = portal.member_id
            self._moved.pop(new_domain, None)
            portal.domain = new_domain
            self.portals[new_domain] = portal

    def set_rate_limit(self, capacity: int | None = 50, drain_per_second: float = 2.0) -> None:
        with self._lock:
            self._rate = None if capacity is None else (int(capacity), float(drain_per_second))
            for p in self.portals.values():
                p.bucket_level, p.bucket_ts = 0.0, 0.0

    def fail_next(self, method_or_path: str, *, status: int = 503, error: str = "QUERY_LIMIT_EXCEEDED",
                  description: str = "Too many requests", times: int = 1, body: str | None = None,
                  content_type: str | None = None) -> None:
        """Answer the next `times` requests for this method ("tasks.task.get", "batch",
        "oauth/token", "oauth/app.info") with an error, or with raw `body`."""
        with self._lock:
            self._faults.append(Fault(norm_key(method_or_path), status, error, description, times,
                                      body, content_type))

    def hang(self, method_or_path: str, seconds: float, *, times: int | None = None, after: bool = False) -> None:
        """Delay answers for this method (client timeouts). `after=True` processes first, then stalls,
        so the server-side effect happens although the client gives up."""
        with self._lock:
            self._hangs.append(Hang(norm_key(method_or_path), float(seconds), times, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hangs.clear()

    def task_json(self, portal: FakePortal, task: FakeTask, select=None) -> dict:
        """The task as tasks.task.get returns it, for tests that compare with what the app shows."""
        return task_json(portal, task, select)

    # ---------------------------------------------------------------- assertions

    def count(self, method: str | None = None, server: str | None = None, domain: str | None = None,
              *, include_batch: bool = False) -> int:
        """Number of logged HTTP requests matching; batch sub-calls only with include_batch."""
        method = norm_key(method) if method else None
        with self._lock:
            return sum(1 for c in self.calls
                       if (method is None or c.method == method) and (server is None or c.server == server)
                       and (domain is None or c.domain == domain) and (include_batch or not c.in_batch))

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def max_rate(self, domain: str, window: float = 1.0) -> int:
        """Most HTTP requests one portal saw within any sliding `window` seconds."""
        with self._lock:
            ts = sorted(c.ts for c in self.calls
                        if c.server == "portal" and c.domain == domain and not c.in_batch)
        best, lo = 0, 0
        for hi, t in enumerate(ts):
            while t - ts[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # ---------------------------------------------------------------- dispatch

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _dispatch(self, h: BaseHTTPRequestHandler, kind: str) -> None:
        t_arrive = time.monotonic()
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if kind == "oauth" and url.path.startswith("/_fake/"):
            return send(h, control.handle(self, url.path[len("/_fake/"):].strip("/"), raw))
        params = self._params(url.query, raw, h.headers.get("Content-Type", ""))
        domain, key = None, url.path
        if kind == "oauth":
            p = url.path.rstrip("/")
            key = {"/oauth/token": "oauth/token"}.get(p, "oauth/app.info" if p in ("/rest/app.info", "/rest/app.info.json") else p)
        else:
            parts = url.path.lstrip("/").split("/", 2)
            if len(parts) == 3 and parts[1] == "rest":
                domain, key = parts[0], norm_key(parts[2])
        portal = self.portals.get(domain) if domain else None
        self._sleep(self.latency + float(self.latency_for.get(kind, 0.0) or 0.0)
                    + (portal.latency if portal is not None else 0.0))
        with self._lock:
            fault = next((f for f in self._faults if f.key == key and f.times > 0), None)
            if fault:
                fault.times -= 1
            hang = next((x for x in self._hangs if x.key == key and (x.times is None or x.times > 0)), None)
            if hang and hang.times is not None:
                hang.times -= 1
        if hang and not hang.after:
            self._sleep(hang.seconds)
        start = time.time()
        if kind == "oauth" and self.oauth_down:
            resp = Resp(503, b"<html><body><h1>503 Service Unavailable</h1></body></html>",
                        "text/html; charset=utf-8")
        elif fault:
            if fault.body is not None:
                resp = Resp(fault.status, fault.body.encode(), fault.content_type or "text/html; charset=utf-8")
            else:
                resp = json_resp(fault.status, {"error": fault.error, "error_description": fault.description})
        else:
            try:
                if kind == "oauth":
                    resp = oauth.handle(self, key, params, start)
                else:
                    resp = rest.handle(self, domain, key, url, params, start)
            except ApiError as e:
                resp = json_resp(e.status, e.body())
        with self._lock:
            self.calls.append(Call(kind, key, h.command, url.path, params, domain, resp.status, t_arrive,
                                   threading.current_thread().name))
        if hang and hang.after:
            self._sleep(hang.seconds)
        send(h, resp)

    @staticmethod
    def _params(query: str, raw: bytes, content_type: str) -> dict:
        params = parse_php_query(query)
        if raw:
            text = raw.decode("utf-8", "replace")
            if "json" in content_type or text.lstrip().startswith("{"):
                try:
                    body = json.loads(text)
                except ValueError:
                    body = {}
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(parse_php_query(text))
        return params
