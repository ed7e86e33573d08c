"""The benchmark (bench/run.py) at tiny sizes, so that it cannot rot unnoticed.

No timing is asserted: performance targets live in the benchmark's table, not in tests. This only
proves that every part still runs end to end (gunicorn, the fake Bitrix24 in its own process, the
management command, the admin) and that the table is printed.
"""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_benchmark_prints_the_table():
    env = dict(os.environ)
    for name in ("DJANGO_SETTINGS_MODULE", "DEBUG", "B24_ALLOW_PRIVATE_ENDPOINTS"):
        env.pop(name, None)  # the benchmark sets its own production-like environment
    # On PostgreSQL a database of its own, dropped afterwards; the suite's `test` is never touched.
    args = ["--quick", "--db-name", f"bench_smoke_{os.getpid()}", "--drop-db"]
    done = subprocess.run(
        [sys.executable, "bench/run.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for metric in (
        "widget open, a viewer's first open: SQL statements",
        "widget open, a later open: outbound HTTP requests",
        "widget open (fresh token): throughput",
        "GET /healthz: throughput",
        "widget / healthz throughput",
        "concurrent actions on one expired token: OAuth refreshes",
        "bind_placement --all (10 portals, 50 ms/call): wall time",
        "busiest portal",
        "admin portals changelist: time",
        "admin invocations changelist: SQL queries",
        "peak memory per worker",
        "portal at 200 ms: / ceiling",
        "healthy portal beside one at 3 s with 4 clients: latency p50 / p95",
        "other viewers' opens",
        "the refreshing action",
    ):
        assert metric in out, f"{metric!r} missing from the table:\n{out}"
    assert "machine" in out and "python bench/run.py --quick" in out, out
    # every part ran: the widget answered, the command bound every portal, the admin pages loaded
    assert "30x200" in out.split("widget open (fresh token): answers", 1)[1].splitlines()[0], out
    assert "10 bound" in out, out + done.stderr[-3000:]
    assert "HTTP 200" in out.split("admin invocations changelist: time", 1)[1].splitlines()[0], out
