"""The widget's palette reaches WCAG AA: 4.5:1 for every text colour on the background it sits on.

The colours live as custom properties in templates/placements/base.html; every colour rule there
must use one of them, so this list of pairs covers what the page can show.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "placements"
BASE = TEMPLATES / "base.html"
STYLED = [BASE, TEMPLATES / "task_view_top_panel.html"]  # every template with a <style> of its own
AA_TEXT = 4.5

# (text colour, background) as the page pairs them.
TEXT_PAIRS = [
    ("--text", "--white"), ("--muted", "--white"), ("--muted", "--panel"), ("--red", "--white"),
    ("--link", "--white"), ("--button-text", "--white"), ("--button-text", "--panel"),
    ("--white", "--blue"), ("--white", "--blue-dark"), ("--text", "--green"),
    ("--text", "--green-dark"), ("--white", "--red"), ("--white", "--avatar"),
    ("--badge-text", "--badge"), ("--badge-progress-text", "--badge-progress"),
    ("--badge-control-text", "--badge-control"), ("--badge-done-text", "--badge-done"),
    ("--badge-off-text", "--badge-off"), ("--text", "--panel"),
]


def palette() -> dict[str, str]:
    style = BASE.read_text(encoding="utf-8")
    root = re.search(r":root\s*\{(.*?)\}", style, re.S).group(1)
    return dict(re.findall(r"(--[a-z-]+):\s*(#[0-9a-fA-F]{6})", root))


def luminance(hex_colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_formula_matches_known_values():
    assert round(contrast("#ffffff", "#000000"), 1) == 21.0
    assert round(contrast("#ffffff", "#2fc6f6"), 2) == 1.99  # the old Start button (issue 13)


@pytest.mark.parametrize("text, background", TEXT_PAIRS)
def test_text_reaches_aa_contrast(text, background):
    colours = palette()
    ratio = contrast(colours[text], colours[background])
    assert ratio >= AA_TEXT, f"{text} on {background}: {ratio:.2f}:1"


@pytest.mark.parametrize("template", STYLED, ids=lambda path: path.name)
def test_every_colour_rule_uses_the_palette(template):
    rules = re.sub(r":root\s*\{.*?\}", "", template.read_text(encoding="utf-8"), flags=re.S)
    raw = re.findall(r"(?:^|[;{\s])((?:color|background(?:-color)?)\s*:\s*#[0-9a-fA-F]{3,6})", rules)
    assert raw == [], raw


@pytest.mark.parametrize("template", STYLED, ids=lambda path: path.name)
def test_no_text_is_smaller_than_11px(template):
    sizes = [int(size) for size in re.findall(r"font-size:\s*(\d+)px", template.read_text(encoding="utf-8"))]
    assert not sizes or min(sizes) >= 11, sizes
