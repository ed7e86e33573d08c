"""Figures of the event queue with a real Redis and real Celery workers (PostgreSQL needed):
ack time while the portal takes 2 s, events/s through one worker against a sequential baseline,
the shared limiter's observed rate across two workers, and a worker killed mid-batch.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/events.py

It runs the queue tests (tests/test_events_worker.py) and prints the figures they recorded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "test-artifacts" / "hardening-figures.json"
NAMES = ("event_ack_with_a_2s_portal", "one_worker_throughput", "shared_limiter_two_workers", "worker_killed_mid_batch")


def main() -> int:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("set DATABASE_URL=postgres://... (worker processes share the test database)", file=sys.stderr)
        return 2
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_events_worker.py"],
                         cwd=ROOT)
    figures = json.loads(FIGURES.read_text()).get("postgresql", {}) if FIGURES.exists() else {}
    for name in NAMES:
        print(f"{name:32} {json.dumps(figures.get(name, 'not measured'))}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
