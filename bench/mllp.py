"""MLLP ingest with concurrent senders: the exchange's real listener, over real TCP.

    python -m bench.mllp --port 2575 --city bench/out/data-small/city-small --limit 400 --out a.json

(that is the sender process alone; ``bench.run`` calls :func:`run_mllp`, which starts the
server and then this sender.)

``run_mllp`` starts ``hie serve`` (pinned to the server core) with a hospitals file that gives
the city one ``hl7v2-mllp`` adapter whose facility map (MSH-4 → hospital) serves every
hospital on one port, against a fresh database; then a sender process pinned to the other
core opens ``senders`` connections at once and sends its share of the city's ORU^R01 messages
on each, MLLP-framed (``0x0B`` message ``0x1C 0x0D``, HL7 v2.5.1 Appendix C), waiting for each
ACK before the next message, as MLLP requires. Messages are shared out by their order number
(OBR-3), so a correction follows its original on the same connection.

Afterwards the database is checked: it must hold exactly the results acknowledged AA
(distinct ``{OBR-3}.{OBX-3}`` of the AA messages, the Observation identifier both paths use).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.processes import (
    CLIENT_CORE,
    ROOT,
    SERVER_CORE,
    alive,
    free_port,
    stop,
    taskset,
    wait_http,
)

START, END = b"\x0b", b"\x1c\x0d"
SECRET = "bench-secret-" + "x" * 32


def select_messages(city: Path, limit: int) -> list[bytes]:
    """Up to ``limit`` messages, taken in file order from every hospital in turn (so a subset
    still comes from the whole city), as bodies with CR-terminated segments."""
    from adapters.hl7v2.framing import split_messages

    folders = sorted(p for p in (city / "hl7").iterdir() if p.is_dir())
    per = 2 * -(-limit // max(len(folders), 1))  # enough to make up for small hospitals
    queues: list[list[bytes]] = []
    for folder in folders:
        mine: list[bytes] = []
        for path in sorted(folder.glob("*.hl7")):
            mine += [f.body for f in split_messages(path.read_bytes())]
            if len(mine) >= per:
                break
        queues.append(mine[:per])
    out: list[bytes] = []
    for n in range(max((len(q) for q in queues), default=0)):
        out += [q[n] for q in queues if n < len(q)]
    return out[:limit]


def _field(body: bytes, segment: bytes, n: int) -> bytes:
    """Field ``n`` of the first ``segment`` (MSH counts its separator as field 1)."""
    for seg in body.split(b"\r"):
        if seg.startswith(segment + b"|"):
            parts = seg.split(b"|")
            n = n - 1 if segment == b"MSH" else n
            return parts[n].split(b"^")[0] if n < len(parts) else b""
    return b""


def result_keys(body: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(hospital MSH-4, order OBR-3, test OBX-3) of each OBX: one Observation each."""
    hospital, order = _field(body, b"MSH", 4), _field(body, b"OBR", 3)
    return [
        (hospital, order, seg.split(b"|")[3].split(b"^")[0])
        for seg in body.split(b"\r")
        if seg.startswith(b"OBX|")
    ]


@dataclass
class SendStats:
    senders: int
    messages: int = 0
    acks: dict[str, int] = field(default_factory=dict)  # MSA-1 → count
    results_aa: int = 0  # OBX segments in messages acknowledged AA
    distinct_results_aa: int = 0  # distinct (hospital, OBR-3, OBX-3) acknowledged AA
    seconds: float = 0.0
    first_error: str | None = None

    @property
    def results_per_s(self) -> float:
        return self.results_aa / self.seconds if self.seconds else 0.0


async def _sender(
    port: int, messages: list[bytes], stats: SendStats, keys: set[tuple[bytes, ...]]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for body in messages:
            writer.write(START + body + END)
            await writer.drain()
            ack = await reader.readuntil(END)
            code = _field(ack.strip(b"\x0b\x1c\r"), b"MSA", 1).decode() or "?"
            stats.acks[code] = stats.acks.get(code, 0) + 1
            stats.messages += 1
            if code == "AA":
                found = result_keys(body)
                stats.results_aa += len(found)
                keys.update(found)
            elif stats.first_error is None:
                stats.first_error = _field(ack.strip(b"\x0b\x1c\r"), b"ERR", 8).decode()[:200]
    finally:
        writer.close()


def shares(messages: list[bytes], senders: int) -> list[list[bytes]]:
    """Each sender's messages, by order number: an order's versions stay in sequence."""
    out: list[list[bytes]] = [[] for _ in range(senders)]
    for body in messages:
        out[zlib.crc32(_field(body, b"OBR", 3)) % senders].append(body)
    return out


async def send_all(port: int, messages: list[bytes], senders: int) -> SendStats:
    stats = SendStats(senders)
    keys: set[tuple[bytes, ...]] = set()
    started = time.perf_counter()
    await asyncio.gather(*(_sender(port, s, stats, keys) for s in shares(messages, senders) if s))
    stats.seconds = time.perf_counter() - started
    stats.distinct_results_aa = len(keys)
    return stats


# -- the server side ------------------------------------------------------------------------


def mllp_config(city: Path, port: int, dest: Path) -> Path:
    """The city's hospitals file plus one MLLP listener serving every hospital by MSH-4."""
    text = (city / "hospitals.toml").read_text("utf-8")
    ids = json.loads((city / "city.json").read_text())["files"].keys()
    facility = ", ".join(f'{h} = "{h}"' for h in sorted(ids))
    dest.write_text(
        text.rstrip()
        + "\n\n[[hospital.adapter]]\n"
        + 'name = "bench-mllp"\nkind = "hl7v2-mllp"\nhost = "127.0.0.1"\n'
        + f"port = {port}\nfacility = {{ {facility} }}\n",
        "utf-8",
    )
    return dest


def wait_tcp(port: int, timeout: float = 60.0) -> None:
    import socket

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"no MLLP listener on port {port} within {timeout} s")


@dataclass
class MllpReport:
    stats: SendStats
    observations: int  # Observation rows in the index afterwards
    server_cpu_s: float


def stored_observations(db: str) -> int:
    from sqlalchemy import text

    from hie.index.store import create_engine

    engine = create_engine(db)
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM resource WHERE type = 'Observation' AND NOT deleted")
        ).scalar_one()
    engine.dispose()
    return int(n)


def run_mllp(
    db: str, city: Path, limit: int, work: Path, *, senders: int = 20
) -> tuple[MllpReport, list[bytes]]:
    """Fresh ``db``, ``hie serve`` with the MLLP listener, the senders in their own process."""
    from bench.floors import fresh_database
    from bench.processes import cpu_seconds

    fresh_database(db)
    mllp_port, http_port = free_port(), free_port(19000, 19900)
    config = mllp_config(city, mllp_port, work / "hospitals-mllp.toml")
    hie = Path(sys.executable).with_name("hie")
    env = {
        **os.environ,
        "HIE_DATABASE_URL": db,
        "HIE_JWT_SECRET": SECRET,
        "HIE_CONFIG_FILE": str(config),
    }
    log = (work / "mllp-server.log").open("ab")
    proc = subprocess.Popen(
        [*taskset(SERVER_CORE), str(hie), "serve", "--port", str(http_port)],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    report = work / "mllp-senders.json"
    try:
        wait_http(http_port, "/fhir/metadata")
        wait_tcp(mllp_port)
        cpu0 = cpu_seconds(proc.pid)
        cmd = [
            *taskset(CLIENT_CORE),
            sys.executable,
            "-m",
            "bench.mllp",
            "--port",
            str(mllp_port),
            "--city",
            str(city),
            "--limit",
            str(limit),
            "--senders",
            str(senders),
            "--out",
            str(report),
        ]
        subprocess.run(cmd, cwd=ROOT, check=True)
        cpu = cpu_seconds(proc.pid) - cpu0
        alive(proc, "hie serve")
    finally:
        stop(proc)
        log.close()
    data = json.loads(report.read_text())
    stats = SendStats(**data)
    return MllpReport(stats, stored_observations(db), cpu), select_messages(city, limit)


def main() -> None:
    """The sender process: select the messages, send them, write the counts as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--city", type=Path, required=True)
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    messages = select_messages(args.city, args.limit)
    stats = asyncio.run(send_all(args.port, messages, args.senders))
    args.out.write_text(json.dumps(asdict(stats), indent=1))


if __name__ == "__main__":
    main()
