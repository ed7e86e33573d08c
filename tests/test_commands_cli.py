"""The commands as an operator runs them: real exit statuses, one-line errors, no traceback;
and the pieces of a run across portals (progress bar, per-portal pacing)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management.base import OutputWrapper

from portals.management.commands._portal_command import ProgressBar
from portals.fanout import Pacer

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "B24_ALLOW_PRIVATE_ENDPOINTS": "true",
        "B24_APP_BASE_URL": "https://app.example.com",
        "B24_CLIENT_ID": "local.fake0000000000.00000001",
        "B24_CLIENT_SECRET": "secret",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args, env, says",
    [
        (["bind_placement", "--all"], {"B24_CLIENT_ID": ""}, "B24_CLIENT_ID and B24_CLIENT_SECRET must be set"),
        (["bind_placement", "--all"], {"B24_CLIENT_SECRET": ""}, "B24_CLIENT_ID and B24_CLIENT_SECRET must be set"),
        (["bind_placement", "--bogus"], {}, "unrecognized arguments: --bogus"),
        (["bind_placement"], {}, "name a portal with --portal"),
        (["prune_invocations"], {}, "--older-than-days"),
        (["refresh_tokens", "--all", "--idle-days", "-3"], {}, "must be more than 0"),
    ],
    ids=["no-client-id", "no-client-secret", "unknown-flag", "no-selection", "missing-days", "negative-days"],
)
def test_manage_py_usage_errors_exit_2_with_one_line_and_no_traceback(args, env, says):
    result = manage(*args, **env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr


def test_progress_bar_draws_on_a_terminal_only():
    class Terminal(StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    bar = ProgressBar(OutputWrapper(terminal), total=4, enabled=True)
    bar.update(1)
    bar.update(4)
    assert "\r[#######" in terminal.getvalue() and "] 1/4" in terminal.getvalue()
    assert terminal.getvalue().endswith("[" + "#" * 30 + "] 4/4")
    plain = StringIO()
    quiet = ProgressBar(OutputWrapper(plain), total=4, enabled=False)
    quiet.update(2)
    quiet.clear()
    assert plain.getvalue() == ""


def test_pacer_spaces_calls_to_one_portal():
    pace = Pacer(rate=20.0)  # at most 20 a second: 50 ms apart
    started = time.monotonic()
    for _ in range(4):
        pace()
    assert time.monotonic() - started >= 0.15  # the first call goes at once, three waits follow


def test_run_across_portals_turns_a_portal_exception_into_its_failed_line():
    from portals.models import Portal
    from portals.fanout import PortalOutcome, run_across_portals

    def work(portal, pace):
        if portal.domain == "b.example.com":
            raise RuntimeError("boom")
        return PortalOutcome(portal, "bound", True)

    portals = [Portal(domain=f"{name}.example.com", member_id=name) for name in "abcd"]
    outcomes = run_across_portals(portals=portals, work=work, concurrency=4)
    assert sorted((o.portal.domain, o.status) for o in outcomes) == [
        ("a.example.com", "bound"), ("b.example.com", "failed"), ("c.example.com", "bound"), ("d.example.com", "bound"),
    ]
    assert [o.detail for o in outcomes if o.failed] == ["RuntimeError: boom"]


def test_run_across_portals_stops_when_the_app_is_not_configured():
    from portals.bitrix.errors import NotConfigured
    from portals.models import Portal
    from portals.fanout import run_across_portals

    def work(portal, pace):
        raise NotConfigured("NOT_CONFIGURED", "B24_CLIENT_ID and B24_CLIENT_SECRET must be set")

    portals = [Portal(domain=f"p{n}.example.com", member_id=str(n)) for n in range(20)]
    with pytest.raises(NotConfigured):
        run_across_portals(portals=portals, work=work, concurrency=4)
