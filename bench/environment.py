"""The environment the app runs with during the benchmark, and the database it gets.

Production settings (DEBUG off) with the secrets a deployment would set, pointed at the fake
Bitrix24. SQLite in a temporary directory by default; with DATABASE_URL=postgres://... a dedicated
database (``bench`` unless --db-name says otherwise) on that server is dropped and created again,
so the test suite's database is never touched.
"""
from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet

PROTECTED_DATABASES = {"test", "postgres", "template0", "template1"}


def is_postgres(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0] in ("postgres", "postgresql", "pgsql", "psql")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _pg_connect_args(url: str) -> dict:
    parts = urlsplit(url)
    return {"host": parts.hostname or "127.0.0.1", "port": parts.port or 5432,
            "user": parts.username or "postgres", "password": parts.password or None}


def prepare_database(*, tmpdir: str, db_name: str) -> tuple[str, str]:
    """(DATABASE_URL for the app, a label) for an empty database."""
    url = os.environ.get("DATABASE_URL", "")
    if not is_postgres(url):
        return f"sqlite:///{tmpdir}/bench.sqlite3", "SQLite (file in a temporary directory)"
    if db_name in PROTECTED_DATABASES:
        raise SystemExit(f"refusing to use the database {db_name!r}: pick another with --db-name")
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **_pg_connect_args(url)) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
        version = conn.execute("SHOW server_version").fetchone()[0]
    parts = urlsplit(url)
    return _with_database(url, db_name), f"PostgreSQL {version} ({parts.hostname}:{parts.port or 5432}/{db_name})"


def drop_database(*, db_name: str) -> None:
    url = os.environ.get("DATABASE_URL", "")
    if is_postgres(url) and db_name not in PROTECTED_DATABASES:
        import psycopg

        with psycopg.connect(dbname="postgres", autocommit=True, **_pg_connect_args(url)) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def app_environment(*, database_url: str, fake: dict, settings_module: str) -> dict[str, str]:
    """Environment of gunicorn, of the management commands and of this process's Django."""
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        # testserver: the in-process django.test.Client used for query counts and the admin
        "ALLOWED_HOSTS": "127.0.0.1,testserver",
        "SECURE_SSL_REDIRECT": "false",  # plain http on loopback; no TLS proxy in front
        "DATABASE_URL": database_url,
        "B24_OAUTH_SERVERS": fake["oauth_url"],
        "B24_CLIENT_ID": fake["client_id"],
        "B24_CLIENT_SECRET": fake["client_secret"],
        "B24_ALLOW_PRIVATE_ENDPOINTS": "true",
        "B24_APP_BASE_URL": "https://app.example.com",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def django_setup(env: dict[str, str]) -> None:
    """Django in this process, on the same settings and database as the server."""
    import logging
    import warnings

    os.environ.update(env)
    import django

    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic here
    django.setup()
    logging.disable(logging.INFO)  # the server logs every request; this process needs not
