"""The apps depend one way: placements and events build on portals, never the reverse."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("upper_app", ["placements", "events"])
def test_portals_imports_nothing_from_the_apps_built_on_it(upper_app):
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "portals").rglob("*.py"))
        for name in _imported_modules(path)
        if name == upper_app or name.startswith(upper_app + ".")
    ]
    assert offenders == []
