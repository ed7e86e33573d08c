"""Every sentence a person reads in a widget frame, so each is written and translated once.

A state is what the whole frame shows instead of the entity (a 200 page with a state, or a
400/402/403 page); a note is the line under the action bar after an action. Codes and Bitrix24's
own wording go to the log only. A placement's ``words`` replace the sentences that name its
entity ("Task not found"); a new state (another engineer's "slow") is one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class State:
    """``retry``: a *Try again* button that reloads the Bitrix24 page (``BX24.reloadWindow``),
    which posts the frame again with a fresh token; only where that can help."""

    title: str
    text: str
    tone: str = "error"  # "error" or "info"
    retry: bool = False


TOO_LARGE = _("The request was too large to come from Bitrix24.")
CANNOT_SHOW = _("Could not show the widget")

STATES: dict[str, State] = {
    "not_found": State(_("Not found"), _("It may have been deleted, or you do not have access to it."), tone="info"),
    "unreachable": State(
        _("Could not load the data"),
        _("The app's server could not reach your Bitrix24. Try again in a minute."),
        retry=True,
    ),
    "error": State(
        _("Could not load the data"),
        _("Bitrix24 could not pass the data to the app just now. Try again in a minute."),
        retry=True,
    ),
    "busy": State(
        _("Bitrix24 is slow to answer"), _("Bitrix24 is slow to answer right now. Try again in a moment."), retry=True
    ),
    "session_expired": State(_("Your session has expired"), _("Reload the page to continue."), retry=True),
    "bad_request": State(CANNOT_SHOW, _("This widget opens only inside Bitrix24, in the card it belongs to.")),
    "too_large": State(CANNOT_SHOW, TOO_LARGE),
    "not_installed": State(
        _("The app is not installed"),
        _("The app is not installed on this Bitrix24. Ask your Bitrix24 administrator."),
    ),
    "payment_required": State(
        _("The subscription has ended"),
        _("The subscription to this app has ended on your Bitrix24. Ask your Bitrix24 administrator to renew it."),
    ),
    "refused": State(
        CANNOT_SHOW,
        _("This Bitrix24 address does not match the one the app was installed on. Ask your Bitrix24 administrator."),
    ),
}

# The note after a failed action, by the state the action's answer names.
FAILED_NOTES = {
    "refused": _("Bitrix24 did not allow this. The widget shows how things are now."),
    "not_found": _("It is gone, or you no longer have access to it."),
    "session_expired": _("Your session has expired. Reload the page to continue."),
    "payment_required": STATES["payment_required"].text,
    "unreachable": STATES["unreachable"].text,
    "busy": STATES["busy"].text,
    "error": _("That did not work. Try again in a minute."),
    "bad_request": _("The widget is out of date. Reload the page."),
    "too_large": TOO_LARGE,
    # Only the page's script can see this one: the request never reached the app.
    "offline": _("No connection to the app's server. Check your connection and try again."),
}
# The placement's words that replace a note: the key in FAILED_NOTES -> the key in words.
FAILED_WORDS = {"refused": "refused_note", "not_found": "gone"}
DONE = _("Done.")
WORKING_NOTE = _("One moment…")


def state(name: str, words: dict | None = None) -> State:
    """The state ``name`` (unknown names show as "error"), in the placement's own words."""
    shown = STATES.get(name, STATES["error"])
    words = words or {}
    return replace(
        shown, title=words.get(f"{name}_title", shown.title), text=words.get(f"{name}_text", shown.text)
    )


def failed_note(name: str, words: dict | None = None) -> str:
    words = words or {}
    return str(words.get(FAILED_WORDS.get(name, ""), FAILED_NOTES.get(name, FAILED_NOTES["error"])))


def page_messages(*, words: dict | None = None, actions: tuple[str, ...] = ()) -> dict[str, str]:
    """What the page's script may show, in the active language (the page renders it as JSON)."""
    words = words or {}
    return {
        "working": str(WORKING_NOTE),
        **{f"done_{name}": str(words.get(f"done_{name}", DONE)) for name in actions},
        **{f"failed_{name}": failed_note(name, words) for name in FAILED_NOTES},
    }
