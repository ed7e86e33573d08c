"""Settings, read from the environment (and an optional .env file) with django-environ.

Every variable of the contract (ARCHITECTURE.md, "Settings") is read here with its default.
Development (DEBUG on) needs nothing set; production refuses to start without its secrets.
"""
import base64
import hashlib
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "portals.admin_site.FleetAdminConfig",  # django.contrib.admin, opening on the fleet at a glance
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "portals",
    "placements",
    "events",
]

MIDDLEWARE = [
    # Outermost, so its one log line per Bitrix24-facing request sees the final status and time.
    "bitrix_widget.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bitrix_widget.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "bitrix_widget.context_processors.bitrix24_library",
            ],
        },
    },
]

WSGI_APPLICATION = "bitrix_widget.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several request threads write to one file: wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
    # WAL: readers never wait for the writer, and a commit is an append, not a rewritten journal
    # (bench/run.py: widget opens 2-3x faster). IMMEDIATE: a transaction takes the write lock when
    # it starts, so a read lock is never upgraded into "database is locked" under the threaded
    # server; no transaction is ever open across a call to Bitrix24 (the token refresh uses a
    # lease, portals/tokens.py), so the write lock is held for milliseconds.
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    # Keep a thread's connection between requests (opening the file and its PRAGMAs cost more
    # than a widget open's queries); DATABASE_URL's ?conn_max_age=N overrides it.
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
elif DATABASES["default"]["ENGINE"].endswith("postgresql") and env.int("DB_POOL_MAX_SIZE", default=4) > 0:
    # Django's psycopg pool, one per process: connections stay bounded at WEB_CONCURRENCY x
    # DB_POOL_MAX_SIZE whatever GUNICORN_THREADS is. A request hands its connection back while it
    # waits on Bitrix24 (portals/bitrix/capacity.py), so a connection is busy only for the
    # milliseconds of SQL an open runs: 4 per process serve 32 threads (README, Performance).
    # DB_POOL_MAX_SIZE=0 turns the pool off (then CONN_MAX_AGE applies, one connection per thread).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("pool", {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=4),
        # Seconds a request waits for a free connection before it fails (a 500 in the log).
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    })
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections, not the thread
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский"), ("de", "Deutsch"), ("uk", "Українська"), ("pl", "Polski")]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["bitrix_widget.formats"]  # dates in a sentence ("7 декабря 2026", no "г.")
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Bitrix24 POSTs are small; anything far larger is not Bitrix24 and is refused with a 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=64 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

X_FRAME_OPTIONS = "DENY"

# Error emails and the debug page hide AUTH_ID, REFRESH_ID, auth[...] and the action token.
DEFAULT_EXCEPTION_REPORTER_FILTER = "bitrix_widget.errors.SecretsExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "bitrix_widget.errors.SecretsExceptionReporter"

# --- Bitrix24 -------------------------------------------------------------------------------
B24_CLIENT_ID = env.str("B24_CLIENT_ID", default="")
B24_CLIENT_SECRET = env.str("B24_CLIENT_SECRET", default="")
B24_APP_BASE_URL = env.str("B24_APP_BASE_URL", default="")
B24_OAUTH_SERVERS = env.list(
    "B24_OAUTH_SERVERS", default=["https://oauth.bitrix.info", "https://oauth.bitrix24.tech"]
)
B24_ALLOW_PRIVATE_ENDPOINTS = env.bool("B24_ALLOW_PRIVATE_ENDPOINTS", default=False)
# The placement codes the app binds (install, Bind widget, bind_placement, sync_portals) and
# serves; each must be registered by a module in placements/kinds/ (manage.py check says so).
B24_PLACEMENTS = env.list("B24_PLACEMENTS", default=["TASK_VIEW_TOP_PANEL"])
# Bearer token of the Prometheus scraper; unset, /metrics answers 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Seconds: connect and read timeouts of every call to Bitrix24 (the widget must answer quickly).
B24_CONNECT_TIMEOUT = env.float("B24_CONNECT_TIMEOUT", default=3.0)
B24_READ_TIMEOUT = env.float("B24_READ_TIMEOUT", default=5.0)
# One portal may not stall the others (portals/bitrix/capacity.py), per process: at most this many
# in-flight calls to one portal (three quarters of GUNICORN_THREADS, at least 2: one busy portal
# still gets 120 calls in flight over 5 processes, 64 people opening it at 200 ms need ~64, and a
# quarter of the threads always serve everyone else); more get a quick "slow to answer" page.
B24_PORTAL_MAX_CALLS = env.int("B24_PORTAL_MAX_CALLS",
                               default=max(2, env.int("GUNICORN_THREADS", default=32) * 3 // 4))
# A portal that timed out (or refused connections) this many times in a row is failed fast for
# B24_BREAKER_SECONDS; then one call probes it.
B24_BREAKER_FAILURES = env.int("B24_BREAKER_FAILURES", default=5)
B24_BREAKER_SECONDS = env.float("B24_BREAKER_SECONDS", default=30.0)
# Widget opens whose token Bitrix24 refuses, per portal and process: a burst, then this many a
# minute. Tokens Bitrix24 accepted lately are never held back.
B24_REFUSED_TOKENS_BURST = env.int("B24_REFUSED_TOKENS_BURST", default=10)
B24_REFUSED_TOKENS_PER_MINUTE = env.float("B24_REFUSED_TOKENS_PER_MINUTE", default=30.0)


def _development_encryption_key(secret_key: str) -> str:
    """A Fernet key derived from SECRET_KEY, so development needs no extra setting."""
    digest = hashlib.sha256(("token-encryption:" + secret_key).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


TOKEN_ENCRYPTION_KEYS = env.list("TOKEN_ENCRYPTION_KEYS", default=[])
if not TOKEN_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("TOKEN_ENCRYPTION_KEYS must be set when DEBUG is off.")
    TOKEN_ENCRYPTION_KEYS = [_development_encryption_key(SECRET_KEY)]

# Bitrix24's JS library, loaded by every page a portal frames (protocol 9); the sandbox stands it in.
B24_JS_LIBRARY_URL = "//api.bitrix24.com/api/v1/"

# --- Sandbox (development only: DEBUG on and no Bitrix24 credentials) ----------------------------
# A fake Bitrix24 runs beside the app on loopback and /sandbox/ simulates a portal framing the real
# widget (sandbox/). Never with DEBUG off, never once real credentials are set; B24_SANDBOX=false
# turns it off in development too (the test suite does).
SANDBOX = DEBUG and not (B24_CLIENT_ID or B24_CLIENT_SECRET) and env.bool("B24_SANDBOX", default=True)
if SANDBOX:
    INSTALLED_APPS.append("sandbox")
    # Starts the fake when the server loads its handler, then leaves the request path.
    MIDDLEWARE.append("sandbox.middleware.SandboxStartMiddleware")
    B24_ALLOW_PRIVATE_ENDPOINTS = True  # the fake's portal lives on http://127.0.0.1
    B24_JS_LIBRARY_URL = "/static/sandbox/bx24.js"
    # The demo portal shows a task card and a deal card, each framing its widget.
    B24_PLACEMENTS = env.list("B24_PLACEMENTS", default=["TASK_VIEW_TOP_PANEL", "CRM_DEAL_DETAIL_TAB"])

# --- The queue (Celery; the worker's own knobs are in bitrix_widget/celeryconfig.py) -------------
# Unset: tasks run in this process right after the response (./scripts/dev needs no server).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
# The queue tasks are sent to and a worker consumes (several deployments may share one broker).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Every portal's budget of Bitrix24 calls (protocol 4.4, 18), shared by every process through
# the broker's Redis (or the database without one): a steady rate and a burst.
B24_RATE_PER_SECOND = env.float("B24_RATE_PER_SECOND", default=2.0)
B24_RATE_BURST = env.int("B24_RATE_BURST", default=50)
# Longest a caller waits for its turn before the call is refused as rate-limited (seconds):
# short for a person waiting on a page, longer for a worker.
B24_RATE_MAX_WAIT = env.float("B24_RATE_MAX_WAIT", default=3.0)
B24_RATE_MAX_WAIT_BACKGROUND = env.float("B24_RATE_MAX_WAIT_BACKGROUND", default=60.0)
# An event whose handler keeps failing ends "failed" after this many attempts.
EVENTS_MAX_ATTEMPTS = env.int("EVENTS_MAX_ATTEMPTS", default=5)
# First retry after about this many seconds, doubling each time (capped at an hour, jittered).
EVENTS_RETRY_BASE_SECONDS = env.float("EVENTS_RETRY_BASE_SECONDS", default=30.0)
# Seconds between two runs of the offline-queue sweep over all portals (celery beat).
EVENTS_OFFLINE_SWEEP_SECONDS = env.int("EVENTS_OFFLINE_SWEEP_SECONDS", default=300)

# --- Production security (DEBUG off) -------------------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Logging: one line per event, never a token (see portals/logging.py) --------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "scrub_secrets": {"()": "portals.logging.ScrubSecretsFilter"},
        "brief_security": {"()": "portals.logging.BriefSecurityFilter"},
    },
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "filters": ["brief_security", "scrub_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
