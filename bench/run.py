"""The performance benchmark: the app under gunicorn against the fake Bitrix24, one table of figures.

    .venv/bin/python bench/run.py            # full size, SQLite in a temporary directory
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --quick    # tiny sizes: checks that everything still runs

It always exits 0 when it could measure (a missed target is a FAIL in the table, not an error).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import from the repository, not from bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import capacity, environment, measures, report  # noqa: E402
from bench.processes import FakeProcess, GunicornProcess, kill_children_on_exit  # noqa: E402

PARTS = ("widget", "refresh", "capacity", "bind", "admin")


@dataclass(frozen=True)
class Sizes:
    requests: int  # per throughput run (healthz, then widget)
    seconds: float  # time limit per throughput run
    concurrency: int
    viewers: int
    storm: int
    bind_portals: int
    admin_portals: int
    invocations: int
    admin_repeat: int
    latency_clients: int  # capacity: the latency mode's clients
    capacity_seconds: float  # capacity: each load of the latency mode and the noisy neighbour
    crowds: tuple[int, ...]  # capacity: clients of the slow portal beside the healthy one


FULL = Sizes(requests=4000, seconds=20, concurrency=16, viewers=20, storm=100, bind_portals=1000,
             admin_portals=10_000, invocations=1_000_000, admin_repeat=5,
             latency_clients=64, capacity_seconds=15, crowds=(16, 200))
QUICK = Sizes(requests=30, seconds=10, concurrency=4, viewers=3, storm=10, bind_portals=10,
              admin_portals=20, invocations=1000, admin_repeat=2,
              latency_clients=8, capacity_seconds=3, crowds=(4,))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds): proves the harness runs")
    ap.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1,
                    help="gunicorn workers (default 2 x CPUs + 1)")
    ap.add_argument("--concurrency", type=int, help="concurrent requests of the load generator")
    ap.add_argument("--threads", type=int, help="GUNICORN_THREADS of the server (default: gunicorn.conf.py's)")
    ap.add_argument("--portal-latency", type=float, default=200.0,
                    help="capacity: the portal's latency in ms for the latency mode (default 200)")
    ap.add_argument("--baseline-sync", action="store_true",
                    help="capacity: also measure a sync-worker server (the serving model before threads) "
                         "in the same run, as the baseline")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--settings", default="bitrix_widget.settings",
                    help="settings module (try a settings change without editing settings.py)")
    ap.add_argument("--db-name", default="bench", help="PostgreSQL only: the database to (re)create")
    ap.add_argument("--drop-db", action="store_true", help="PostgreSQL only: drop the database afterwards")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (logs, SQLite file)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the SQL and unexpected answers")
    args = ap.parse_args(argv)
    args.parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = args.parts - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    return args


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(args) -> tuple[list[report.Row], list[tuple[str, str]]]:
    sizes = QUICK if args.quick else FULL
    concurrency = args.concurrency or sizes.concurrency
    tmp = tempfile.mkdtemp(prefix="bench-")
    started: list = []
    rows: list[report.Row] = []
    database, server_label = "?", "not started"
    try:
        fake = FakeProcess(tmp)
        started.append(fake)
        database_url, database = environment.prepare_database(tmpdir=tmp, db_name=args.db_name)
        env = environment.app_environment(database_url=database_url, fake=fake.info,
                                          settings_module=args.settings)
        environment.django_setup(env)
        from django.core.management import call_command

        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        rows.append(report.Row("setup: migrate", f"{time.perf_counter() - t0:.1f} s"))

        if "bind" in args.parts:
            progress(f"bind_placement --all over {sizes.bind_portals} portals")
            rows += measures.bind_all(fake=fake, env=env, portals=sizes.bind_portals, latency=0.05,
                                      verbose=args.verbose)
        # Our own per-portal budget (portals/ratelimit.py) is off for the served app: the fake does
        # not rate-limit here either, and one benchmark portal takes hundreds of opens a second.
        server_env = {**env, "B24_RATE_PER_SECOND": "0"}
        if args.parts & {"widget", "refresh", "capacity"}:
            progress(f"starting gunicorn ({args.workers} workers)")
            server = GunicornProcess(env=server_env, workers=args.workers, logdir=tmp, threads=args.threads)
            started.append(server)
            server_label = server.describe
            fake("set_rate_limit", capacity=None)  # the fake answers at once: we measure our server
            widget = measures.install_widget_portal(fake=fake, port=server.port, domain="widget.example.com",
                                                    viewers=sizes.viewers)
            if "widget" in args.parts:
                progress("widget open: queries and outbound requests")
                rows += measures.widget_cost(widget=widget, verbose=args.verbose)
                progress(f"throughput: /healthz then widget opens ({sizes.requests} each, {concurrency} at once)")
                rows += measures.throughput(server=server, widget=widget, total=sizes.requests,
                                            concurrency=concurrency, seconds=sizes.seconds, verbose=args.verbose)
            if "refresh" in args.parts:
                progress(f"{sizes.storm} concurrent actions on one expired token")
                rows += measures.refresh_storm(server=server, widget=widget, concurrency=sizes.storm,
                                               postgres=environment.is_postgres(database_url),
                                               verbose=args.verbose)
            if "capacity" in args.parts:
                rows += run_capacity(args, sizes, server=server, widget=widget, fake=fake,
                                     database_url=database_url, label="")
            rows += measures.worker_memory(server=server)
            server.stop()
            if "capacity" in args.parts and args.baseline_sync:
                progress("baseline: the same capacity figures with sync workers")
                baseline = GunicornProcess(env=server_env, workers=args.workers, logdir=tmp, worker_class="sync")
                started.append(baseline)
                rows += run_capacity(args, sizes, server=baseline, widget=widget, fake=fake,
                                     database_url=database_url, label="BASELINE sync workers: ", baseline=True)
                baseline.stop()
        if "admin" in args.parts:
            progress(f"admin: seeding {sizes.admin_portals} portals and {sizes.invocations} invocations")
            rows += measures.admin_changelists(portals=sizes.admin_portals, invocations=sizes.invocations,
                                               repeat=sizes.admin_repeat, verbose=args.verbose)
    finally:
        kill_children_on_exit(started)
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if args.drop_db:
            environment.drop_database(db_name=args.db_name)
        if args.keep_tmp:
            progress(f"logs and files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows, report.machine(database=database, workers=server_label)


def run_capacity(args, sizes: Sizes, *, server, widget, fake, database_url: str, label: str,
                 baseline: bool = False) -> list[report.Row]:
    """The capacity figures (bench/capacity.py) on ``server``; a baseline's rows keep no targets."""
    rows: list[report.Row] = []
    postgres_url = database_url if environment.is_postgres(database_url) else None
    pool = os.environ.get("DB_POOL_MAX_SIZE", "4")
    progress(f"{label}latency mode: {sizes.latency_clients} clients, portal at {args.portal_latency:g} ms")
    rows += capacity.latency_mode(server=server, widget=widget, latency_ms=args.portal_latency,
                                  clients=sizes.latency_clients, seconds=sizes.capacity_seconds,
                                  postgres_url=postgres_url, pool=pool)
    portals = getattr(fake, "capacity_portals", None)
    if portals is None:
        portals = fake.capacity_portals = capacity.install_portals(fake=fake, server=server, viewers=sizes.viewers)
    for crowd in sizes.crowds:
        progress(f"{label}noisy neighbour: one portal at 3 s with {crowd} clients, a healthy one beside it")
        rows += capacity.noisy_neighbour(server=server, slow=portals["slow"], healthy=portals["healthy"],
                                         crowd=crowd, seconds=sizes.capacity_seconds)
    progress(f"{label}a 3 s refresh while other viewers open the widget")
    rows += capacity.refresh_during_opens(server=server, widget=portals["healthy"], oauth_latency=3.0,
                                          clients=16 if not args.quick else 4, seconds=sizes.capacity_seconds)
    for row in rows:
        row.metric = label + row.metric
        if baseline:
            row.target, row.ok = "-", None
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    on_postgres = environment.is_postgres(os.environ.get("DATABASE_URL"))
    started = time.perf_counter()
    rows, machine = run(args)
    db_env = f"DATABASE_URL={os.environ['DATABASE_URL']} " if on_postgres else ""
    command = f"{db_env}python bench/run.py {shlex.join(argv)}".rstrip()
    print()
    for key, value in [*machine, ("command", command),
                       ("runtime", f"{time.perf_counter() - started:.0f} s")]:
        print(f"{key:<9} {value}")
    print()
    print(report.table(rows))
    failed = [r.metric for r in rows if r.ok is False]
    print()
    print(f"FAIL: {len(failed)} target(s) missed: {'; '.join(failed)}" if failed else "all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
