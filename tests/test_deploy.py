"""Production configuration: deploy checks, WhiteNoise, gunicorn.conf.py, /healthz without a
database. Each runs the real settings module in a subprocess with a clean environment, as a
server would."""
from __future__ import annotations

import json
import os
import runpy
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from django.db.utils import OperationalError

from tests.fixtures_hardening import free_port

ROOT = Path(__file__).resolve().parent.parent


def production_env(**extra) -> dict:
    """Only what ARCHITECTURE.md says production needs, nothing from this shell (no .env either:
    the variables given win over it)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "bitrix_widget.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "app.example.com",
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        **extra,
    }


def run(args: list[str], env: dict, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_check_deploy_passes_with_only_the_documented_production_settings():
    result = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "TOKEN_ENCRYPTION_KEYS"])
def test_production_refuses_to_start_without_its_secrets(missing):
    env = production_env()
    del env[missing]
    result = run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0 and f"{missing} must be set" in result.stderr


_SECURITY_SETTINGS = """
import django, json
from django.conf import settings
django.setup()
print(json.dumps({name: getattr(settings, name, None) for name in (
    "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER", "ALLOWED_HOSTS", "DEBUG", "X_FRAME_OPTIONS")}))
"""


def test_production_settings_are_https_hsts_secure_cookies_and_the_proxy_header():
    result = run([sys.executable, "-c", _SECURITY_SETTINGS], production_env())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "SECURE_SSL_REDIRECT": True, "SECURE_HSTS_SECONDS": 31536000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"], "ALLOWED_HOSTS": ["app.example.com"],
        "DEBUG": False, "X_FRAME_OPTIONS": "DENY",
    }


# collectstatic into a temporary STATIC_ROOT, then GETs through the WSGI application itself.
_WHITENOISE = """
import io, json, sys
import django
from django.conf import settings
django.setup()
settings.STATIC_ROOT = sys.argv[1]
from django.core.management import call_command
call_command("collectstatic", "--noinput", verbosity=0)
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()

def get(path, **headers):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "app.example.com",
               "SERVER_PORT": "443", "HTTP_HOST": "app.example.com", "HTTP_X_FORWARDED_PROTO": "https",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
               "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": True,
               "wsgi.run_once": False, "SERVER_PROTOCOL": "HTTP/1.1", **headers}
    answer = {}
    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(response_headers)
    body = b"".join(application(environ, start_response))
    return {**answer, "length": len(body), "head": body[:200].decode("latin-1")}

css = staticfiles_storage.url("admin/css/base.css")
print(json.dumps({"url": css, "css": get(css), "gzip": get(css, HTTP_ACCEPT_ENCODING="gzip"),
                  "login": get("/admin/login/")}))
"""


def test_whitenoise_serves_the_admin_static_files_collected_for_production(tmp_path):
    result = run([sys.executable, "-c", _WHITENOISE, str(tmp_path / "static")], production_env())
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["url"].startswith("/static/admin/css/base.") and answer["url"] != "/static/admin/css/base.css"
    css = answer["css"]
    assert css["status"] == 200 and css["headers"]["Content-Type"].startswith("text/css") and css["length"] > 1000
    assert "immutable" in css["headers"]["Cache-Control"]  # a hashed name may be cached for ever
    assert answer["gzip"]["headers"].get("Content-Encoding") == "gzip"
    login = answer["login"]
    assert login["status"] == 200 and login["headers"]["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" in login["headers"]


# --- gunicorn.conf.py ---------------------------------------------------------------------------------


def _conf(monkeypatch, **env) -> dict:
    for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_BIND", "GUNICORN_ACCESS_LOG", "GUNICORN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    # The file sets PROMETHEUS_MULTIPROC_DIR (for its workers) when it is unset: let monkeypatch
    # restore it, so this test process keeps counting in memory.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "set-by-the-test")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_conf_defaults(monkeypatch):
    conf = _conf(monkeypatch)
    assert conf["bind"] == "0.0.0.0:8000"
    assert conf["workers"] == 2 * os.cpu_count() + 1
    assert conf["timeout"] == 30 and conf["graceful_timeout"] == 30
    assert conf["accesslog"] is None  # the app's own request lines replace it
    assert conf["control_socket_disable"] is True


def test_gunicorn_conf_reads_port_web_concurrency_and_access_log(monkeypatch):
    conf = _conf(monkeypatch, PORT="5123", WEB_CONCURRENCY="3", GUNICORN_ACCESS_LOG="true", GUNICORN_TIMEOUT="45")
    assert conf["bind"] == "0.0.0.0:5123" and conf["workers"] == 3 and conf["timeout"] == 45
    assert conf["accesslog"] == "-"
    # The path alone: %(r)s (request line), %(q)s and %(U)s%(q)s would print the query string.
    assert "%(U)s" in conf["access_log_format"]
    assert "%(r)s" not in conf["access_log_format"] and "%(q)s" not in conf["access_log_format"]


def test_gunicorn_accepts_the_config_file():
    env = {**production_env(), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = run([sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn.conf.py", "bitrix_widget.wsgi"], env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gunicorn_with_access_log_on_never_prints_a_query_string_token(tmp_path):
    """A live gunicorn: its access log and the app's request line name the path, never the token."""
    port, secret = free_port(), secrets.token_hex(20)
    env = production_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", ALLOWED_HOSTS="127.0.0.1",
        GUNICORN_ACCESS_LOG="1", PORT=str(port), WEB_CONCURRENCY="1",
    )
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "bitrix_widget.wsgi"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/portals/install/?DOMAIN=x.example.com&auth={secret}"
        for _ in range(100):
            try:
                response = requests.post(url, data={"AUTH_ID": secret, "REFRESH_ID": secret}, timeout=10,
                                         headers={"X-Forwarded-Proto": "https"})  # as the proxy sends
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert response.status_code == 400 and b"member_id is missing" in response.content
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0]
    assert '"POST /portals/install/" 400' in output  # the access line
    assert '"path": "/portals/install/", "status": 400' in output  # the app's structured line
    assert secret not in output


# --- /healthz -----------------------------------------------------------------------------------------

_HEALTHZ = """
import django, json
django.setup()
from django.test import Client
response = Client().get("/healthz", HTTP_HOST="app.example.com")
print(json.dumps({"status": response.status_code, "body": response.content.decode(),
                  "location": response.get("Location")}))
"""


@pytest.mark.parametrize(
    "database_url",
    ["postgres://postgres@127.0.0.1:1/unreachable", "sqlite:////nonexistent-directory/db.sqlite3"],
    ids=["postgres_refused", "sqlite_unopenable"],
)
def test_healthz_is_503_when_the_database_is_gone_even_over_plain_http(database_url):
    """Load balancers probe over plain http: /healthz is exempt from the SSL redirect."""
    result = run([sys.executable, "-c", _HEALTHZ], production_env(DATABASE_URL=database_url))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == 503 and answer["location"] is None
    assert json.loads(answer["body"]) == {"status": "error", "database": "unavailable"}


@pytest.mark.django_db
def test_healthz_is_503_when_the_cursor_fails(client, monkeypatch):
    from django.db import connection

    def gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection, "cursor", gone)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["database"] == "unavailable"


@pytest.mark.django_db
def test_healthz_is_200_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "database": "ok"}
