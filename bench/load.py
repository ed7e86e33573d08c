"""A small concurrent HTTP load generator: asyncio, one connection per request, loopback only.

Lean on purpose: it shares the machine with the server and the fake Bitrix24, so it must not be
what limits the figures. Bounded by a request count and a time limit, whichever comes first.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlencode


def raw_request(*, port: int, method: str, path: str, body: dict | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request (form-encoded body), ``Connection: close``."""
    data = urlencode(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
            "User-Agent: bench/1.0", "Accept: text/html,application/json"]
    if body is not None:
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(data)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful answers only
    statuses: Counter = field(default_factory=Counter)  # "200", "503", "error: ConnectionResetError"
    bodies: list[bytes] = field(default_factory=list)  # first few non-2xx answers, for diagnosis

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("2"))

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Milliseconds (nearest-rank), over the answered requests."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    def status_summary(self) -> str:
        return ", ".join(f"{n}x{s}" for s, n in sorted(self.statuses.items()))


async def _exchange(port: int, raw: bytes, timeout: float) -> tuple[str, bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
    status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "error: no status line"
    return status, data


async def _run(port, make: Callable[[int], bytes], total, concurrency, max_seconds, timeout,
               pause_after_error: float = 0.0) -> LoadResult:
    result = LoadResult()
    issued = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker():
        nonlocal issued
        while issued < total and time.perf_counter() < deadline:
            raw = make(issued)
            issued += 1
            t0 = time.perf_counter()
            try:
                status, data = await _exchange(port, raw, timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                status, data = f"error: {type(exc).__name__}", b""
            result.statuses[status] += 1
            if status.startswith("2"):
                result.latencies.append(time.perf_counter() - t0)
            elif len(result.bodies) < 3:
                result.bodies.append(data[:2000])
            if pause_after_error and not status.startswith("2"):
                await asyncio.sleep(pause_after_error)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    result.requests = issued
    return result


def run_load(*, port: int, make: Callable[[int], bytes], total: int, concurrency: int,
             max_seconds: float = 30.0, timeout: float = 30.0) -> LoadResult:
    """Send up to ``total`` requests (``make(i)`` builds the i-th), ``concurrency`` at a time."""
    return asyncio.run(_run(port, make, total, concurrency, max_seconds, timeout))


def run_side_by_side(*, port: int, groups: list[tuple[Callable[[int], bytes], int]], seconds: float,
                     timeout: float = 30.0, head_start: float = 0.0,
                     pause_after_error: tuple[float, ...] = ()) -> list[LoadResult]:
    """Several loads at once on one server for ``seconds``, each ``(make, concurrency)``; one
    result per group. The groups after the first start ``head_start`` seconds later (the first,
    say a slow portal's crowd, is already holding what it holds). ``pause_after_error[n]``: how
    long group n's clients wait after a non-2xx answer before their next request."""

    async def both():
        async def group(n, make, concurrency):
            if n and head_start:
                await asyncio.sleep(head_start)
            pause = pause_after_error[n] if n < len(pause_after_error) else 0.0
            return await _run(port, make, 10**9, concurrency, seconds - (head_start if n else 0), timeout, pause)

        return await asyncio.gather(*(group(n, make, c) for n, (make, c) in enumerate(groups)))

    return list(asyncio.run(both()))
