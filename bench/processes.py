"""The two servers the benchmark starts: the fake Bitrix24 and the app under gunicorn.

Each runs in its own process so that neither shares a GIL with the load generator; both listen on
loopback only and are stopped (by their own pid) when the benchmark ends.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench.report import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FakeProcess:
    """``python -m fake_bitrix24`` and its JSON control API (``POST /_fake/{command}``)."""

    def __init__(self, logdir: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fake_bitrix24",
             "--oauth-port", str(free_port()), "--portal-port", str(free_port())],
            cwd=REPO, stdout=subprocess.PIPE, stderr=open(Path(logdir) / "fake.log", "wb"), text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fake Bitrix24 did not start (see {logdir}/fake.log)")
        self.info = json.loads(line)
        self.oauth_url = self.info["oauth_url"]

    def __call__(self, command: str, **args):
        request = urllib.request.Request(
            f"{self.oauth_url}/_fake/{command}", data=json.dumps(args).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def outbound(self) -> dict[str, int]:
        """Requests the app sent since the last reset, by method ("batch", "oauth/token", ...)."""
        return self("counts")["by_method"]

    def stop(self) -> None:
        _stop(self.proc)


class GunicornProcess:
    """The app as it is deployed: ``gunicorn bitrix_widget.wsgi`` (with gunicorn.conf.py if present)."""

    def __init__(self, *, env: dict, workers: int, logdir: str, threads: int | None = None,
                 worker_class: str | None = None):
        self.port, self.workers = free_port(), workers
        self.config = REPO / "gunicorn.conf.py"
        self.command = [sys.executable, "-m", "gunicorn", "bitrix_widget.wsgi"]
        if self.config.exists():
            self.command += ["-c", str(self.config)]
        self.command += ["-w", str(workers), "-b", f"127.0.0.1:{self.port}"]
        if worker_class:  # e.g. "sync": the serving model before issue 11, for a same-run baseline
            self.command += ["-k", worker_class]
            if worker_class == "sync":  # gunicorn turns sync with threads > 1 into gthread
                self.command += ["--threads", "1"]
        if threads:  # through the environment, as deployed: the settings derive from it too
            env = {**env, "GUNICORN_THREADS": str(threads)}
        self.threads = 1 if worker_class == "sync" else int(env.get("GUNICORN_THREADS") or 32)
        self.log = Path(logdir) / "gunicorn.log"
        self.proc = subprocess.Popen(self.command, cwd=REPO, env=env, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT)
        self._wait_ready(workers)
        self.peaks: dict[int, int] = {}  # worker pid -> VmHWM KiB (workers recycle: sample as we go)
        self._sampling = threading.Event()
        threading.Thread(target=self._sample_memory, daemon=True).start()

    @property
    def describe(self) -> str:
        conf = " -c gunicorn.conf.py" if self.config.exists() else ""
        kind = f" -k {self.command[self.command.index('-k') + 1]}" if "-k" in self.command else ""
        return (f"gunicorn bitrix_widget.wsgi{conf} -w {self.workers}{kind}"
                f" (GUNICORN_THREADS={self.threads})")

    def _wait_ready(self, workers: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    if r.status == 200 and len(self.worker_pids()) >= workers:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f} s: see {self.log}")

    def worker_pids(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return sorted(pids)

    @staticmethod
    def peak_memory_kib(pid: int) -> int | None:
        """VmHWM: the most resident memory the process ever had."""
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def _sample_memory(self) -> None:
        while not self._sampling.wait(0.25):
            for pid in self.worker_pids():
                peak = self.peak_memory_kib(pid)
                if peak:
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0))

    def stop(self) -> None:
        self._sampling.set()
        _stop(self.proc)


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of a process (and of its reaped children, for gunicorn's master)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / TICK


def machine_busy_seconds() -> float:
    """CPU seconds spent by everything on the machine (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICK


class CpuMeter:
    """CPU used during a measurement by the app, the fake, this process and the rest of the machine
    (the database server, the kernel): where the time of a request goes."""

    def __init__(self, *, server: "GunicornProcess", fake: "FakeProcess"):
        self.server, self.fake = server, fake

    def _snapshot(self) -> dict[str, float]:
        app = cpu_seconds(self.server.proc.pid, children=True) + sum(
            cpu_seconds(pid) for pid in self.server.worker_pids())
        mine = sum(os.times()[:2])
        return {"app": app, "fake": cpu_seconds(self.fake.proc.pid), "load generator": mine,
                "total": machine_busy_seconds()}

    def __enter__(self) -> "CpuMeter":
        self.start = self._snapshot()
        return self

    def __exit__(self, *exc) -> None:
        end = self._snapshot()
        self.used = {k: end[k] - self.start[k] for k in end}
        self.used["other"] = max(0.0, self.used.pop("total") - sum(self.used.values()))

    def per_request_ms(self, requests: int) -> str:
        if not requests:
            return "n/a"
        return ", ".join(f"{k} {1000 * v / requests:.1f}" for k, v in self.used.items()) + " ms"


def url_open(url: str, *, data: bytes | None = None, timeout: float = 30) -> tuple[int, str]:
    """One plain request (setup steps, not measured); (status, body) also for 4xx/5xx."""
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def kill_children_on_exit(processes: list) -> None:
    """Stop what we started, even when the benchmark itself fails half-way."""
    for p in reversed(processes):
        try:
            p.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass

