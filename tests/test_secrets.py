"""Secrets: after a full install, widget and refresh flow, no token is in a database dump, in raw
SQL rows or in the logs; error reports hide them; key rotation re-encrypts and loses nothing."""
from __future__ import annotations

import io
import logging
import secrets
import sys
from urllib.parse import urlencode

import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import RequestFactory
from django.utils.log import AdminEmailHandler
from django.views.debug import get_exception_reporter_class

from portals import tokens
from portals.logging import ScrubSecretsFilter
from portals.models import Credential, Portal
from tests.fixtures_hardening import expire
from tests.fixtures_placements import VIEWER_ID
from tests.test_portals_events import event_body

pytestmark = pytest.mark.django_db


def every_secret(fake) -> set[str]:
    """Every token the fake ever issued, every application token, and the client secret."""
    with fake._lock:
        issued = set(fake._access) | set(fake._refresh)
    return issued | {portal.application_token for portal in fake.portals.values()} | {fake.client_secret}


@pytest.fixture
def console():
    """The console handler of settings.LOGGING, writing into a buffer (at DEBUG, to be strict)."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if any(isinstance(f, ScrubSecretsFilter) for f in h.filters)]
    assert handlers, "settings.LOGGING's console handler is not installed"
    buffer, level = io.StringIO(), root.level
    streams = [handler.setStream(buffer) for handler in handlers]
    root.setLevel(logging.DEBUG)
    yield buffer
    root.setLevel(level)
    for handler, stream in zip(handlers, streams):
        handler.setStream(stream)


@pytest.fixture
def full_flow(client, widget, console, caplog):
    """Install (done by the widget fixture), widget open, an action after expiry (viewer refresh),
    an admin refresh, ONAPPUPDATE with a new application token; returns every secret seen."""
    fake = widget.fake
    caplog.set_level(logging.DEBUG)
    token = widget.action_token(client)
    expire(Credential.objects.get(user_id=VIEWER_ID))
    assert client.post("/placements/action/", {"action": "complete", "token": token}).status_code == 200
    admin = Credential.objects.select_related("portal").get(is_admin=True)
    expire(admin)
    tokens.portal_call(credential=admin, method="profile")
    fake.new_application_token(widget.fake_portal)
    update = event_body("ONAPPUPDATE", fake, widget.fake_portal, fake.issue_tokens(widget.fake_portal))
    response = client.post("/portals/events/", urlencode(update), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert fake.count(method="oauth/token") == 2
    return every_secret(fake)


def leaked(text: str, secrets: set[str]) -> list[str]:
    return [secret[-6:] for secret in secrets if secret and secret in text]


def test_database_dump_holds_no_token_in_plain_text(full_flow):
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert Credential.objects.count() == 2 and "portals.credential" in dump.getvalue()
    assert leaked(dump.getvalue(), full_flow) == []


def test_database_dump_loads_back_with_every_token(full_flow, tmp_path):
    before = _decrypted()
    dump = tmp_path / "dump.json"
    call_command("dumpdata", "portals", output=str(dump))
    Credential.objects.update(access_token="", refresh_token="")
    Portal.objects.update(application_token="")
    call_command("loaddata", str(dump), verbosity=0)
    assert _decrypted() == before


def test_raw_rows_hold_no_token_in_plain_text(full_flow):
    with connection.cursor() as cursor:
        rows = []
        for table in ("portals_portal", "portals_credential", "placements_invocation"):
            cursor.execute(f"SELECT * FROM {table}")
            rows.extend(cursor.fetchall())
    assert len(rows) >= 4
    assert leaked(repr(rows), full_flow) == []


def test_logs_hold_no_token(full_flow, caplog, console):
    """Our own log calls never hold a token, even before the console's scrubbing; and what the
    console writes holds none even at DEBUG, where urllib3 prints every URL it calls."""
    ours = [
        record for record in caplog.get_records("setup") + caplog.get_records("call")
        if record.name.split(".")[0] in ("portals", "placements", "bitrix_widget", "django")
    ]
    assert {"bitrix_widget.request", "placements.services", "portals.services"} <= {r.name for r in ours}
    text = "\n".join(
        record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in ours
    )
    assert leaked(text, full_flow) == []
    output = console.getvalue()
    assert "/placements/action/" in output and "/oauth/token/?" in output and "auth=***" in output
    assert leaked(output, full_flow) == []


# --- error reports ------------------------------------------------------------------------------------

# Made at run time: a value written in this file would show in the report's source context.
SECRET_POST = {
    name: secrets.token_hex(12)
    for name in ("AUTH_ID", "REFRESH_ID", "APPLICATION_TOKEN", "auth[access_token]", "auth[refresh_token]",
                 "auth[application_token]", "token")
} | {"member_id": "visible-member-id"}
SECRET_QUERY = {"auth": secrets.token_hex(12), "DOMAIN": "visible.example.com"}
SECRET_LOCAL = secrets.token_hex(12)
SECRETS = {value for name, value in {**SECRET_POST, **SECRET_QUERY}.items() if name not in ("member_id", "DOMAIN")}
SECRETS.add(SECRET_LOCAL)


def _failing_view(request):
    access_token = SECRET_LOCAL  # noqa: F841 - a local the report would show
    params = dict(request.POST.items())  # noqa: F841
    raise RuntimeError(f"Bitrix24 refused auth={SECRET_QUERY['auth']}")


def _exc_info_of_a_failing_request():
    request = RequestFactory().post("/portals/install/?" + urlencode(SECRET_QUERY), SECRET_POST)
    try:
        _failing_view(request)
    except RuntimeError:
        return request, sys.exc_info()
    raise AssertionError("unreachable")


@pytest.mark.parametrize("debug", [False, True])
def test_error_report_hides_auth_id_refresh_id_and_auth_fields(settings, debug):
    settings.DEBUG = debug
    request, exc_info = _exc_info_of_a_failing_request()
    reporter = get_exception_reporter_class(request)(request, *exc_info)
    text, html = reporter.get_traceback_text(), reporter.get_traceback_html()
    assert "visible-member-id" in text and "visible.example.com" in text  # the report is still useful
    assert leaked(text, SECRETS) == [] and leaked(html, SECRETS) == []


def test_error_email_hides_auth_id_refresh_id_and_auth_fields(settings):
    settings.ADMINS = [("ops", "ops@example.com")]
    request, exc_info = _exc_info_of_a_failing_request()
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error", (), exc_info)
    record.request = request
    AdminEmailHandler(include_html=True).emit(record)
    (message,) = mail.outbox
    body = message.body + "".join(str(alternative[0]) for alternative in message.alternatives)
    assert "REFRESH_ID" in body
    assert leaked(body, SECRETS) == [] and leaked(message.subject, SECRETS) == []


# --- key rotation -------------------------------------------------------------------------------------


def _decrypted() -> dict:
    return {
        "credentials": {c.pk: (c.access_token, c.refresh_token) for c in Credential.objects.all()},
        "portals": {p.pk: p.application_token for p in Portal.objects.all()},
    }


def _run(command: str, *args) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def test_key_rotation_reencrypts_everything_and_the_old_key_can_go(full_flow, settings):
    before = _decrypted()
    old_keys, new_key = list(settings.TOKEN_ENCRYPTION_KEYS), Fernet.generate_key().decode()
    settings.TOKEN_ENCRYPTION_KEYS = [new_key, *old_keys]
    stored = 2 * Credential.objects.count() + Portal.objects.exclude(application_token="").count()

    output = _run("reencrypt_tokens")
    assert f"total: {stored} re-encrypted, 0 already under the first key, 0 unreadable" in output
    assert "the other keys can be removed" in output
    assert _run("reencrypt_tokens").count(f"total: 0 re-encrypted, {stored} already under the first key") == 1

    settings.TOKEN_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    assert _decrypted() == before
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM portals_credential")
        for access, refresh in cursor.fetchall():
            Fernet(new_key).decrypt(access.encode()), Fernet(new_key).decrypt(refresh.encode())


def test_key_rotation_reports_a_token_no_key_can_read_and_leaves_it(full_flow, settings):
    original, lost_key = list(settings.TOKEN_ENCRYPTION_KEYS), Fernet.generate_key().decode()
    credential = Credential.objects.get(user_id=VIEWER_ID)
    settings.TOKEN_ENCRYPTION_KEYS = [lost_key]
    credential.save(update_fields=["access_token"])  # encrypted under a key that is then lost
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *original]
    raw = "SELECT access_token FROM portals_credential WHERE id = %s"
    with connection.cursor() as cursor:
        cursor.execute(raw, [credential.pk])
        unreadable = cursor.fetchone()
    with pytest.raises(CommandError, match="1 token"):
        _run("reencrypt_tokens")
    with connection.cursor() as cursor:
        cursor.execute(raw, [credential.pk])
        assert cursor.fetchone() == unreadable  # left as it was, for the right key to read later
    assert Credential.objects.get(is_admin=True).refresh_token  # the others were re-encrypted
