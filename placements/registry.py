"""The placement framework: the base class every placement derives from, and the registry.

Adding a placement is a module in ``placements/kinds/`` (a subclass, registered) plus a template;
the handler view, the action view, the services and the install binding read this registry and
never name a placement themselves. ``B24_PLACEMENTS`` chooses which registered placements the
app binds and serves.
"""
from __future__ import annotations

import importlib
import pkgutil

from django.conf import settings
from django.core import checks
from django.utils.translation import gettext_lazy as _

from portals.bitrix import errors
from portals.payload import PayloadError, is_ascii_number


class Placement:
    """A widget placement.

    ``code`` and ``title`` are what ``placement.bind`` registers; ``template`` renders the page
    (it extends ``placements/base.html``) and ``script`` is its part of the page's script;
    ``entity_keys`` are the ``PLACEMENT_OPTIONS`` keys that name the entity, first found wins;
    ``answer_key`` names the entity in the action's JSON answer (``{"task": ...}``);
    ``words`` are what the page and the answers say about the entity (lazy translations);
    ``load_commands``/``view`` say what one ``batch`` fetches and how the page shows it;
    ``actions`` maps an action name (``reload`` is always there) to the REST method it calls.
    """

    do_not_call_in_templates = True  # templates read the class's attributes, never instantiate it

    code: str = ""
    title: str = ""
    where: str = ""  # where a user finds the widget, for the app's own page (translated)
    scope: str = ""  # the Bitrix24 scope its REST calls need (the app asks for it at registration)
    template: str = ""
    script: str = ""
    entity_keys: tuple[str, ...] = ()
    answer_key: str = "entity"
    # Load commands whose failure only leaves a detail blank (a stage's name, a person's name).
    optional_commands: tuple[str, ...] = ()
    actions: dict[str, str] = {}
    # What the page and the answers say that names the entity (lazy translations), by the key
    # placements/states.py looks up: "<state>_title"/"<state>_text" for a state of the frame,
    # "gone"/"refused_note" for a failed action's note, "done_<action>" for a finished one.
    words: dict = {
        "title": _("Widget"),
        "not_found_title": _("Not found"),
        "not_found_text": _("It may have been deleted, or you do not have access to it."),
        "unreachable_title": _("Could not load the data"),
        "error_title": _("Could not load the data"),
        "error_text": _("Bitrix24 could not pass the data to the app just now. Try again in a minute."),
        "gone": _("It is gone, or you no longer have access to it."),
        "refused_note": _("Bitrix24 did not allow this. The widget shows how things are now."),
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A subclass names only the words it changes; the others come from its bases.
        merged: dict = {}
        for base in reversed(cls.__mro__):
            merged.update(base.__dict__.get("words", {}))
        cls.words = merged

    @classmethod
    def entity_id(cls, options: dict) -> str:
        """The numeric entity id from PLACEMENT_OPTIONS, or PayloadError (a 400)."""
        value = next((options[key] for key in cls.entity_keys if key in options), None)
        if value is None or (isinstance(value, str) and value.strip() in ("", "undefined")):
            raise PayloadError(f"PLACEMENT_OPTIONS has no {' or '.join(cls.entity_keys)}.")
        text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not is_ascii_number(text) or len(text) > 18 or int(text) == 0:
            raise PayloadError(f"The {cls.entity_keys[0]} in PLACEMENT_OPTIONS must be a positive number.")
        return text

    @classmethod
    def load_commands(cls, entity_id: str) -> dict[str, tuple[str, dict]]:
        """The batch commands (besides the viewer's ``profile``) that load the entity.

        A later command may use an earlier one's answer (``$result[deal][STAGE_ID]``, protocol 4.6),
        so the entity and what names its parts come in the one request.
        """
        raise NotImplementedError

    @classmethod
    def is_missing(cls, error) -> bool:
        """Does this error of a load command mean "no such entity, or not for this viewer"?
        (Then the page says not found; any other error is Bitrix24 failing.)"""
        return isinstance(error, errors.AccessDenied)

    @classmethod
    def view(cls, results: dict, *, origin: str, options: dict, viewer_id: int | None) -> dict | None:
        """The entity as the template and the action answer show it; None when missing/forbidden."""
        raise NotImplementedError

    @classmethod
    def action_command(cls, action: str, entity_id: str) -> tuple[str, dict] | None:
        """The REST call an action makes before the entity is fetched again (None for reload)."""
        method = cls.actions.get(action)
        return None if method is None else (method, cls.action_params(entity_id))

    @classmethod
    def action_params(cls, entity_id: str) -> dict:
        raise NotImplementedError

    @classmethod
    def action_names(cls) -> tuple[str, ...]:
        return ("reload", *cls.actions)


_REGISTRY: dict[str, type[Placement]] = {}


def register(cls: type[Placement]) -> type[Placement]:
    _REGISTRY[cls.code] = cls
    return cls


def unregister(code: str) -> None:
    _REGISTRY.pop(code, None)


def served_codes() -> list[str]:
    """B24_PLACEMENTS, upper-cased, in its order."""
    return [code.strip().upper() for code in settings.B24_PLACEMENTS if code and code.strip()]


def get(code: str) -> type[Placement] | None:
    """The placement with this code if the app serves it (registered and in B24_PLACEMENTS)."""
    return _REGISTRY.get(code) if code in served_codes() else None


def all_placements() -> list[type[Placement]]:
    """Every placement the app binds and serves, in B24_PLACEMENTS order."""
    return [_REGISTRY[code] for code in served_codes() if code in _REGISTRY]


def required_scopes() -> list[str]:
    """The scopes the app asks for when it is registered: ``placement``, and each served
    placement's own (an administrator grants these, and Bitrix24 refuses calls outside them)."""
    return sorted({"placement"} | {placement.scope for placement in all_placements() if placement.scope})


def autodiscover() -> None:
    """Import every module of ``placements.kinds`` (each registers its placements): called in
    ``PlacementsConfig.ready()``, so registering never depends on an import happening by chance."""
    package = importlib.import_module("placements.kinds")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def check_served_placements(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """``manage.py check`` (and every start): each code in B24_PLACEMENTS must be registered."""
    unknown = [code for code in served_codes() if code not in _REGISTRY]
    return [
        checks.Error(
            f"B24_PLACEMENTS names {code!r}, which no placement class registers.",
            hint=f"Registered placements: {', '.join(sorted(_REGISTRY)) or 'none'}.",
            id="placements.E001",
        )
        for code in unknown
    ]
