"""The benchmark's multi-process server: each process listens on the port with a socket of its
own (SO_REUSEPORT), so the kernel shares a client's connections among them.

Written for issue 8: with ``uvicorn --workers`` the processes shared one socket, and wrk's 32
keep-alive connections could all land on one of them (two workers measured 0.94x one worker
in one run, 2.14x in another, on the same index).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.processes import server
from bench.run import free_port


def _listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on ``port`` (IPv4), from /proc/net/tcp."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for line in lines
        if (fields := line.split()) and fields[3] == "0A" and fields[1].endswith(f":{port:04X}")
    )


def test_two_processes_listen_each_on_its_own_socket() -> None:
    port = free_port()
    with server({}, port, workers=2, bare=True, pin=False) as proc:
        assert _listening_sockets(port) == 2
        answers = []
        for _ in range(20):  # fresh connections: each one is shared out by the kernel
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                answers.append(client.get("/bench/trivial").status_code)
        assert answers == [200] * 20
        assert proc.poll() is None and _listening_sockets(port) == 2  # both still serving
    assert _listening_sockets(port) == 0


def test_one_process_listens_once() -> None:
    port = free_port()
    with server({}, port, workers=1, bare=True, pin=False):
        assert _listening_sockets(port) == 1
