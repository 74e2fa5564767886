"""The MLLP listener over real TCP on 127.0.0.1, driven by python-hl7's MLLPClient.

python-hl7's ``hl7.client.MLLPClient`` is a third-party MLLP sender (it frames with
0x0B … 0x1C 0x0D and blocks for the ACK), so these tests check the wire protocol against an
implementation hie did not write, with several senders at once.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import hl7
import pytest
from hl7.client import MLLPClient
from sqlalchemy import text

from adapters.base import Batch
from adapters.hl7v2.mllp import MllpConfig, MllpListener, RunningListener, run_in_thread
from adapters.hl7v2.timestamp import SHANGHAI
from hie import naming
from hie.exchange import Exchange
from hie.terminology import Terminology

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures" / "hl7v2"
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=SHANGHAI)


def oru(control: str, *, facility: str = "SZPH", value: str = "6.8", version: str = "2.5.1") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|SZPH-LIS|{facility}|HIE|SZHIE|20261115103012+0800||ORU^R01^ORU_R01|"
            f"{control}|P|{version}|||AL|NE|CHN|UNICODE UTF-8",
            "PID|1||SZ1001^^^SZPH^MR~440305198003151231^^^CHN^NNCHN||张^伟||19800315|M",
            f"OBR|1|P-{control}|F-{control}|XCG^血常规^L|||20261115081500+0800",
            f"OBX|1|NM|XC001^白细胞计数^L||{value}|10\\S\\9/L|3.5-9.5|N|||F",
        ]
    )


@dataclass
class Item:
    ok: bool
    issues: list[object] = field(default_factory=list)


@dataclass
class Outcome:
    items: list[Item]


@dataclass
class Issue:
    diagnostics: str
    expression: str | None = None


@dataclass
class FakeIngest:
    """Accepts every unit unless told otherwise; remembers every batch it was handed."""

    batches: list[Batch] = field(default_factory=list)
    refuse: bool = False
    explode: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, batch: Batch) -> Outcome:
        if self.explode and batch.units:
            raise RuntimeError("database is locked")
        with self.lock:
            self.batches.append(batch)
        if self.refuse:
            issue = Issue("value outside the profile", "Observation.valueQuantity")
            return Outcome([Item(False, [issue]) for _ in batch.units])
        return Outcome([Item(True) for _ in batch.units])


def ack_of(reply: bytes, encoding: str = "utf-8") -> hl7.Message:
    assert reply.startswith(b"\x0b") and reply.endswith(b"\x1c\r")
    return hl7.parse(reply[1:-2].decode(encoding))


def field_of(msg: hl7.Message, seg: str, n: int) -> str:
    return str(msg.segment(seg)(n))


@pytest.fixture
def fake() -> FakeIngest:
    return FakeIngest()


@pytest.fixture
def server(fake: FakeIngest) -> Iterator[RunningListener]:
    listener = MllpListener(
        fake,
        MllpConfig(hospital_id="szph", adapter="lis-mllp"),
        terminology=Terminology.load(ROOT / "fhir_profiles"),
        clock=lambda: NOW,
    )
    running = run_in_thread(listener, "127.0.0.1", 0)
    yield running
    running.stop()


def send(port: int, message: str | bytes) -> bytes:
    with MLLPClient("127.0.0.1", port) as client:
        reply: bytes = client.send_message(message)
        return reply


def test_aa_echoes_msh10_and_uses_the_message_header(
    server: RunningListener, fake: FakeIngest
) -> None:
    ack = ack_of(send(server.port, oru("SZ-0001")))
    assert field_of(ack, "MSA", 1) == "AA" and field_of(ack, "MSA", 2) == "SZ-0001"
    msh = ack.segment("MSH")
    assert str(msh(9)) == "ACK^R01^ACK" and str(msh(12)) == "2.5.1"
    assert str(msh(3)) == "HIE" and str(msh(5)) == "SZPH-LIS" and str(msh(6)) == "SZPH"
    assert str(msh(7)) == "20261125093000+0800" and str(msh(18)) == "UNICODE UTF-8"
    (batch,) = fake.batches
    assert (batch.hospital_id, batch.adapter) == ("szph", "lis-mllp")
    (unit,) = batch.units
    assert unit.key == "MSH-10 SZ-0001" and unit.raw.startswith(b"MSH|")
    obs = [e.resource for e in unit.entries if e.resource["resourceType"] == "Observation"]
    assert obs[0]["code"]["coding"][0]["code"] == "6690-2"


def test_several_senders_at_once_each_get_their_own_acks(
    server: RunningListener, fake: FakeIngest
) -> None:
    senders, each = 6, 8
    acks: dict[str, str] = {}
    lock = threading.Lock()

    def sender(n: int) -> None:
        with MLLPClient("127.0.0.1", server.port) as client:
            for i in range(each):
                control = f"S{n}-{i}"
                ack = ack_of(client.send_message(oru(control)))
                with lock:
                    acks[control] = field_of(ack, "MSA", 1) + "|" + field_of(ack, "MSA", 2)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(acks) == senders * each
    assert all(v == f"AA|{k}" for k, v in acks.items())
    assert sorted(u.key for b in fake.batches for u in b.units) == sorted(
        f"MSH-10 {k}" for k in acks
    )


def test_unmappable_message_gets_ae_with_err_and_becomes_a_dead_letter(
    server: RunningListener, fake: FakeIngest
) -> None:
    ack = ack_of(send(server.port, oru("SZ-BAD", value="阳性")))
    assert field_of(ack, "MSA", 1) == "AE" and field_of(ack, "MSA", 2) == "SZ-BAD"
    err = ack.segment("ERR")
    assert str(err(2)) == "OBX^1^5"  # ERL: segment, sequence, field
    assert str(err(3)) == "102^Data type error^HL70357"
    assert str(err(4)) == "E"
    assert "'阳性' is not a number" in str(err(8))
    (batch,) = fake.batches
    (dead,) = batch.dead_letters
    assert dead.location == "OBX[1]-5" and dead.raw.startswith(b"MSH|") and not batch.units


@pytest.mark.parametrize(
    ("payload", "code", "condition", "control"),
    [
        (b"this is not HL7 at all", "AR", "100", ""),
        (
            oru("SZ-ADT").replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01").encode(),
            "AR",
            "200",
            "SZ-ADT",
        ),
        (oru("SZ-22", version="2.2").encode(), "AR", "203", "SZ-22"),
        ((oru("SZ-2A") + "\r" + oru("SZ-2B")).encode(), "AR", "100", "SZ-2A"),
    ],
)
def test_what_cannot_be_taken_at_all_gets_ar(
    server: RunningListener,
    fake: FakeIngest,
    payload: bytes,
    code: str,
    condition: str,
    control: str,
) -> None:
    ack = ack_of(send(server.port, payload))
    assert field_of(ack, "MSA", 1) == code and field_of(ack, "MSA", 2) == control
    assert str(ack.segment("ERR")(3)).split("^")[0] == condition
    assert str(ack.segment("ERR")(8))
    assert len(fake.batches) == 1 and len(fake.batches[0].dead_letters) == 1


def test_ingest_decides_a_refusal_is_an_ae(fake: FakeIngest) -> None:
    fake.refuse = True
    listener = MllpListener(fake, MllpConfig(hospital_id="szph"), clock=lambda: NOW)
    reply = listener.process(oru("SZ-R").encode())
    ack = ack_of(b"\x0b" + reply.ack + b"\x1c\r")
    assert field_of(ack, "MSA", 1) == "AE"
    assert "Observation.valueQuantity: value outside the profile" in str(ack.segment("ERR")(8))


def test_an_ingest_failure_asks_the_sender_to_resend(fake: FakeIngest) -> None:
    fake.explode = True
    listener = MllpListener(fake, MllpConfig(hospital_id="szph"), clock=lambda: NOW)
    ack = ack_of(b"\x0b" + listener.process(oru("SZ-X").encode()).ack + b"\x1c\r")
    assert field_of(ack, "MSA", 1) == "AR"
    assert str(ack.segment("ERR")(3)).startswith("207^")
    assert "send it again" in str(ack.segment("ERR")(8))


def test_a_bug_in_mapping_still_gets_an_answer(
    fake: FakeIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapters.hl7v2.mllp as mllp

    def boom(*_: object, **__: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(mllp, "map_oru", boom)
    listener = MllpListener(fake, MllpConfig(hospital_id="szph"), clock=lambda: NOW)
    reply = listener.process(oru("SZ-BUG").encode())
    ack = ack_of(b"\x0b" + reply.ack + b"\x1c\r")
    assert field_of(ack, "MSA", 1) == "AR" and field_of(ack, "MSA", 2) == "SZ-BUG"
    assert str(ack.segment("ERR")(3)).startswith("207^")


def test_facility_routing_and_unknown_facility(fake: FakeIngest) -> None:
    cfg = MllpConfig(facilities={"SZPH": "szph", "PKUSZH": "pkuszh"})
    listener = MllpListener(fake, cfg, clock=lambda: NOW)
    for control, facility in (("A", "SZPH"), ("B", "PKUSZH")):
        reply = listener.process(oru(control, facility=facility).encode())
        assert reply.code == "AA"
    assert [b.hospital_id for b in fake.batches] == ["szph", "pkuszh"]
    unit = fake.batches[1].units[0]
    patient = next(e.resource for e in unit.entries if e.resource["resourceType"] == "Patient")
    assert patient["identifier"][0]["system"] == naming.mrn("pkuszh")
    stranger = listener.process(oru("C", facility="ELSEWHERE").encode())
    assert stranger.code == "AR" and "ELSEWHERE" in (stranger.reason or "")
    assert "204^" in stranger.ack.decode()


def test_gb18030_v23_message_gets_a_gb18030_v23_ack(fake: FakeIngest) -> None:
    data = (FIXTURES / "nsdh" / "nsdh-20261120-electrolytes.hl7").read_bytes()
    first = data.split(b"\nMSH|")[0]  # the first of the file's two messages, LF separators
    bad = first.replace("|3.41|".encode("gb18030"), "|偏低|".encode("gb18030"))
    listener = MllpListener(fake, MllpConfig(hospital_id="nsdh"), clock=lambda: NOW)
    reply = listener.process(bad)
    assert reply.code == "AE"
    text = reply.ack.decode("gb18030")
    ack = hl7.parse(text)
    msh = ack.segment("MSH")
    assert str(msh(9)) == "ACK^R01" and str(msh(12)) == "2.3" and str(msh(18)) == "GB18030"
    assert field_of(ack, "MSA", 2) == "NS202611200001"
    err = ack.segment("ERR")
    assert str(err(1)) == "OBX^1^5^102&Data type error&HL70357"  # 2.3 receivers read ERR-1
    assert "'偏低' is not a number" in str(err(8))


def test_frames_split_across_packets_and_bytes_outside_frames(
    server: RunningListener, fake: FakeIngest
) -> None:
    framed = b"\x0b" + oru("SZ-SPLIT").encode() + b"\x1c\r"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"noise before the block ")
        for i in range(0, len(framed), 7):
            sock.sendall(framed[i : i + 7])
        reply = b""
        while not reply.endswith(b"\x1c\r"):
            reply += sock.recv(4096)
    assert field_of(ack_of(reply), "MSA", 2) == "SZ-SPLIT"


def test_through_the_real_ingest(exchange: Exchange) -> None:
    listener = MllpListener(
        exchange.ingestor.ingest,
        MllpConfig(hospital_id="szph"),
        terminology=Terminology.load(ROOT / "fhir_profiles"),
    )
    running = run_in_thread(listener, "127.0.0.1", 0)
    try:
        results: list[str] = []

        def sender(n: int) -> None:
            with MLLPClient("127.0.0.1", running.port) as client:
                for i in range(3):
                    ack = ack_of(client.send_message(oru(f"R{n}-{i}")))
                    results.append(field_of(ack, "MSA", 1))

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        bad = ack_of(send(running.port, oru("R-BAD", value="n/a")))
        again = ack_of(send(running.port, oru("R0-0")))  # the same message re-sent
    finally:
        running.stop()
    assert results == ["AA"] * 12
    assert field_of(bad, "MSA", 1) == "AE" and field_of(again, "MSA", 1) == "AA"
    with exchange.store.read() as conn:
        n_obs = conn.execute(
            text("SELECT count(*) FROM resource WHERE type='Observation'")
        ).scalar()
        dead = conn.execute(text("SELECT adapter, location FROM dead_letter")).all()
    assert n_obs == 12  # re-sending changed nothing
    assert [(d.adapter, d.location) for d in dead] == [("lis-mllp", "OBX[1]-5")]
