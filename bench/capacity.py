"""Capacity against portals as they really answer (issue 11): the fake Bitrix24 answers each
portal with its own latency, and every figure is measured side by side in one run on one server.

- latency mode: widget opens with the portal at ``--portal-latency`` ms and 64 clients, against
  the ceiling ``min(clients / latency, the same server's zero-latency rate at those clients)``;
  on PostgreSQL the connections the server holds meanwhile (pg_stat_activity);
- noisy neighbour: a healthy portal's opens while another portal answers in 3 s and its crowd
  (16, then 200 people) keeps opening it;
- a slow refresh: one viewer's action refreshes with the OAuth server taking 3 s, while other
  viewers open the widget on the same portal.
"""
from __future__ import annotations

import threading
import time
from urllib.parse import urlencode

from bench.load import LoadResult, raw_request, run_load, run_side_by_side
from bench.measures import ACTION_TOKEN, WidgetPortal, _ms, install_widget_portal
from bench.processes import FakeProcess, GunicornProcess, url_open
from bench.report import Row

# A person who is told "Bitrix24 is slow to answer, try again" does not try again within the same
# millisecond: the slow portal's crowd waits this long after such a page (it says Retry-After: 5).
CROWD_PAUSE_AFTER_BUSY = 1.0


def _set_latency(fake: FakeProcess, widget: WidgetPortal, seconds: float) -> None:
    fake("set_latency", domain=widget.portal["domain"], latency=seconds)


def _opens(widget: WidgetPortal, port: int, *, skip_first: bool = False):
    first = 1 if skip_first else 0
    span = max(1, len(widget.viewers) - first)
    return lambda i: widget.raw_open(port, first + i % span)


class PostgresConnections:
    """The most client connections to the benchmark's database at any sample (every 0.1 s);
    autovacuum workers, which pg_stat_activity lists under the database too, are not counted."""

    def __init__(self, database_url: str | None):
        self.url, self.peak, self._stop = database_url, 0, threading.Event()

    def __enter__(self):
        if self.url:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.1):
                count = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchone()[0]
                self.peak = max(self.peak, count)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.url:
            self._thread.join(5)


def latency_mode(*, server: GunicornProcess, widget: WidgetPortal, latency_ms: float, clients: int,
                 seconds: float, postgres_url: str | None, pool: str) -> list[Row]:
    """Zero latency first (the ceiling's second term), then the portal at ``latency_ms``."""
    port, fake = server.port, widget.fake
    opens = _opens(widget, port)
    _set_latency(fake, widget, 0.0)
    run_load(port=port, make=opens, total=4 * clients, concurrency=clients)  # warm every thread
    zero = run_load(port=port, make=opens, total=10**9, concurrency=clients, max_seconds=seconds)
    _set_latency(fake, widget, latency_ms / 1000)
    from django.db import connections

    connections.close_all()  # this process's own connection is not the server's
    with PostgresConnections(postgres_url) as pg:
        slow = run_load(port=port, make=opens, total=10**9, concurrency=clients, max_seconds=seconds)
    _set_latency(fake, widget, 0.0)
    ceiling = min(clients / (latency_ms / 1000), zero.per_second) if latency_ms else zero.per_second
    ratio = slow.per_second / ceiling if ceiling else 0.0
    label = f"widget open, {clients} clients"
    rows = [
        Row(f"{label}, zero latency: throughput",
            f"{zero.per_second:.0f} req/s (p50 / p95 {_ms(zero.percentile(50))} / {_ms(zero.percentile(95))} ms; "
            f"{zero.status_summary()})"),
        Row(f"{label}, portal at {latency_ms:.0f} ms: throughput",
            f"{slow.per_second:.0f} req/s ({slow.ok} in {slow.seconds:.1f} s; {slow.status_summary()})"),
        Row(f"{label}, portal at {latency_ms:.0f} ms: / ceiling min({clients}/{latency_ms / 1000:g} s, zero-latency)",
            f"{ratio:.2f} (ceiling {ceiling:.0f} req/s)", ">= 0.80", ratio >= 0.8 and slow.ok == slow.requests),
        Row(f"{label}, portal at {latency_ms:.0f} ms: latency p50 / p95",
            f"{_ms(slow.percentile(50))} / {_ms(slow.percentile(95))} ms", "p95 < 600 ms",
            slow.percentile(95) < 600),
    ]
    if postgres_url:
        limit = server.workers * int(pool)
        rows.append(Row(f"{label}, portal at {latency_ms:.0f} ms: PostgreSQL connections (pg_stat_activity)",
                        f"max {pg.peak} ({server.workers} workers x pool {pool}; threads {server.threads})",
                        f"<= {limit}", pg.peak <= limit))
    return rows


def noisy_neighbour(*, server: GunicornProcess, slow: WidgetPortal, healthy: WidgetPortal, crowd: int,
                    seconds: float, slow_latency: float = 3.0, healthy_clients: int = 4) -> list[Row]:
    """The healthy portal's opens while the slow one's crowd keeps opening it."""
    port, fake = server.port, slow.fake
    _set_latency(fake, slow, slow_latency)
    _set_latency(fake, healthy, 0.0)
    try:
        crowd_result, healthy_result = run_side_by_side(
            port=port, seconds=seconds, head_start=slow_latency / 2,
            groups=[(_opens(slow, port), crowd), (_opens(healthy, port), healthy_clients)],
            pause_after_error=(CROWD_PAUSE_AFTER_BUSY, 0.0),
        )
    finally:
        _set_latency(fake, slow, 0.0)
        time.sleep(slow_latency + 0.5)  # the crowd's last opens end before the next measure starts
    label = f"healthy portal beside one at {slow_latency:g} s with {crowd} clients"
    return [
        Row(f"{label}: latency p50 / p95",
            f"{_ms(healthy_result.percentile(50))} / {_ms(healthy_result.percentile(95))} ms "
            f"({healthy_result.ok} opens, {healthy_clients} clients)",
            "p95 < 500 ms", healthy_result.percentile(95) < 500),
        Row(f"{label}: answers", healthy_result.status_summary(), "all 200",
            healthy_result.ok == healthy_result.requests),
        Row(f"{label}: the slow portal's answers", _crowd_summary(crowd_result)),
    ]


def _crowd_summary(result: LoadResult) -> str:
    busy = result.statuses.get("503", 0)
    return (f"{result.status_summary()}; served p50 {_ms(result.percentile(50))} ms"
            + (f"; {busy} got the 'slow to answer' page" if busy else ""))


def refresh_during_opens(*, server: GunicornProcess, widget: WidgetPortal, oauth_latency: float, clients: int,
                         seconds: float) -> list[Row]:
    """Viewer 0's stored token has expired: their action refreshes it while the OAuth server takes
    ``oauth_latency``; meanwhile the other viewers open the widget on the same portal."""
    import datetime as dt

    from django.utils import timezone

    from portals.models import Credential

    port, fake = server.port, widget.fake
    query, body = widget.payload(0)
    status, page = url_open(f"http://127.0.0.1:{port}/placements/handler/?{urlencode(query)}",
                            data=urlencode(body).encode())
    token = ACTION_TOKEN.search(page)
    if status != 200 or token is None:
        return [Row("slow refresh: other opens", f"n/a (the widget page answered {status})", "", False)]
    Credential.objects.filter(portal__member_id=widget.portal["member_id"],
                              user_id=widget.viewers[0]["user_id"]).update(
        expires_at=timezone.now() - dt.timedelta(hours=1))
    fake("set_latency", oauth=oauth_latency)
    fake("reset_calls")
    action: dict = {}

    def act():
        t0 = time.perf_counter()
        action["status"], _ = url_open(f"http://127.0.0.1:{port}/placements/action/",
                                       data=urlencode({"action": "reload", "token": token.group(1)}).encode())
        action["seconds"] = time.perf_counter() - t0

    refresher = threading.Thread(target=act)
    refresher.start()
    time.sleep(0.2)  # the refresh is under way
    opens = run_load(port=port, make=_opens(widget, port, skip_first=True), total=10**9, concurrency=clients,
                     max_seconds=min(seconds, oauth_latency - 0.4))
    refresher.join(60)
    fake("set_latency", oauth=0.0)
    # The refresh rotated viewer 0's pair: later measures open with a live one.
    widget.viewers[0] = fake("issue_tokens", domain=widget.portal["domain"], user_id=widget.viewers[0]["user_id"])
    refreshes = fake.outbound().get("oauth/token", 0)
    label = f"during a {oauth_latency:g} s refresh, other viewers' opens ({clients} clients)"
    return [
        Row(f"{label}: latency p50 / p95",
            f"{_ms(opens.percentile(50))} / {_ms(opens.percentile(95))} ms ({opens.status_summary()})",
            "p95 < 500 ms", opens.percentile(95) < 500 and opens.ok == opens.requests),
        Row("the refreshing action", f"HTTP {action.get('status')} in {action.get('seconds', 0):.1f} s; "
            f"{refreshes} refresh", "200, 1 refresh", action.get("status") == 200 and refreshes == 1),
    ]


def install_portals(*, fake: FakeProcess, server: GunicornProcess, viewers: int) -> dict[str, WidgetPortal]:
    return {name: install_widget_portal(fake=fake, port=server.port, domain=f"{name}.example.com",
                                        viewers=viewers)
            for name in ("slow", "healthy")}


__all__ = ["latency_mode", "noisy_neighbour", "refresh_during_opens", "install_portals", "raw_request"]
