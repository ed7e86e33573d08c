"""The benchmark's output: one row per figure (value, target, PASS/FAIL) and the machine it ran on."""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One line of the table. ``ok`` None means "measured, no target" (printed as a dash)."""

    metric: str
    value: str
    target: str = "-"
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "FAIL")


def table(rows: list[Row]) -> str:
    """A plain-text table that reads the same in a terminal and in a Markdown code block."""
    header = Row("metric", "value", "target")
    cells = [(r.metric, r.value, r.target, "result" if r is header else r.verdict) for r in [header, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{rev}{' (+ uncommitted changes)' if dirty else ''}"


def machine(*, database: str, workers: str) -> list[tuple[str, str]]:
    """What the figures depend on, printed above the table."""
    kib = _first("/proc/meminfo", "MemTotal")
    ram = f"{int(kib.split()[0]) / 1024 / 1024:.1f} GiB" if kib[:1].isdigit() else "?"
    return [
        ("machine", f"{os.cpu_count()} CPUs ({_first('/proc/cpuinfo', 'model name')}), {ram} RAM, "
                    f"{platform.system()} {platform.release()}"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("database", database),
        ("server", workers),
        ("code", git_revision()),
    ]
