"""Server subprocesses for the benchmarks: started pinned to a core, waited for, stopped by PID.

The load generator must not share a core with the server (an httpx client on the same core
measures itself), so the server runs under ``taskset`` on core 0 and wrk on core 1. Every
process started here is stopped here, by its own process group id, never by name.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
CLIENT_CORE = 1


def cores() -> int:
    return len(os.sched_getaffinity(0))


def taskset(core: int) -> list[str]:
    """Pin to ``core``, and ask the scheduler for a little priority over the machine's other
    jobs (these machines are shared: a benchmark that competes at equal priority with a
    test suite measures the test suite)."""
    nice = ["nice", "-n", "-5"] if os.geteuid() == 0 else []
    return [*nice, "taskset", "-c", str(core)] if cores() > 1 else nice


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(port: int, path: str, timeout: float = 60.0) -> float:
    """Seconds until ``GET path`` answers 2xx/4xx (the app is serving), polling every 5 ms."""
    start = time.perf_counter()
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() - start < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(request)
                head = s.recv(64)
            if head.startswith(b"HTTP/1.1 2") or head.startswith(b"HTTP/1.1 4"):
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.005)
    raise TimeoutError(f"nothing answered on port {port} within {timeout} s")


@contextmanager
def server(
    env: dict[str, str],
    port: int,
    *,
    workers: int = 1,
    bare: bool = False,
    pin: bool = True,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m bench.server`` on ``port``; yields once ``/bench/trivial`` answers."""
    cmd = [sys.executable, "-m", "bench.server", "--port", str(port), "--workers", str(workers)]
    if bare:
        cmd.append("--bare")
    if pin and workers == 1:
        cmd = taskset(SERVER_CORE) + cmd
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=out,
        stderr=out,
        start_new_session=True,
    )
    try:
        wait_http(port, "/bench/trivial")
        yield proc
        alive(proc, "the bench server")
    finally:
        stop(proc)
        if log:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group this module started, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def free_port(start: int = 18100, end: int = 19000) -> int:
    """A free loopback port below 32768 (client ports start there and linger in TIME-WAIT).

    The search starts at a random port of the range: two benchmarks started at once (the test
    suite runs the SQLite and PostgreSQL variants side by side) each found the range's first
    free port, and the second server's senders then talked to the first one's listener.
    """
    first = random.randrange(start, end)
    for port in [*range(first, end), *range(start, first)]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def alive(proc: subprocess.Popen[bytes], what: str) -> None:
    """Raise unless ``proc`` still runs: a server that could not bind its port exits, and
    whatever answered on that port was someone else's."""
    if proc.poll() is not None:
        raise RuntimeError(f"{what} exited with {proc.returncode} (was its port taken?)")


J = TypeVar("J")
T = TypeVar("T")


def in_order(
    pool: ProcessPoolExecutor, fn: Callable[[J], T], jobs: Iterable[J], ahead: int
) -> Iterator[T]:
    """``fn(job)`` for each job in a worker, yielded in job order with at most ``ahead`` in
    flight, so results made faster than the caller consumes them do not pile up in memory
    (``pool.map`` submits every job at once)."""
    pending: deque[Future[T]] = deque()
    for job in jobs:
        pending.append(pool.submit(fn, job))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
