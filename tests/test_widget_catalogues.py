"""Every sentence a widget view or the widget page's script can show is in every catalogue.

The msgids are read from the sources themselves (gettext calls in placements/, translate tags in
the widget templates), so a new English string without its translations fails here, not in front
of a person reading Russian.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.utils import translation

from placements import states
from placements.services import widget_language
from portals.payload import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = [lang for lang in LANGUAGES if lang != "en"]
GETTEXT_NAMES = {"_", "gettext", "gettext_lazy", "ngettext", "pgettext", "pgettext_lazy"}
TEMPLATE_STRING = re.compile(r"""\{%\s*translate\s+(["'])(.+?)\1\s*%\}|_\((["'])(.+?)\3\)""")
BLOCK_STRING = re.compile(r"\{%\s*blocktranslate[^%]*%\}(.*?)\{%\s*endblocktranslate\s*%\}", re.S)
# The widget's pages, and the install page a person sees in Bitrix24's frame.
TEMPLATE_FILES = ("placements/*.html", "portals/install.html")


def _python_msgids(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in GETTEXT_NAMES:
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def widget_msgids() -> set[str]:
    msgids = set()
    for path in sorted((ROOT / "placements").rglob("*.py")):
        msgids |= _python_msgids(path)
    for path in sorted(p for pattern in TEMPLATE_FILES for p in (ROOT / "templates").glob(pattern)):
        text = path.read_text(encoding="utf-8")
        for match in TEMPLATE_STRING.finditer(text):
            msgids.add(match.group(2) or match.group(4))
        for match in BLOCK_STRING.finditer(text):
            msgids.add(re.sub(r"\{\{\s*(\w+)\s*\}\}", r"%(\1)s", match.group(1)))
    return msgids


def po_entries(lang: str) -> dict[str, tuple[str, bool]]:
    """msgid -> (msgstr, fuzzy) over every catalogue of ``lang`` (locale/ and the apps' own, as
    makemessages files them), single-form entries; a translated entry wins over an empty one."""
    entries: dict[str, tuple[str, bool]] = {}
    for path in (ROOT / "locale" / lang, ROOT / "placements" / "locale" / lang, ROOT / "portals" / "locale" / lang):
        po = path / "LC_MESSAGES" / "django.po"
        for msgid, entry in (_po_file(po) if po.exists() else {}).items():
            if entry[0] or msgid not in entries:
                entries[msgid] = entry
    return entries


def _po_file(po: Path) -> dict[str, tuple[str, bool]]:
    entries = {}
    for block in po.read_text(encoding="utf-8").split("\n\n"):
        lines = block.strip().splitlines()
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines)
        parts, current = {"msgid": [], "msgstr": []}, None
        for line in lines:
            if line.startswith(("msgid ", "msgstr ")):
                current, _, line = line.partition(" ")
            if current in parts and line.startswith('"'):
                parts[current].append(ast.literal_eval(line))
        msgid = "".join(parts["msgid"])
        if msgid:
            entries[msgid] = ("".join(parts["msgstr"]), fuzzy)
    return entries


def test_the_sources_name_the_widgets_sentences():
    msgids = widget_msgids()
    assert {"Task not found", "Try again", "Return to work", "One moment…", "The app is installed on %(domain)s"} <= msgids
    assert {str(text) for text in states.FAILED_NOTES.values()} <= msgids


@pytest.mark.parametrize("lang", CATALOGUES)
def test_every_widget_message_is_translated_in_the_catalogue(lang):
    entries = po_entries(lang)
    missing = sorted(msgid for msgid in widget_msgids() if not entries.get(msgid, ("", False))[0])
    fuzzy = sorted(msgid for msgid in widget_msgids() if entries.get(msgid, ("", False))[1])
    assert not missing, f"{lang}: no translation for {missing}"
    assert not fuzzy, f"{lang}: fuzzy (unchecked) translations for {fuzzy}"


@pytest.mark.parametrize("lang", CATALOGUES)
def test_every_widget_message_is_translated_at_run_time(lang):
    """The compiled catalogue (.mo) is what Django reads: no English left after compilemessages."""
    same_word = {msgid for msgid, (msgstr, _) in po_entries(lang).items() if msgstr == msgid}  # "Widget" in de
    with translation.override(lang):
        english = sorted(
            msgid for msgid in widget_msgids() - same_word if translation.gettext(msgid) == msgid
        )
    # Django's own catalogue may know a short word; ours must still have it (checked above).
    assert not english, f"{lang}: {english} (run manage.py compilemessages)"


@pytest.mark.parametrize("lang", CATALOGUES)
def test_every_message_the_page_script_shows_is_in_the_pages_language(lang):
    with translation.override("en"):
        english = states.page_messages()
    with translation.override(lang):
        local = states.page_messages()
    assert local.keys() == english.keys()
    same = [key for key in english if local[key] == english[key]]
    assert not same, f"{lang}: still English: {same}"


def test_the_page_scripts_write_no_sentence_of_their_own():
    """The scripts show only the page's messages: a quoted phrase in them would be English."""
    for name in ("_widget.js.html", "_actions.js.html"):
        script = (ROOT / "templates" / "placements" / name).read_text(encoding="utf-8")
        code = re.sub(r"/\*.*?\*/", "", script, flags=re.S)
        phrases = [s for s in re.findall(r'"([^"\n]*)"', code) if re.search(r"[A-Z][a-z]+ [a-z]+", s)]
        assert phrases == [], (name, phrases)


@pytest.mark.parametrize("bitrix_lang, ours", [("ua", "uk"), ("pl", "pl"), ("ru", "ru"), ("de", "de"),
                                               ("en", "en"), ("br", "en"), ("la", "en"), ("", "en")])
def test_bitrix24_lang_codes_map_to_our_catalogues(bitrix_lang, ours):
    assert widget_language(bitrix_lang) == ours
