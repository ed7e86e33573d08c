"""The measurements. Each drives the real code: the app under gunicorn over HTTP, the real
management command in its own process, or Django's test client in this process (only where a
query count is needed). Each returns table rows.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import urlencode

from bench import seed
from bench.load import LoadResult, raw_request, run_load
from bench.processes import CpuMeter, FakeProcess, GunicornProcess, url_open
from bench.report import REPO, Row

TASK_ID = 31
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
ACTION_TOKEN = re.compile(r'data-action-token="([^"]+)"')


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


# --- a portal installed through the real install page ---------------------------------------------


@dataclass
class WidgetPortal:
    """A portal installed via POST /portals/install/, with viewers holding fresh tokens and a task."""

    fake: FakeProcess
    portal: dict
    viewers: list[dict] = field(default_factory=list)  # the fake's token answers, one per user

    def payload(self, n: int) -> tuple[dict, dict]:
        """(query, body) of the POST Bitrix24 sends when viewer ``n`` opens the task card (protocol 6)."""
        tokens = self.viewers[n % len(self.viewers)]
        query = {"DOMAIN": self.portal["domain"], "PROTOCOL": "1", "LANG": "en", "APP_SID": "b" * 32}
        body = {
            "AUTH_ID": tokens["access_token"], "AUTH_EXPIRES": "3600", "REFRESH_ID": tokens["refresh_token"],
            "SERVER_ENDPOINT": self.fake.oauth_url + "/rest/", "APPLICATION_TOKEN": self.portal["application_token"],
            "APPLICATION_SCOPE": "task,placement", "member_id": self.portal["member_id"], "status": "L",
            "PLACEMENT": "TASK_VIEW_TOP_PANEL",
            "PLACEMENT_OPTIONS": json.dumps({
                "taskId": str(TASK_ID),
                "URI": f"/company/personal/user/{tokens['user_id']}/tasks/task/view/{TASK_ID}/",
            }),
        }
        return query, body

    def raw_open(self, port: int, n: int) -> bytes:
        query, body = self.payload(n)
        return raw_request(port=port, method="POST", path=f"/placements/handler/?{urlencode(query)}", body=body)


def install_widget_portal(*, fake: FakeProcess, port: int, domain: str, viewers: int) -> WidgetPortal:
    from tests.helpers import install_payload

    portal = fake("add_portal", domain=domain)
    tokens = fake("issue_tokens", domain=domain, user_id=1)
    query, body = install_payload(SimpleNamespace(oauth_url=fake.oauth_url), SimpleNamespace(**portal), tokens)
    status, text = url_open(f"http://127.0.0.1:{port}/portals/install/?{urlencode(query)}",
                            data=urlencode(body).encode())
    if status != 200:
        raise RuntimeError(f"install of {domain} answered {status}: {text[:300]}")
    fake("add_task", domain=domain, task_id=TASK_ID, title="Prepare the quarterly report", status="2",
         priority="2", deadline="2031-01-15T18:00:00+03:00", responsible_id=2, created_by=1)
    widget = WidgetPortal(fake=fake, portal=portal)
    for user_id in range(2, 2 + viewers):
        fake("add_user", domain=domain, user_id=user_id, name=f"User{user_id}", last_name="Bench",
             photo="/upload/user.png")
        widget.viewers.append(fake("issue_tokens", domain=domain, user_id=user_id))
    return widget


# --- 1 and 2: widget opens ------------------------------------------------------------------------


def widget_cost(*, widget: WidgetPortal, verbose: bool) -> list[Row]:
    """SQL statements (Django's test client in this process, same database; BEGIN/COMMIT count,
    they are round trips too) and outbound requests (the fake's log) of a viewer's first open and
    of a later one, each with a fresh token."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    domain = widget.portal["domain"]
    widget.fake("add_user", domain=domain, user_id=9999, name="New", last_name="Viewer")
    newcomer = widget.fake("issue_tokens", domain=domain, user_id=9999)
    rows = []
    for label, tokens in (("a viewer's first open", newcomer), ("a later open", newcomer)):
        viewers, widget.viewers = widget.viewers, [tokens]
        query, body = widget.payload(0)
        widget.viewers = viewers
        widget.fake("reset_calls")
        with CaptureQueriesContext(connection) as queries:
            response = client.post(f"/placements/handler/?{urlencode(query)}", body)
        outbound = widget.fake.outbound()
        statements = [q["sql"] for q in queries.captured_queries]
        if verbose:
            for sql in statements:
                print(f"    {label} SQL: {sql[:300]}", file=sys.stderr)
        total_out = sum(outbound.values())
        methods = ", ".join(f"{n} {m}" for m, n in sorted(outbound.items())) or "none"
        ok = response.status_code == 200
        control = sum(1 for sql in statements if sql.split(" ", 1)[0].upper() in TRANSACTION_CONTROL)
        rows += [
            Row(f"widget open, {label}: SQL statements",
                f"{len(statements)} ({control} of them transaction control); HTTP {response.status_code}",
                "<= 4", ok and len(statements) <= 4),
            Row(f"widget open, {label}: outbound HTTP requests", f"{total_out} ({methods})", "1",
                ok and total_out == 1),
        ]
    return rows


def _load_rows(name: str, result: LoadResult, cpu: CpuMeter) -> list[Row]:
    answers = result.status_summary()
    return [
        Row(f"{name}: throughput", f"{result.per_second:.0f} req/s ({result.ok} in {result.seconds:.1f} s)"),
        Row(f"{name}: latency p50 / p99", f"{_ms(result.percentile(50))} / {_ms(result.percentile(99))} ms"),
        Row(f"{name}: answers", answers, "all 2xx", result.ok == result.requests),
        Row(f"{name}: CPU per request", cpu.per_request_ms(result.requests)),
    ]


def throughput(*, server: GunicornProcess, widget: WidgetPortal, total: int, concurrency: int,
               seconds: float, verbose: bool) -> list[Row]:
    """GET /healthz, then widget opens with fresh tokens, at the same concurrency on the same server;
    the fake answers at once and does not rate-limit."""
    port = server.port
    healthz = raw_request(port=port, method="GET", path="/healthz")
    warm = max(20, 4 * len(server.worker_pids()))
    run_load(port=port, make=lambda i: healthz, total=warm, concurrency=concurrency)
    run_load(port=port, make=lambda i: widget.raw_open(port, i), total=warm, concurrency=concurrency)
    with CpuMeter(server=server, fake=widget.fake) as h_cpu:
        h = run_load(port=port, make=lambda i: healthz, total=total, concurrency=concurrency,
                     max_seconds=seconds)
    widget.fake("reset_calls")
    with CpuMeter(server=server, fake=widget.fake) as w_cpu:
        w = run_load(port=port, make=lambda i: widget.raw_open(port, i), total=total,
                     concurrency=concurrency, max_seconds=seconds)
    outbound = widget.fake.outbound()
    if verbose:
        for body in h.bodies + w.bodies:
            print(f"    non-2xx answer: {body[:600]!r}", file=sys.stderr)
    ratio = w.per_second / h.per_second if h.per_second else 0.0
    per_open = sum(outbound.values()) / w.requests if w.requests else 0.0
    return [
        *_load_rows("GET /healthz", h, h_cpu),
        *_load_rows("widget open (fresh token)", w, w_cpu),
        Row("widget / healthz throughput", f"{ratio:.2f}", ">= 0.50", ratio >= 0.5),
        Row("widget open under load: outbound per open",
            f"{per_open:.2f} ({', '.join(f'{n} {m}' for m, n in sorted(outbound.items())) or 'none'})",
            "1", abs(per_open - 1) < 1e-9),
    ]


# --- 3: many actions on one expired token ---------------------------------------------------------


def refresh_storm(*, server: GunicornProcess, widget: WidgetPortal, concurrency: int, postgres: bool,
                  verbose: bool) -> list[Row]:
    """``concurrency`` POST /placements/action/ (reload) at once for one viewer whose stored token
    has expired: how many times the OAuth server is asked for a refresh, and what the users got."""
    from django.utils import timezone

    from portals.models import Credential

    query, body = widget.payload(0)
    status, page = url_open(f"http://127.0.0.1:{server.port}/placements/handler/?{urlencode(query)}",
                            data=urlencode(body).encode())
    token = ACTION_TOKEN.search(page)
    if status != 200 or token is None:
        return [Row("expired token: refreshes", f"n/a (the widget page answered {status} without a token)",
                    "1", False)]
    viewer = widget.viewers[0]
    expired = Credential.objects.filter(portal__member_id=widget.portal["member_id"],
                                        user_id=viewer["user_id"]).update(
        expires_at=timezone.now() - dt.timedelta(hours=1))
    widget.fake("expire_access_token", access_token=viewer["access_token"])
    widget.fake("reset_calls")
    raw = raw_request(port=server.port, method="POST", path="/placements/action/",
                      body={"action": "reload", "token": token.group(1)})
    result = run_load(port=server.port, make=lambda i: raw, total=concurrency, concurrency=concurrency,
                      max_seconds=120, timeout=60)
    outbound = widget.fake.outbound()
    refreshes = outbound.get("oauth/token", 0)
    if verbose:
        for b in result.bodies:
            print(f"    non-2xx answer: {b[:600]!r}", file=sys.stderr)
    label = f"{concurrency} concurrent actions on one expired token"
    return [
        Row(f"{label}: OAuth refreshes", f"{refreshes} (credential rows expired: {expired})",
            "1 (PostgreSQL)", (refreshes == 1) if postgres else None),
        Row(f"{label}: answers", result.status_summary(), "all 200",
            result.ok == concurrency if postgres else None),
        Row(f"{label}: latency p50 / p99", f"{_ms(result.percentile(50))} / {_ms(result.percentile(99))} ms"),
    ]


# --- 4: bind_placement --all ----------------------------------------------------------------------


def bind_all(*, fake: FakeProcess, env: dict, portals: int, latency: float, verbose: bool) -> list[Row]:
    """``manage.py bind_placement --all`` in its own process over ``portals`` portals, each known to
    the fake (with its per-portal rate limit on) and stored with its installer's credential."""
    started = time.perf_counter()
    fake("set_rate_limit", capacity=50, drain_per_second=2.0)  # Bitrix24's own limit (protocol 4.4)
    fake_portals = fake("add_portals", count=portals, domain_format="bind-{i:05d}.example.com")
    seed.portals_from_fake(fake_portals=fake_portals, server_endpoint=fake.oauth_url + "/rest/")
    seeded = time.perf_counter() - started
    fake("set_latency", latency=latency)
    fake("reset_calls")
    command = [sys.executable, "manage.py", "bind_placement", "--all"]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    fake("set_latency", latency=0.0)
    rates = fake("max_rates", window=1.0)
    outbound = fake.outbound()
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else (done.stderr.strip().splitlines() or ["no output"])[-1]
    if verbose or done.returncode:
        print(f"    bind_placement exit {done.returncode}; stderr tail: {done.stderr[-1500:]}", file=sys.stderr)
    label = f"bind_placement --all ({portals} portals, {latency * 1000:.0f} ms/call)"
    return [
        Row(f"seed: {portals} portals + admin credentials", f"{seeded:.1f} s"),
        Row(f"{label}: wall time", f"{wall:.1f} s (exit {done.returncode})", "< 15 s",
            wall < 15 and done.returncode == 0),
        Row(f"{label}: outcome", summary[:90]),
        Row(f"{label}: outbound", ", ".join(f"{n} {m}" for m, n in sorted(outbound.items())) or "none"),
        Row(f"{label}: busiest portal", f"{rates['max_rate']} req in 1 s; avg {rates['max_average_rate']} req/s",
            "<= 2 req/s avg", rates["max_average_rate"] <= 2.0 and rates["portals"] > 0),
    ]


# --- 5: the admin with many rows ------------------------------------------------------------------


def admin_changelists(*, portals: int, invocations: int, repeat: int, verbose: bool) -> list[Row]:
    """The portals and invocations changelists (first page) as a superuser, in this process: median
    time of ``repeat`` loads after one warm-up, and the queries of one load.

    Static file URLs are built with the plain storage here (the manifest one needs collectstatic,
    which would write into the repository); that changes nothing the database sees.
    """
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext
    from django.urls import NoReverseMatch, reverse

    from placements.models import Invocation
    from portals.models import Portal

    rows = []
    t0 = time.perf_counter()
    seed.portals_filler(up_to=portals)
    rows.append(Row(f"seed: portals up to {portals}", f"{time.perf_counter() - t0:.1f} s"))
    missing = invocations - Invocation.objects.count()
    seconds = seed.invocations(total=missing) if missing > 0 else 0.0
    rows.append(Row(f"seed: {missing} invocations (batches of {seed.BATCH})", f"{seconds:.1f} s"))
    client = Client()
    client.force_login(seed.staff_user())
    storages = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    counts = f"{Portal.objects.count()} portals, {Invocation.objects.count()} invocations"
    with override_settings(STORAGES=storages):
        # The admin home first: its first visit adds up the closed days once (placements.dashboard).
        t = time.perf_counter()
        client.get(reverse("admin:index"))
        rows.append(Row("admin home: first visit (adds up the closed days once)",
                        f"{_ms(1000 * (time.perf_counter() - t))} ms"))
        for name, model in (("home", None), ("portals", "portals_portal"), ("invocations", "placements_invocation")):
            label = f"admin {name} changelist ({counts})"
            try:
                url = reverse("admin:index") if model is None else reverse(f"admin:{model}_changelist")
            except NoReverseMatch:
                rows.append(Row(f"{label}", "n/a: not registered in the admin", "< 300 ms, <= 10 queries", False))
                continue
            client.get(url)
            times = []
            for _ in range(repeat):
                with CaptureQueriesContext(connection) as queries:
                    t = time.perf_counter()
                    response = client.get(url)
                    times.append(1000 * (time.perf_counter() - t))
            if verbose:
                for q in queries.captured_queries:
                    print(f"    {name} SQL ({q['time']} s): {q['sql'][:400]}", file=sys.stderr)
            n = len(queries.captured_queries)
            ok = response.status_code == 200
            median = statistics.median(times)
            page = "home (fleet at a glance)" if model is None else f"{name} changelist"
            budget = 20 if model is None else 10  # the home: charts and attention checks of every app
            rows.append(Row(f"admin {page}: time (median of {repeat})",
                            f"{_ms(median)} ms (max {_ms(max(times))}; HTTP {response.status_code})",
                            "< 300 ms", ok and median < 300))
            rows.append(Row(f"admin {page}: SQL queries", str(n), f"<= {budget}", ok and n <= budget))
    return rows


# --- 6: memory ------------------------------------------------------------------------------------


def worker_memory(*, server: GunicornProcess) -> list[Row]:
    """The highest VmHWM of every worker that served (gunicorn's max_requests recycles them)."""
    for pid in server.worker_pids():
        peak = server.peak_memory_kib(pid)
        if peak:
            server.peaks[pid] = max(peak, server.peaks.get(pid, 0))
    if not server.peaks:
        return [Row("peak memory per worker (VmHWM)", "n/a")]
    mib = sorted(p / 1024 for p in server.peaks.values())
    return [Row("peak memory per worker (VmHWM)",
                f"max {mib[-1]:.0f} MiB, median {statistics.median(mib):.0f} MiB ({len(mib)} workers seen)")]
