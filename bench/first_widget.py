"""How long a newcomer waits: from ``./scripts/dev`` on a fresh clone to the first widget page.

    .venv/bin/python bench/first_widget.py               # clone HEAD, reuse this .venv
    .venv/bin/python bench/first_widget.py --fresh-venv  # also create the venv and pip install

It clones the repository into a temporary directory, runs the README's first command there with
no environment set (a loopback port of its own), then does what the newcomer's browser does:
``/``, the demo portal (install page, then the task card), and the card's form POST into the
widget handler. Prints one line per step with the seconds since the command started.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


class _FrameForm(HTMLParser):
    """The sandbox's ``#b24-frame-form``: the POST Bitrix24 makes into an app frame."""

    def __init__(self):
        super().__init__()
        self.action, self.fields, self._inside = None, {}, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "b24-frame-form":
            self.action, self._inside = attrs["action"], True
        elif tag == "input" and self._inside:
            self.fields[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._inside = False


def frame_form(page: str) -> tuple[str | None, dict]:
    """(action, fields) of the page's frame form; (None, {}) when it has none."""
    parser = _FrameForm()
    parser.feed(page)
    return parser.action, parser.fields


def widget_action_target(page: str) -> tuple[str, str]:
    """The widget page's action URL and signed token (ARCHITECTURE.md, "The widget")."""
    url = re.search(r'data-action-url="([^"]+)"', page).group(1)
    token = re.search(r'data-action-token="([^"]+)"', page).group(1)
    return html.unescape(url), html.unescape(token)


class SandboxVisitor:
    """A browser without JavaScript: what the sandbox's pages would make the browser do, by hand."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=30, **kwargs)

    def submit_frame(self, page: str) -> requests.Response:
        """The frame's form POST, cookie-less as a cross-site frame POST is."""
        action, fields = frame_form(page)
        assert action, "the page has no frame form"
        return requests.post(action, data=fields, timeout=30)

    def open_portal(self, path: str = "/sandbox/") -> requests.Response:
        """The demo portal's page at ``path``, installing the app first when the portal asks to."""
        page = self.get(path)
        if 'id="install-step"' in page.text or 'id="not-installed"' in page.text:
            step = page if 'id="install-step"' in page.text else self.get("/sandbox/")
            installed = self.submit_frame(step.text)
            assert installed.status_code == 200 and 'data-ok="1"' in installed.text, installed.text[:2000]
            page = self.get(path)
        return page

    def control(self, name: str, **data) -> dict:
        """A sandbox control button (the same POST its script makes, CSRF token included)."""
        self.get("/sandbox/")  # the csrftoken cookie
        token = self.session.cookies.get("csrftoken", "")
        answer = self.session.post(
            f"{self.base_url}/sandbox/controls/{name}/", data=data, headers={"X-CSRFToken": token}, timeout=60
        )
        answer.raise_for_status()
        return answer.json()


def start_dev(clone: Path, port: int, extra_env: dict | None = None) -> subprocess.Popen:
    """``./scripts/dev`` with no environment but PATH and HOME, in its own process group."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "ADDRPORT": f"127.0.0.1:{port}", **(extra_env or {})}
    return subprocess.Popen(
        ["./scripts/dev"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_dev(proc: subprocess.Popen) -> None:
    """The dev server and its autoreloader child: the process group this module started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_until_up(base_url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"./scripts/dev exited with {proc.returncode}: {proc.stdout.read().decode()[-3000:]}")
        try:
            if requests.get(base_url + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError("./scripts/dev did not answer /healthz in time")


def clone_repository(target: Path, *, venv: Path | None) -> Path:
    """``git clone`` of this repository's HEAD; ``venv`` (when given) is linked in as ``.venv``."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    if venv is not None:
        (target / ".venv").symlink_to(venv)
    return target


def copy_working_tree(target: Path, *, venv: Path) -> Path:
    """What a clone of the current work would hold: tracked and new files, nothing ignored
    (no db.sqlite3, no .env, no collected static files)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, check=True,
        capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(venv)
    return target


def measure(*, fresh_venv: bool, port: int) -> list[tuple[str, float]]:
    """Seconds from the command to each step the newcomer sees."""
    work = Path(tempfile.mkdtemp(prefix="first-widget-"))
    try:
        clone = clone_repository(work / "clone", venv=None if fresh_venv else Path(sys.prefix))
        base_url = f"http://127.0.0.1:{port}"
        start = time.monotonic()
        proc = start_dev(clone, port)
        try:
            steps = []
            wait_until_up(base_url, proc)
            steps.append(("/healthz answers", time.monotonic() - start))
            visitor = SandboxVisitor(base_url)
            assert visitor.get("/").status_code == 200
            steps.append(("/ answers", time.monotonic() - start))
            card = visitor.open_portal()
            steps.append(("demo portal installed, task card shown", time.monotonic() - start))
            widget = visitor.submit_frame(card.text)
            assert widget.status_code == 200 and 'id="b24-widget"' in widget.text, widget.text[:2000]
            steps.append(("first widget page", time.monotonic() - start))
            return steps
        finally:
            stop_dev(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh-venv", action="store_true", help="let scripts/dev create the venv and install")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    args = parser.parse_args(argv)
    if __package__ in (None, ""):
        sys.path[0] = str(REPO)
    from bench.processes import free_port

    steps = measure(fresh_venv=args.fresh_venv, port=args.port or free_port())
    print(f"./scripts/dev on a fresh clone ({'new venv' if args.fresh_venv else 'existing venv'}):")
    for name, seconds in steps:
        print(f"  {seconds:6.1f} s  {name}")


if __name__ == "__main__":
    main()
