"""The MLLP listener `hie serve` starts from the hospitals file, fed by a real MLLP client
(python-hl7's MLLPClient) over TCP, landing results in the index on both backends."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import hl7
import orjson
from hl7.client import MLLPClient

from hie import naming
from hie.auth import ALL_SCOPES, Principal
from hie.exchange import Exchange
from hie.hospitals import load_hospitals
from hie.listeners import start_mllp
from hie.organizations import sync_hospitals
from tests.conftest import ROOT, free_port


def test_configured_listener_acks_and_indexes(exchange: Exchange, tmp_path: Path) -> None:
    work = tmp_path / "fixtures"
    shutil.copytree(ROOT / "fixtures", work)
    port = free_port()
    toml = work / "hospitals.toml"
    toml.write_text(toml.read_text("utf-8").replace("port = 2575", f"port = {port}"), "utf-8")
    config = load_hospitals(toml, os.environ)
    sync_hospitals(exchange.store, config)
    message = (ROOT / "fixtures" / "hl7v2" / "szph" / "szph-20261115-zhang-wei.hl7").read_bytes()
    running = start_mllp(exchange, config)
    try:
        assert [r.port for r in running] == [port]
        with MLLPClient("127.0.0.1", port) as client:
            ack = client.send_message(message)
            garbage = client.send_message(b"MSH|^~\\&|SZPH-LIS|SZPH|||x||ORU^R01|1|P|2.5.1\rPID|")
    finally:
        for r in running:
            r.stop()
    parsed = hl7.parse(ack.strip(b"\x0b\x1c\r").decode("utf-8"))
    assert str(parsed.segment("MSA")[1]) == "AA"
    bad = hl7.parse(garbage.strip(b"\x0b\x1c\r").decode("utf-8"))
    assert str(bad.segment("MSA")[1]) in ("AE", "AR")
    assert str(bad.segment("ERR")) != ""
    with exchange.store.read() as conn:
        patient = exchange.registry.by_identifier(conn, naming.mrn("szph"), "SZ1001")
    assert patient is not None
    reader = Principal("test", scopes=frozenset(ALL_SCOPES))
    found = orjson.loads(
        exchange.search(reader, "Observation", [("patient", patient)], strict=True)
    )
    assert len(found["entry"]) >= 10  # the CBC and BMP of that message
