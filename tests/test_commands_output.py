"""The commands' output as an operator sees it, from real ``manage.py`` processes: on a terminal
(a pty: colour and a progress bar) and in a pipe (neither). Only failures are red, the progress
bar counts what the summary counts, a recap says what to do about each failure, the last line
is the summary (no "CommandError:"), exit statuses are unchanged, and ``-v 0`` prints the recap
alone."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLOUR = re.compile(r"\x1b\[(?!0?m)[0-9;]+m")  # a colour being set (not the reset after a line)
SEED = """
import json, sys
import django
django.setup()
from bench import seed
from portals.models import Portal
data = json.load(sys.stdin)
seed.portals_from_fake(fake_portals=data["portals"], server_endpoint=data["server"])
Portal.objects.filter(domain=data["needs_reauth"]).update(status="needs_reauth", status_detail="refused")
"""


@pytest.fixture
def fleet_db(fake_b24, tmp_path):
    """A SQLite file that manage.py processes share: five portals known to the fake, one of them
    needing re-authorisation. Returns the environment for those processes."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fleet.sqlite3'}",
        "B24_OAUTH_SERVERS": fake_b24.oauth_url,
        "B24_CLIENT_ID": fake_b24.client_id,
        "B24_CLIENT_SECRET": fake_b24.client_secret,
        "B24_ALLOW_PRIVATE_ENDPOINTS": "true",
        "B24_APP_BASE_URL": "https://app.example.com",
    }
    env.pop("PYTHONUNBUFFERED", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    portals = []
    for index in range(1, 6):
        portal = fake_b24.add_portal(domain=f"shop-{index}.example.com")
        portals.append({"domain": portal.domain, "member_id": portal.member_id,
                        "client_endpoint": portal.client_endpoint, "application_token": portal.application_token,
                        "tokens": fake_b24.issue_tokens(portal, user_id=1)})
    data = {"portals": portals, "server": fake_b24.oauth_url + "/rest/", "needs_reauth": "shop-5.example.com"}
    subprocess.run([sys.executable, "-c", SEED], cwd=ROOT, env=env, input=json.dumps(data), text=True,
                   check=True, timeout=60)
    return env


def in_a_pipe(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def on_a_terminal(env, *args: str) -> tuple[int, str]:
    """(exit status, everything the terminal showed) of manage.py with stdout and stderr on a pty."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env={**env, "TERM": "xterm"},
                               stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(30), b"".join(chunks).decode()


def lines_of(screen: str) -> list[str]:
    """Lines as a person reads them: each \\r-overdrawn segment is gone but the last."""
    return [line.split("\r")[-1] for line in screen.replace("\r\n", "\n").split("\n") if line.split("\r")[-1].strip()]


def test_bind_placement_all_with_a_failure_on_a_terminal(fleet_db, fake_b24):
    fake_b24.fail_next("placement.bind", status=403, error="ACCESS_DENIED", description="Access denied")
    code, screen = on_a_terminal(fleet_db, "bind_placement", "--all", "--concurrency", "1")
    assert code == 1, screen
    assert "CommandError" not in screen and "Traceback" not in screen
    for line in screen.replace("\r\n", "\n").split("\n"):
        for segment in line.split("\r"):
            if COLOUR.search(segment):  # only a failure, or the recap's head, is coloured
                assert "FAILED" in segment or "failed" in segment, repr(segment)
            if "skipped" in segment or segment.startswith("["):
                assert not COLOUR.search(segment), repr(segment)  # skipped lines and the bar stay plain
    shown = [ANSI.sub("", line) for line in lines_of(screen)]
    bars = re.findall(r"\] (\d+)/(\d+)", screen)
    assert bars and {total for _, total in bars} == {"5"} and bars[-1] == ("5", "5")
    summary = shown[-1]
    assert summary.startswith("bind_placement TASK_VIEW_TOP_PANEL: 5 portal(s) in "), shown
    assert "1 skipped" in summary and "3 bound" in summary and "1 failed" in summary
    recap = shown.index("1 of 5 portal(s) failed; what to do:")
    assert "failed: ACCESS_DENIED" in shown[recap + 1] and shown[recap + 2].strip().startswith("-> ")
    assert "scopes" in shown[recap + 2]
    failed_domain = shown[recap + 1].split()[0]
    assert sum(failed_domain in line for line in shown) == 2  # its line in the run, and the recap


def test_bind_placement_all_with_a_failure_in_a_pipe(fleet_db, fake_b24):
    fake_b24.fail_next("placement.bind", status=403, error="ACCESS_DENIED", description="Access denied")
    result = in_a_pipe(fleet_db, "bind_placement", "--all")
    assert result.returncode == 1
    assert not ANSI.search(result.stdout + result.stderr) and "\r" not in result.stdout + result.stderr
    assert result.stderr == ""  # no progress bar, no "CommandError:" line
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("bind_placement TASK_VIEW_TOP_PANEL: 5 portal(s) in ")
    assert sum(line.startswith("ok ") for line in lines) == 3
    assert sum(line.startswith("skipped ") for line in lines) == 1
    assert sum(line.startswith("FAILED ") for line in lines) == 1
    assert "1 of 5 portal(s) failed; what to do:" in lines


def test_verbosity_0_prints_only_the_recap(fleet_db, fake_b24):
    fake_b24.fail_next("placement.bind", status=403, error="ACCESS_DENIED", description="Access denied")
    result = in_a_pipe(fleet_db, "bind_placement", "--all", "-v", "0")
    assert result.returncode == 1 and result.stderr == ""
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "1 of 5 portal(s) failed; what to do:" and len(lines) == 3, lines
    quiet = in_a_pipe(fleet_db, "bind_placement", "--all", "-v", "0")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_a_clean_run_exits_0_and_ends_with_its_summary(fleet_db):
    result = in_a_pipe(fleet_db, "bind_placement", "--all")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert "what to do" not in result.stdout
    assert lines[-1].startswith("bind_placement TASK_VIEW_TOP_PANEL: 5 portal(s)") and "4 bound" in lines[-1]


def test_list_placements_says_each_failure_once(fleet_db, fake_b24):
    fake_b24.fail_next("placement.get", status=503, error="QUERY_LIMIT_EXCEEDED", description="Too many requests",
                       times=10)
    result = in_a_pipe(fleet_db, "list_placements", "--portal", "shop-1.example.com", "--portal", "shop-2.example.com")
    assert result.returncode == 1 and "CommandError" not in result.stderr
    lines = result.stdout.strip().splitlines()
    assert sum("shop-1.example.com" in line for line in lines) == 1, lines
    assert lines[0] == "2 of 2 portal(s) failed; what to do:" and "--rate" in lines[2]
