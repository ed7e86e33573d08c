"""Error answers that say what was wrong, and error reports that never carry a token.

Django's own 400 page says only "Bad Request", whether the body was too large or had too many
fields; Bitrix24 and the person in the task card deserve the reason. Script-facing endpoints get
``{"status": "error", "message": ...}`` (the shape the views use), everything else a small page.
"""
from __future__ import annotations

import re
from http import HTTPStatus

from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.html import escape
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from portals.framing import allow_framing_by
from portals.logging import scrub
from portals.responses import json_error

# The Bitrix24-facing endpoints: pages a portal frames (HTML answers) and addresses only programs
# call (JSON answers, like /healthz).
FRAMED_PATHS = ("/portals/install/", "/placements/handler/")
SCRIPT_PATHS = ("/portals/events/", "/placements/action/")
BITRIX24_PATHS = FRAMED_PATHS + SCRIPT_PATHS
JSON_PATHS = SCRIPT_PATHS + ("/healthz",)

_BAD_REQUEST_REASONS = (
    (RequestDataTooBig, "The request is too large."),
    (TooManyFieldsSent, "The request has too many fields."),
    (TooManyFilesSent, "The request has too many files."),
    (MultiPartParserError, "The request body could not be read (malformed multipart data)."),
    (DisallowedHost, "This app does not answer to the host name the request was sent to."),
)
_DEFAULT_MESSAGES = {
    400: "The request is malformed.",
    403: "Access to this address is forbidden.",
    404: "Nothing is served at this address.",
    405: "This method is not allowed here.",
    500: "Something went wrong on our side. It has been logged; please try again.",
}


def wants_json(request: HttpRequest) -> bool:
    if request.path in JSON_PATHS:
        return True
    if request.path in FRAMED_PATHS:
        return False
    accept = request.headers.get("Accept", "")
    return "json" in accept or "json" in (request.content_type or "")


def error_response(request: HttpRequest, status: int, message: str) -> HttpResponse:
    """A short human answer: JSON for scripts, a small page otherwise."""
    if wants_json(request):
        return json_error(status, message)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        '<body style="font:14px/1.5 Arial,sans-serif;margin:24px"><p>{message}</p></body></html>'
    ).format(title=f"{status} {HTTPStatus(status).phrase}", message=escape(message))
    response = HttpResponse(page, status=status, content_type="text/html; charset=utf-8")
    if request.path in FRAMED_PATHS:
        # Names no portal and offers nothing to click: the person in the iframe may read it.
        allow_framing_by(response, "*")
    return response


def bad_request_reason(exception: Exception | None) -> str:
    for kind, reason in _BAD_REQUEST_REASONS:
        if isinstance(exception, kind):
            return reason
    return _DEFAULT_MESSAGES[400]


def explain_empty_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An error answered without a body (``require_POST``'s 405) gets one that says why."""
    if response.status_code < 400 or response.streaming or response.content:
        return response
    message = _DEFAULT_MESSAGES.get(response.status_code, f"The request was refused ({response.status_code}).")
    if response.status_code == 405:
        message = f"{request.method} is not allowed here; use {response.get('Allow', 'POST')}."
    explained = error_response(request, response.status_code, message)
    if "Allow" in response:
        explained["Allow"] = response["Allow"]
    return explained


def handler400(request, exception=None):
    return error_response(request, 400, bad_request_reason(exception))


def handler403(request, exception=None):
    return error_response(request, 403, _DEFAULT_MESSAGES[403])


def handler404(request, exception=None):
    return error_response(request, 404, _DEFAULT_MESSAGES[404])


def handler500(request):
    return error_response(request, 500, _DEFAULT_MESSAGES[500])


# --- error reports (emails, the technical 500 page) -----------------------------------------------

_SECRET_NAME = re.compile(r"AUTH|TOKEN|REFRESH|SECRET|PASS|KEY|SIGNATURE|CODE", re.IGNORECASE)


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Hide AUTH_ID, REFRESH_ID, APPLICATION_TOKEN, auth[...] and the action token wherever a
    report shows them, without each view having to remember ``@sensitive_post_parameters``."""

    hidden_settings = re.compile(SafeExceptionReporterFilter.hidden_settings.pattern + "|REFRESH", re.I)

    def is_active(self, request):
        return True  # tokens are other companies' secrets, in development too

    def _cleansed(self, values):
        cleansed = values.copy()
        for key in list(cleansed):
            if _SECRET_NAME.search(str(key)):
                cleansed[key] = self.cleansed_substitute
        return cleansed

    def get_safe_request_meta(self, request):
        # QUERY_STRING, RAW_URI, REQUEST_URI... may carry ``auth=``.
        return {
            key: scrub(value) if isinstance(value, str) else value
            for key, value in super().get_safe_request_meta(request).items()
        }

    def get_post_parameters(self, request):
        if request is None:
            return {}
        return self._cleansed(super().get_post_parameters(request))

    def get_cleansed_multivaluedict(self, request, multivaluedict):
        return self._cleansed(super().get_cleansed_multivaluedict(request, multivaluedict))

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [
            (name, self.cleansed_substitute if _SECRET_NAME.search(name)
             else self._cleansed(value) if isinstance(value, dict) else value)
            for name, value in variables
        ]


class SecretsExceptionReporter(ExceptionReporter):
    """The query string, the exception text and each local's printed form (a request's repr holds
    its query string) are shown too: scrub secret-named values there."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        for frame in data.get("frames", []):
            if "vars" in frame:
                frame["vars"] = [(name, scrub(value)) for name, value in frame["vars"]]
        if "request_GET_items" in data:
            data["request_GET_items"] = self.filter.get_cleansed_multivaluedict(self.request, self.request.GET).items()
        for key in ("request_insecure_uri", "exception_value"):
            if isinstance(data.get(key), str):
                data[key] = scrub(data[key])
        return data
