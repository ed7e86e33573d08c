"""Log hygiene: what anyone can provoke from outside stays one line."""
import logging

from portals.logging import BriefSecurityFilter


def test_suspicious_operation_is_one_warning_line_without_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "django.security.RequestDataTooBig", logging.ERROR, __file__, 1,
            "Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.", None, sys.exc_info(),
        )
    assert BriefSecurityFilter().filter(record)
    assert record.levelname == "WARNING" and record.exc_info is None


def test_other_errors_keep_their_traceback():
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "x", None, (ValueError, ValueError(), None))
    BriefSecurityFilter().filter(record)
    assert record.levelname == "ERROR" and record.exc_info is not None


def test_console_handler_applies_the_filter_before_scrubbing():
    from portals.logging import ScrubSecretsFilter

    (console,) = [h for h in logging.getLogger().handlers if any(
        isinstance(f, BriefSecurityFilter) for f in h.filters)]
    kinds = [type(f) for f in console.filters]
    assert kinds.index(BriefSecurityFilter) < kinds.index(ScrubSecretsFilter)
