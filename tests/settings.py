"""Test settings: the real settings module, with development defaults for what tests need.

DATABASE_URL still decides the database, so the same suite runs on SQLite and PostgreSQL.
"""
import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("B24_ALLOW_PRIVATE_ENDPOINTS", "true")
# The suite drives its own fakes; the sandbox is tested against a real server (tests/test_sandbox.py).
os.environ.setdefault("B24_SANDBOX", "false")

from bitrix_widget.settings import *  # noqa: E402,F401,F403

# Bitrix24 stand-in answers at once; keep retries short so fault tests stay fast.
B24_CONNECT_TIMEOUT = 1.0
B24_READ_TIMEOUT = float(os.environ.get("B24_READ_TIMEOUT", "2.0"))  # worker processes set it longer
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# SQLite: the test database is a file, not Django's shared-cache in-memory default. In shared-cache
# mode a second writer gets "database table is locked" at once instead of waiting (the busy timeout
# does not apply), so tests where threads write at the same time (commands fanning out across
# portals, concurrent installs) failed at random. A file keeps WAL and the 20 s busy timeout.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"bitrix_widget_test_{os.getpid()}.sqlite3"),
    }
