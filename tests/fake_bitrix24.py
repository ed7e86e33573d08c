"""A fake Bitrix24 (OAuth server + portal REST) served over real HTTP on 127.0.0.1.

Why a real server: the app code under test uses `requests` against configured URLs, so a loopback
server exercises timeouts, redirects, status codes and concurrency exactly like production does.
Behaviour follows /work/shared/bitrix24-protocol.md (section numbers are cited inline).
Standard library only; one lock guards all state because tests hit it from many threads.
"""
from __future__ import annotations

import argparse
import json
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

DEFAULT_CLIENT_ID = "local.fake0000000000.00000001"
BATCH_MAX = 50
DEFAULT_AVATAR = "/bitrix/images/tasks/default_avatar.png"
# Placement codes that placement.list reports; TASK_* and CRM_* are accepted by prefix anyway.
DEFAULT_KNOWN_PLACEMENTS = {
    "TASK_VIEW_TOP_PANEL", "TASK_VIEW_TAB", "TASK_VIEW_SIDEBAR", "TASK_LIST_CONTEXT_MENU",
    "TASK_USER_LIST_TOOLBAR", "TASK_GROUP_LIST_TOOLBAR", "TASK_ROBOT_DESIGNER_TOOLBAR",
    "REST_APP_URI", "PAGE_BACKGROUND_WORKER",
}
ADMIN_ONLY = {"placement.bind", "placement.unbind", "placement.get", "event.bind", "event.unbind"}


class ApiError(Exception):
    """An error answer: `{"error": ..., "error_description": ...}` plus optional extra keys."""

    def __init__(self, status: int, error: str, description: str = "", **extra: Any):
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description, self.extra = status, error, description, extra

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description, **self.extra}


# --------------------------------------------------------------------------- data


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
    placements: list = field(default_factory=list)  # dicts as placement.get returns them
    events: list = field(default_factory=list)  # dicts as event.get returns them
    bucket_level: float = 0.0
    bucket_ts: float = 0.0

    @property
    def client_endpoint(self) -> str:
        return f"{self.portal_base}/{self.domain}/rest/"

    @property
    def scopes(self) -> set:
        return {s.strip() for s in self.scope.split(",") if s.strip()}


@dataclass
class _AccessToken:
    token: str
    member_id: str
    user_id: int
    expires_at: float  # unix time
    expired: bool = False  # forced expiry (expire_access_token or chain rotation)
    revoked: bool = False  # app uninstalled


@dataclass
class _RefreshToken:
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
class _Fault:
    key: str
    status: int
    error: str
    description: str
    times: int
    body: str | None
    content_type: str | None


@dataclass
class _Hang:
    key: str
    seconds: float
    times: int | None
    after: bool


# --------------------------------------------------------------------------- params


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


def _ci(params: dict, name: str, default: Any = None) -> Any:
    """Case-insensitive parameter lookup (Bitrix upper-cases keys for placement/event methods)."""
    if name in params:
        return params[name]
    low = name.lower()
    for k, v in params.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return default


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in {"1", "true", "y", "yes"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _time_block(start: float) -> dict:
    finish = time.time()
    return {
        "start": start, "finish": finish, "duration": finish - start, "processing": finish - start,
        "date_start": _iso(start), "date_finish": _iso(finish),
        "operating_reset_at": int(finish) + 600, "operating": 0,
    }


def _php_empty(d: dict) -> dict | list:
    """PHP json_encode turns an empty array into `[]`, so real Bitrix sends [] for empty maps."""
    return d if d else []


# --------------------------------------------------------------------------- HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeBitrix24/1.0"
    timeout = 30  # idle keep-alive connections end on their own
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed
    # ACK (40 ms on Linux) on a kept-alive connection. Real Bitrix24 (nginx) answers at once.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def _go(self):
        self.server.fake._dispatch(self, self.server.kind)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = _go


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # many concurrent workers must not get connection refused

    def handle_error(self, request, client_address):  # client went away mid-answer: not our problem
        pass


@dataclass
class _Resp:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict = field(default_factory=dict)


def _json_resp(status: int, obj: Any, headers: dict | None = None) -> _Resp:
    return _Resp(status, json.dumps(obj).encode(), headers=headers or {})


# --------------------------------------------------------------------------- the fake


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
        self._ports = (oauth_port, portal_port)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._moved: dict[str, str] = {}  # old domain -> member_id
        self._faults: list[_Fault] = []
        self._hangs: list[_Hang] = []
        self._rate: tuple[int, float] | None = (50, 2.0)  # protocol 4.4: X=50, Y=2/s
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.oauth_url = ""
        self.portal_base = ""
        self._methods: dict[str, Callable] = {
            "app.info": self._m_app_info, "profile": self._m_profile, "user.current": self._m_user_current,
            "scope": self._m_scope,
            "placement.bind": self._m_placement_bind, "placement.unbind": self._m_placement_unbind,
            "placement.get": self._m_placement_get, "placement.list": self._m_placement_list,
            "event.bind": self._m_event_bind, "event.unbind": self._m_event_unbind, "event.get": self._m_event_get,
            "tasks.task.get": self._m_task_get,
            "tasks.task.start": lambda p, u, a: self._m_task_action(p, u, a, "start", "3"),
            "tasks.task.complete": lambda p, u, a: self._m_task_action(p, u, a, "complete", "5"),
            "tasks.task.defer": lambda p, u, a: self._m_task_action(p, u, a, "defer", "6"),
        }

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "FakeBitrix24":
        self._stop.clear()
        for kind, port in zip(("oauth", "portal"), self._ports):
            srv = _Server(("127.0.0.1", port), _Handler)
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
        self._access[access] = _AccessToken(access, portal.member_id, user_id, float(expires))
        self._refresh[refresh] = _RefreshToken(refresh, portal.member_id, user_id, access)
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
            self._faults.append(_Fault(self._norm_key(method_or_path), status, error, description, times,
                                       body, content_type))

    def hang(self, method_or_path: str, seconds: float, *, times: int | None = None, after: bool = False) -> None:
        """Delay answers for this method (client timeouts). `after=True` processes first, then stalls,
        so the server-side effect happens although the client gives up."""
        with self._lock:
            self._hangs.append(_Hang(self._norm_key(method_or_path), float(seconds), times, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hangs.clear()

    # ---------------------------------------------------------------- assertions

    def count(self, method: str | None = None, server: str | None = None, domain: str | None = None,
              *, include_batch: bool = False) -> int:
        """Number of logged HTTP requests matching; batch sub-calls only with include_batch."""
        method = self._norm_key(method) if method else None
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

    @staticmethod
    def _norm_key(key: str) -> str:
        key = key.strip().strip("/").lower()
        return key[:-5] if key.endswith(".json") else key

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _dispatch(self, h: BaseHTTPRequestHandler, kind: str) -> None:
        t_arrive = time.monotonic()
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if kind == "oauth" and url.path.startswith("/_fake/"):
            return self._send(h, self._control(url.path[len("/_fake/"):].strip("/"), raw))
        params = self._params(url.query, raw, h.headers.get("Content-Type", ""))
        domain, key = None, url.path
        if kind == "oauth":
            p = url.path.rstrip("/")
            key = {"/oauth/token": "oauth/token"}.get(p, "oauth/app.info" if p in ("/rest/app.info", "/rest/app.info.json") else p)
        else:
            parts = url.path.lstrip("/").split("/", 2)
            if len(parts) == 3 and parts[1] == "rest":
                domain, key = parts[0], self._norm_key(parts[2])
        self._sleep(self.latency + float(self.latency_for.get(kind, 0.0) or 0.0))
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
            resp = _Resp(503, b"<html><body><h1>503 Service Unavailable</h1></body></html>",
                         "text/html; charset=utf-8")
        elif fault:
            if fault.body is not None:
                resp = _Resp(fault.status, fault.body.encode(), fault.content_type or "text/html; charset=utf-8")
            else:
                resp = _json_resp(fault.status, {"error": fault.error, "error_description": fault.description})
        else:
            try:
                if kind == "oauth":
                    resp = self._handle_oauth(key, params, start)
                else:
                    resp = self._handle_portal(domain, key, url, params, start)
            except ApiError as e:
                resp = _json_resp(e.status, e.body())
        with self._lock:
            self.calls.append(Call(kind, key, h.command, url.path, params, domain, resp.status, t_arrive,
                                   threading.current_thread().name))
        if hang and hang.after:
            self._sleep(hang.seconds)
        self._send(h, resp)

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

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, resp: _Resp) -> None:
        try:
            h.send_response(resp.status)
            h.send_header("Content-Type", resp.content_type)
            h.send_header("Content-Length", str(len(resp.body)))
            for k, v in resp.headers.items():
                h.send_header(k, v)
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True

    # ---------------------------------------------------------------- OAuth server

    def _handle_oauth(self, key: str, params: dict, start: float) -> _Resp:
        if key == "oauth/token":
            return self._oauth_token(params)
        if key == "oauth/app.info":
            return self._oauth_app_info(params, start)
        raise ApiError(404, "NOT_FOUND", "Not found")

    def _oauth_token(self, p: dict) -> _Resp:
        with self._lock:
            if p.get("client_id") != self.client_id:
                return _json_resp(200, {"error": "wrong_client", "error_description": "Wrong client"})  # 3.6
            if p.get("client_secret") != self.client_secret:
                raise ApiError(400, "invalid_client", "Invalid client credentials")
            if p.get("grant_type") != "refresh_token":
                raise ApiError(400, "invalid_request", 'Unsupported or missing "grant_type" parameter')
            if not p.get("refresh_token"):
                raise ApiError(400, "invalid_request", 'No "refresh_token" parameter found')
            rt = self._refresh.get(p["refresh_token"])
            portal = self.portal_by_member(rt.member_id) if rt else None
            if rt is None or rt.used or rt.revoked or portal is None or not portal.installed:
                raise ApiError(400, "invalid_grant", "Invalid grant")
            # single use (3.5): the old refresh token and its access token die now
            rt.used = True
            if rt.access_token in self._access:
                self._access[rt.access_token].expired = True
            return _json_resp(200, self._issue(portal, rt.user_id))

    def _oauth_app_info(self, p: dict, start: float) -> _Resp:
        with self._lock:
            tok = self._access.get(str(p.get("auth") or ""))
            if tok is None:
                raise ApiError(401, "invalid_token", "The access token provided is invalid.")
            portal = self.portal_by_member(tok.member_id)
            if tok.revoked or portal is None or not portal.installed:
                raise ApiError(401, "NOT_INSTALLED", "Application not installed")
            if tok.expired or tok.expires_at <= time.time():
                raise ApiError(401, "expired_token", "The access token provided has expired.")
            result = {
                "client_id": self.client_id, "scope": portal.scope, "expires": _iso(tok.expires_at),
                "user_id": tok.user_id,
                "install": {"installed": True, "version": 1, "status": portal.app_status, "scope": portal.scope,
                            "domain": portal.domain, "uri": self.app_uri, "client_endpoint": portal.client_endpoint,
                            "member_id": portal.member_id, "member_type": "portal"},
            }
            return _json_resp(200, {"result": result, "time": _time_block(start)})

    # ---------------------------------------------------------------- portal REST

    def _handle_portal(self, domain: str | None, method: str, url, params: dict, start: float) -> _Resp:
        with self._lock:
            portal = self.portals.get(domain or "")
            if portal is None and domain in self._moved:
                moved = self.portal_by_member(self._moved[domain])
                if moved is not None:
                    tail = url.path.split("/rest/", 1)[1]
                    loc = f"{moved.client_endpoint}{tail}" + (f"?{url.query}" if url.query else "")
                    return _Resp(302, b"", "text/html; charset=utf-8", {"Location": loc})
            if portal is None:
                raise ApiError(404, "NOT_FOUND", "Portal not found")
            self._rate_check(portal)
            token = str(_ci(params, "auth") or "")
            if method == "batch":
                return self._batch(portal, token, params, start)
            fn = self._methods.get(method)
            if fn is None:
                raise ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
            user = self._auth(portal, token)
            self._check_rights(portal, user, method)
            return _json_resp(200, {"result": fn(portal, user, params), "time": _time_block(start)})

    def _rate_check(self, portal: FakePortal) -> None:
        """Leaky bucket per portal (4.4): each request adds 1, drains Y/s, over X -> 503."""
        if self._rate is None:
            return
        cap, drain = self._rate
        now = time.monotonic()
        portal.bucket_level = max(0.0, portal.bucket_level - (now - portal.bucket_ts) * drain)
        portal.bucket_ts = now
        if portal.bucket_level + 1 > cap:
            raise ApiError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        portal.bucket_level += 1

    def _auth(self, portal: FakePortal, token: str) -> FakeUser:
        if not token:
            raise ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data")
        tok = self._access.get(token)
        if tok is None or tok.revoked or tok.member_id != portal.member_id or not portal.installed:
            raise ApiError(401, "invalid_token", "Unable to get application by token")
        if tok.expired or tok.expires_at <= time.time():
            raise ApiError(401, "expired_token", "The access token provided has expired.")
        return portal.users.get(tok.user_id) or FakeUser(tok.user_id)

    @staticmethod
    def _check_rights(portal: FakePortal, user: FakeUser, method: str) -> None:
        needed = "placement" if method.startswith("placement.") else "task" if method.startswith("tasks.") else None
        if needed and needed not in portal.scopes:
            raise ApiError(403, "insufficient_scope",
                           "The request requires higher privileges than provided by the access token")
        if method in ADMIN_ONLY and not user.admin:
            raise ApiError(403, "ACCESS_DENIED", "Access denied!")

    def _batch(self, portal: FakePortal, token: str, params: dict, start: float) -> _Resp:
        """batch (4.6): one token check for all; 200 with per-command results/errors."""
        cmd = _ci(params, "cmd")
        if isinstance(cmd, list):
            cmd = {str(i): v for i, v in enumerate(cmd)}
        if not isinstance(cmd, dict) or not cmd:
            raise ApiError(400, "ERROR_ARGUMENT", "Argument 'cmd' is null or empty", argument="cmd")
        if len(cmd) > BATCH_MAX:
            raise ApiError(400, "ERROR_BATCH_LENGTH_EXCEEDED", f"Max batch length exceeded ({BATCH_MAX})")
        user = self._auth(portal, token)
        halt = _truthy(_ci(params, "halt", 0))
        results, errors, times = {}, {}, {}
        for key, spec in cmd.items():
            t0 = time.time()
            spec = str(spec)
            name, _, qs = spec.partition("?")
            name = self._norm_key(name)
            sub = parse_php_query(qs)
            status = 200
            try:
                if name == "batch":
                    raise ApiError(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
                fn = self._methods.get(name)
                if fn is None:
                    raise ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
                self._check_rights(portal, user, name)
                results[key] = fn(portal, user, sub)
                times[key] = _time_block(t0)
            except ApiError as e:
                status = e.status
                errors[key] = e.body()
            self.calls.append(Call("portal", name, "BATCH", spec, {**sub, "auth": token}, portal.domain, status,
                                   time.monotonic(), threading.current_thread().name, in_batch=True))
            if halt and key in errors:
                break
        result = {"result": _php_empty(results), "result_error": _php_empty(errors), "result_total": [],
                  "result_next": [], "result_time": _php_empty(times)}
        return _json_resp(200, {"result": result, "time": _time_block(start)})

    # ---------------------------------------------------------------- methods

    def _m_app_info(self, portal, user, p):
        return {"ID": 1, "CODE": self.client_id, "VERSION": 1, "STATUS": portal.app_status, "INSTALLED": True,
                "PAYMENT_EXPIRED": "N", "DAYS": None, "LANGUAGE_ID": "en", "LICENSE": "en_project",
                "LICENSE_TYPE": "project", "LICENSE_FAMILY": "project"}

    def _m_profile(self, portal, user, p):
        return {"ID": str(user.id), "ADMIN": user.admin, "NAME": user.name, "LAST_NAME": user.last_name,
                "PERSONAL_GENDER": "", "PERSONAL_PHOTO": user.photo or "", "TIME_ZONE": ""}

    def _m_user_current(self, portal, user, p):
        return {"ID": str(user.id), "ACTIVE": True, "NAME": user.name, "LAST_NAME": user.last_name,
                "EMAIL": user.email, "PERSONAL_PHOTO": user.photo or "", "WORK_POSITION": user.work_position,
                "IS_ONLINE": "Y", "UF_DEPARTMENT": [1]}

    def _m_scope(self, portal, user, p):
        return sorted(portal.scopes)

    # placements (5.x)

    def _placement_known(self, portal: FakePortal, code: str) -> bool:
        if code.startswith("TASK_"):
            return "task" in portal.scopes  # without `task` the code is unknown (5.1)
        return code.startswith("CRM_") or code in self.known_placements

    def _m_placement_bind(self, portal, user, p):
        code, handler = _ci(p, "PLACEMENT"), _ci(p, "HANDLER")
        for name, val in (("PLACEMENT", code), ("HANDLER", handler)):
            if not val or not isinstance(val, str):
                raise ApiError(400, "ERROR_ARGUMENT", f"Argument '{name}' is null or empty", argument=name)
        code = code.upper()
        if code == "DEFAULT":
            raise ApiError(400, "ERROR_ARGUMENT", "Wrong value", argument="PLACEMENT")
        if not self._placement_known(portal, code):
            raise ApiError(400, "ERROR_PLACEMENT_NOT_FOUND", "Placement not found")
        parts = urlsplit(handler)
        if parts.scheme not in ("http", "https"):
            raise ApiError(400, "ERROR_UNSUPPORTED_PROTOCOL", "Unsupported protocol")
        if "." not in (parts.hostname or ""):
            raise ApiError(400, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL")
        title, desc = _ci(p, "TITLE", ""), _ci(p, "DESCRIPTION", "")
        if not isinstance(title, str):
            raise ApiError(400, "ERROR_ARGUMENT", "Argument 'TITLE' must be a string", argument="TITLE")
        if any(x["placement"] == code and x["handler"] == handler for x in portal.placements):
            raise ApiError(400, "ERROR_CORE", "Unable to set placement handler: Handler already binded")
        options, lang_all = _ci(p, "OPTIONS") or [], _ci(p, "LANG_ALL") or []
        portal.placements.append({"placement": code, "userId": 0, "handler": handler, "options": options,
                                  "title": title, "description": desc or "", "langAll": lang_all})
        return True

    def _m_placement_unbind(self, portal, user, p):
        code, handler = _ci(p, "PLACEMENT"), _ci(p, "HANDLER")
        if not code or not isinstance(code, str):
            raise ApiError(400, "ERROR_ARGUMENT", "Argument 'PLACEMENT' is null or empty", argument="PLACEMENT")
        code, count, keep = code.upper(), 0, []
        for x in portal.placements:
            if x["placement"] == code and (not handler or x["handler"] == handler):
                count += 2  # +1 found, +1 deleted (protocol 0.10)
            else:
                keep.append(x)
        portal.placements[:] = keep
        return {"count": count}

    def _m_placement_get(self, portal, user, p):
        return [dict(x) for x in portal.placements]

    def _m_placement_list(self, portal, user, p):
        return sorted(c for c in self.known_placements if self._placement_known(portal, c))

    # events (2.5)

    def _m_event_bind(self, portal, user, p):
        event, handler = _ci(p, "EVENT"), _ci(p, "HANDLER")
        for name, val in (("EVENT", event), ("HANDLER", handler)):
            if not val or not isinstance(val, str):
                raise ApiError(400, "ERROR_ARGUMENT", f"Argument '{name}' is null or empty", argument=name)
        event = event.upper()
        if not event.startswith("ON"):
            raise ApiError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
        if urlsplit(handler).scheme not in ("http", "https"):
            raise ApiError(400, "ERROR_UNSUPPORTED_PROTOCOL", "Unsupported protocol")
        auth_type = str(_ci(p, "AUTH_TYPE", "0") or "0")
        offline = 1 if str(_ci(p, "EVENT_TYPE", "online")).lower() == "offline" else 0
        if any(e["event"] == event and e["handler"] == handler and e["auth_type"] == auth_type
               for e in portal.events):
            raise ApiError(400, "ERROR_CORE", "Handler already binded")
        portal.events.append({"event": event, "handler": handler, "auth_type": auth_type, "offline": offline})
        return True

    def _m_event_unbind(self, portal, user, p):
        event, handler = _ci(p, "EVENT"), _ci(p, "HANDLER")
        for name, val in (("EVENT", event), ("HANDLER", handler)):
            if not val or not isinstance(val, str):
                raise ApiError(400, "ERROR_ARGUMENT", f"Argument '{name}' is null or empty", argument=name)
        auth_type = _ci(p, "AUTH_TYPE")
        before = len(portal.events)
        portal.events[:] = [e for e in portal.events
                            if not (e["event"] == event.upper() and e["handler"] == handler
                                    and (auth_type is None or e["auth_type"] == str(auth_type)))]
        return {"count": before - len(portal.events)}

    def _m_event_get(self, portal, user, p):
        return [dict(e) for e in portal.events]

    # tasks (7)

    @staticmethod
    def _task_id(p: dict) -> int:
        raw = _ci(p, "taskId")
        if raw is None or raw == "":
            raise ApiError(400, "100", "CTaskItem All parameters in the constructor must have real class type "
                                       "(internal error)")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ApiError(400, "0", "wrong task id") from None

    @staticmethod
    def _visible(task: FakeTask, user: FakeUser) -> bool:
        return task.visible_to is None or user.id in task.visible_to

    @staticmethod
    def _actions(task: FakeTask) -> dict:
        s = task.status
        return {"accept": False, "decline": False, "complete": s != "5", "approve": False,
                "disapprove": False, "start": s in ("1", "2", "6"), "pause": s == "3",
                "delegate": True, "remove": True, "edit": True, "defer": s in ("1", "2", "3"),
                "renew": s in ("5", "6"), "create": True, "changeDeadline": True,
                "checklistAddItems": True, "addFavorite": True, "deleteFavorite": False,
                "rate": True, "edit.originator": False, "checklist.reorder": True,
                "elapsedtime.add": True, "dayplan.timer.toggle": False, "edit.plan": True,
                "checklist.add": True, "favorite.add": True, "favorite.delete": False}

    def _user_obj(self, portal: FakePortal, uid: int) -> dict:
        u = portal.users.get(uid) or FakeUser(uid, "", "")
        return {"id": str(uid), "name": f"{u.name} {u.last_name}".strip(),
                "link": f"/company/personal/user/{uid}/", "icon": u.photo or DEFAULT_AVATAR,
                "workPosition": u.work_position}

    def task_json(self, portal: FakePortal, task: FakeTask, select: Any = None) -> dict:
        """camelCase task object as tasks.task.get returns it (section 7); all scalars are strings."""
        full = {
            "id": str(task.id), "parentId": None, "title": task.title, "description": task.description,
            "descriptionInBbcode": "Y", "mark": None, "priority": task.priority, "multitask": "N",
            "notViewed": "N", "replicate": "N", "stageId": "0", "createdBy": str(task.created_by),
            "createdDate": "2025-01-01T10:00:00+00:00", "responsibleId": str(task.responsible_id),
            "changedBy": str(task.created_by), "changedDate": "2025-01-01T10:00:00+00:00",
            "statusChangedBy": str(task.created_by), "closedBy": None, "closedDate": None,
            "activityDate": "2025-01-01T10:00:00+00:00", "dateStart": None, "deadline": task.deadline,
            "startDatePlan": None, "endDatePlan": None, "guid": "{00000000-0000-0000-0000-000000000000}",
            "xmlId": None, "commentsCount": "0", "serviceCommentsCount": "0", "allowChangeDeadline": "Y",
            "allowTimeTracking": "N", "taskControl": "N", "addInReport": "N", "forkedByTemplateId": None,
            "timeEstimate": "0", "timeSpentInLogs": None, "matchWorkTime": "N", "forumTopicId": None,
            "forumId": None, "siteId": "s1", "subordinate": "N", "exchangeModified": None,
            "exchangeId": None, "outlookVersion": "1", "viewedDate": None, "sorting": None,
            "durationFact": None, "isMuted": "N", "isPinned": "N", "isPinnedInGroup": "N",
            "flowId": None, "status": task.status, "subStatus": task.status,
            "groupId": task.group_id, "chatId": None, "favorite": "N", "group": [],
            "creator": self._user_obj(portal, task.created_by),
            "responsible": self._user_obj(portal, task.responsible_id),
            "accomplices": [], "auditors": [], "accomplicesData": [], "auditorsData": [],
            "newCommentsCount": 0, "action": self._actions(task),
        }
        if isinstance(select, dict):
            select = list(select.values())
        if isinstance(select, str):
            select = [select]
        if not select or "*" in select:
            return full

        def camel(name: str) -> str:
            head, *rest = str(name).lower().split("_")
            return head + "".join(w.capitalize() for w in rest)

        wanted = {camel(s) for s in select} | {"id", "action"}
        if "createdBy" in wanted:
            wanted.add("creator")
        if "responsibleId" in wanted:
            wanted.add("responsible")
        return {k: v for k, v in full.items() if k in wanted}

    def _m_task_get(self, portal, user, p):
        tid = self._task_id(p)
        task = portal.tasks.get(tid)
        if task is None or not self._visible(task, user):
            return []  # section 0.8 / 7: missing or forbidden -> empty ARRAY
        return {"task": self.task_json(portal, task, _ci(p, "select"))}

    def _m_task_action(self, portal, user, p, action: str, new_status: str):
        tid = self._task_id(p)
        task = portal.tasks.get(tid)
        if task is None or not self._visible(task, user):
            raise ApiError(400, "ERROR_CORE", "Task not found or not accessible")
        if not self._actions(task)[action]:
            raise ApiError(400, "ERROR_CORE", "Action is not allowed")
        task.status = new_status
        return {"task": self.task_json(portal, task)}

    # ---------------------------------------------------------------- control endpoint (for the CLI)

    def _control(self, command: str, raw: bytes) -> _Resp:
        """POST /_fake/{command} with a JSON body; lets a benchmark drive a fake in another process."""
        try:
            args = json.loads(raw or b"{}")
        except ValueError:
            return _json_resp(400, {"error": "bad json"})

        def portal() -> FakePortal:
            d = args.pop("domain", None)
            m = args.pop("member_id", None)
            p = self.portals.get(d) if d else self.portal_by_member(m) if m else None
            if p is None:
                raise KeyError("portal not found")
            return p

        def summary(p: FakePortal) -> dict:
            return {"domain": p.domain, "member_id": p.member_id, "client_endpoint": p.client_endpoint,
                    "application_token": p.application_token, "installed": p.installed}

        try:
            if command == "info":
                out: Any = {"oauth_url": self.oauth_url, "portal_base": self.portal_base,
                            "client_id": self.client_id, "client_secret": self.client_secret}
            elif command == "add_portal":
                out = summary(self.add_portal(**args))
            elif command == "issue_tokens":
                out = self.issue_tokens(portal(), **args)
            elif command == "add_task":
                p = portal()
                if args.get("visible_to") is not None:
                    args["visible_to"] = set(args["visible_to"])
                self.add_task(p, **args)
                out = {"ok": True}
            elif command == "add_user":
                self.add_user(portal(), **args)
                out = {"ok": True}
            elif command == "set_rate_limit":
                self.set_rate_limit(**args)
                out = {"ok": True}
            elif command == "set_latency":
                if "latency" in args:
                    self.latency = float(args["latency"])
                for k in ("oauth", "portal"):
                    if k in args:
                        self.latency_for[k] = float(args[k])
                out = {"ok": True}
            elif command == "expire_all":
                self.expire_all(portal())
                out = {"ok": True}
            elif command == "fail_next":
                self.fail_next(args.pop("method_or_path"), **args)
                out = {"ok": True}
            elif command == "counts":
                with self._lock:
                    by: dict = {}
                    for c in self.calls:
                        if not c.in_batch and args.get("domain") in (None, c.domain) \
                                and args.get("server") in (None, c.server):
                            by[c.method] = by.get(c.method, 0) + 1
                    statuses: dict = {}
                    for c in self.calls:
                        if not c.in_batch:
                            statuses[str(c.status)] = statuses.get(str(c.status), 0) + 1
                out = {"total": sum(by.values()), "by_method": by, "by_status": statuses}
                if args.get("method"):
                    out["count"] = self.count(args["method"], args.get("server"), args.get("domain"))
            elif command == "max_rate":
                out = {"max_rate": self.max_rate(args["domain"], float(args.get("window", 1.0)))}
            elif command == "add_portals":
                out = self._control_add_portals(**args)
            elif command == "max_rates":
                out = self._control_max_rates(float(args.get("window", 1.0)))
            elif command == "expire_access_token":
                self.expire_access_token(args["access_token"])
                out = {"ok": True}
            elif command == "reset_calls":
                self.reset_calls()
                out = {"ok": True}
            else:
                return _json_resp(404, {"error": f"unknown command {command}"})
        except (KeyError, TypeError, ValueError) as e:
            return _json_resp(400, {"error": str(e)})
        return _json_resp(200, out)


    def _control_add_portals(self, count: int, domain_format: str = "portal-{i}.example.com",
                             user_id: int = 1, expires_in: int = 3600) -> list:
        """Many portals, each with its installer's tokens, in one control call (benchmark seeding)."""
        out = []
        for i in range(int(count)):
            p = self.add_portal(domain=domain_format.format(i=i))
            out.append({"domain": p.domain, "member_id": p.member_id, "client_endpoint": p.client_endpoint,
                        "application_token": p.application_token,
                        "tokens": self.issue_tokens(p, user_id=user_id, expires_in=expires_in)})
        return out

    def _control_max_rates(self, window: float) -> dict:
        """Across every portal that was called: the highest `max_rate`, and each portal's average rate
        (requests over the span between its first and last request, at least `window`)."""
        with self._lock:
            by_domain: dict = {}
            for c in self.calls:
                if c.server == "portal" and not c.in_batch and c.domain:
                    by_domain.setdefault(c.domain, []).append(c.ts)
        best, best_domain, best_avg = 0, None, 0.0
        for domain, ts in by_domain.items():
            rate = self.max_rate(domain, window)
            if rate > best:
                best, best_domain = rate, domain
            best_avg = max(best_avg, len(ts) / max(window, max(ts) - min(ts)))
        return {"max_rate": best, "domain": best_domain, "portals": len(by_domain),
                "max_average_rate": round(best_avg, 3)}


def main(argv: list[str] | None = None) -> None:
    """Serve until killed, printing the URLs as one JSON line so a parent process can read them."""
    ap = argparse.ArgumentParser(description="Fake Bitrix24 OAuth server + portal REST on 127.0.0.1")
    ap.add_argument("--oauth-port", type=int, default=0)
    ap.add_argument("--portal-port", type=int, default=0)
    ap.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    ap.add_argument("--client-secret", default=None)
    ap.add_argument("--no-rate-limit", action="store_true")
    a = ap.parse_args(argv)
    fake = FakeBitrix24(a.client_id, a.client_secret, a.oauth_port, a.portal_port).start()
    if a.no_rate_limit:
        fake.set_rate_limit(None)
    print(json.dumps({"oauth_url": fake.oauth_url, "portal_base": fake.portal_base,
                      "client_id": fake.client_id, "client_secret": fake.client_secret}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    fake.stop()


if __name__ == "__main__":
    main()
