"""Keep tokens out of logs, whatever a log call or a traceback happens to contain."""
import logging
import re

SECRET_KEYS = (
    "AUTH_ID",
    "REFRESH_ID",
    "APPLICATION_TOKEN",
    "access_token",
    "refresh_token",
    "application_token",
    "client_secret",
    "auth",
    "code",
    "token",
)

# key=value, "key": "value", key: value, and auth[access_token]=value shapes.
_SECRET_PATTERN = re.compile(
    r"(?P<key>\b(?:%s)(?:\]|\b)['\"]?\s*[:=]\s*['\"]?)(?P<value>[^\s&'\",}]+)"
    % "|".join(re.escape(k) for k in SECRET_KEYS),
    re.IGNORECASE,
)


def scrub(text: str) -> str:
    """Replace the value of every secret-named field in ``text`` with a mask."""
    return _SECRET_PATTERN.sub(lambda m: m.group("key") + "***", text)


def mask(value: str | None) -> str:
    """Show only the last 4 characters of a secret (the admin's and the logs' only view of it)."""
    if not value:
        return ""
    return "…" + value[-4:] if len(value) > 8 else "***"


class ScrubSecretsFilter(logging.Filter):
    """Scrub the formatted message and any traceback text before a handler writes them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class BriefSecurityFilter(logging.Filter):
    """Django logs every SuspiciousOperation (an oversized POST, a foreign Host header) at ERROR
    with a full traceback. Anyone can send those, so they become one WARNING line: the reason is
    in the message, and the traceback only points into Django."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security.") and record.levelno == logging.ERROR:
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
