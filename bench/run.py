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

from bench import environment, measures, report  # noqa: E402
from bench.processes import FakeProcess, GunicornProcess, kill_children_on_exit  # noqa: E402

PARTS = ("widget", "refresh", "bind", "admin")


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


FULL = Sizes(requests=4000, seconds=20, concurrency=16, viewers=20, storm=100, bind_portals=1000,
             admin_portals=10_000, invocations=1_000_000, admin_repeat=5)
QUICK = Sizes(requests=30, seconds=10, concurrency=4, viewers=3, storm=10, bind_portals=10,
              admin_portals=20, invocations=1000, admin_repeat=2)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds): proves the harness runs")
    ap.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1,
                    help="gunicorn workers (default 2 x CPUs + 1)")
    ap.add_argument("--concurrency", type=int, help="concurrent requests of the load generator")
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
        if args.parts & {"widget", "refresh"}:
            progress(f"starting gunicorn ({args.workers} workers)")
            server = GunicornProcess(env=env, workers=args.workers, logdir=tmp)
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
            rows += measures.worker_memory(server=server)
            server.stop()
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
