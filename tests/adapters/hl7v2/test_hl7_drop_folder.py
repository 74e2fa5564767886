"""The HL7 v2 drop folder: one batch per file, dead letters for bad messages, done/ after commit.

The first tests use an in-memory sink to pin the protocol; the last ones run the real ingest
(SQLite, and PostgreSQL when configured) and one kills a real sync process half-way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from adapters.base import Batch
from adapters.hl7v2.drop_folder import CURSOR_NAME, Hl7Folder, import_file
from hie import naming
from hie.exchange import Exchange
from hie.terminology import Terminology

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures" / "hl7v2"
CHILD = Path(__file__).parent / "hl7_sync_child.py"


def message(n: int, *, bad: bool = False) -> str:
    """A szph-style CBC message with six results; ``bad`` makes OBX-5 of an NM text."""
    segs = [
        "MSH|^~\\&|SZPH-LIS|SZPH|HIE|SZHIE|20261115103012+0800||ORU^R01^ORU_R01|"
        f"K{n:06d}|P|2.5.1|||AL|NE|CHN|UNICODE UTF-8",
        "PID|1||SZ1001^^^SZPH^MR~440305198003151231^^^CHN^NNCHN||张^伟||19800315|M",
        f"OBR|1|P{n}|SZK{n:06d}|XCG^血常规^L|||20261115081500+0800|||||||||||||||"
        "20261115101500+0800|||F",
    ]
    for i, code in enumerate(("XC001", "XC002", "XC003", "XC004", "XC005", "XC006"), 1):
        value = "溶血" if bad and i == 1 else f"{i}.{n % 10}"
        segs.append(f"OBX|{i}|NM|{code}||{value}|g/L|1-9|N|||F|||20261115081500+0800")
    return "\r".join(segs) + "\r"


def write(folder: Path, name: str, data: bytes, age: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


@dataclass
class Counts:
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass
class RecordingSink:
    folder: Path
    cursors: dict[tuple[str, str, str], str] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    seen_in_folder: list[list[str]] = field(default_factory=list)
    fail: bool = False

    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
        return self.cursors.get((hospital_id, adapter, name))

    def ingest(self, batch: Batch) -> Counts:
        # what is still waiting when this batch arrives: the previous file must be gone
        self.seen_in_folder.append(sorted(p.name for p in self.folder.glob("*.hl7")))
        if self.fail:
            raise RuntimeError("database is locked")
        self.batches.append(batch)
        assert batch.cursor is not None
        self.cursors[(batch.hospital_id, batch.adapter, batch.cursor.name)] = batch.cursor.value
        return Counts(
            received=len(batch.units) + len(batch.dead_letters),
            created=len(batch.units),
            rejected=len(batch.dead_letters),
        )


def source(folder: Path, **kw: object) -> Hl7Folder:
    return Hl7Folder("szph", "lis-folder", folder, Terminology(), **kw)  # type: ignore[arg-type]


def test_one_batch_per_file_oldest_first_moved_only_after_commit(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    b = write(folder, "b.hl7", (message(1) + message(2, bad=True) + message(3)).encode(), age=100)
    a = write(folder, "a.hl7", message(4).encode(), age=50)
    sha_b = hashlib.sha256(b.read_bytes()).hexdigest()
    sha_a = hashlib.sha256(a.read_bytes()).hexdigest()
    sink = RecordingSink(folder)
    result = source(folder).run(sink)

    assert [len(x.units) for x in sink.batches] == [2, 1]  # b (older) first, bad one out
    assert sink.seen_in_folder == [["a.hl7", "b.hl7"], ["a.hl7"]]  # b moved after its commit
    (dead,) = sink.batches[0].dead_letters
    assert dead.key == "b.hl7#2 MSH-10 K000002" and dead.location == "OBX[1]-5"
    assert dead.raw.startswith(b"MSH|") and b"K000002" in dead.raw and b"K000003" not in dead.raw
    assert [u.key for u in sink.batches[0].units] == [
        "b.hl7#1 MSH-10 K000001",
        "b.hl7#3 MSH-10 K000003",
    ]
    assert [x.cursor.value for x in sink.batches if x.cursor] == [
        f"sha256:{sha_b}",
        f"sha256:{sha_a}",
    ]
    assert {x.cursor.name for x in sink.batches if x.cursor} == {CURSOR_NAME}
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["a.hl7", "b.hl7"]
    assert (result.received, result.indexed, result.rejected) == (4, 3, 1)
    assert result.cursor_after == f"sha256:{sha_a}" and result.error is None


def test_a_file_whose_commit_the_cursor_records_is_moved_without_reading_again(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    landed = write(folder, "landed.hl7", message(1).encode(), age=100)
    write(folder, "next.hl7", message(2).encode(), age=10)
    sink = RecordingSink(folder)
    sha = hashlib.sha256(landed.read_bytes()).hexdigest()
    sink.cursors[("szph", "lis-folder", CURSOR_NAME)] = f"sha256:{sha}"  # crashed before move
    source(folder).run(sink)
    assert [u.key for x in sink.batches for u in x.units] == ["next.hl7#1 MSH-10 K000002"]
    assert (folder / "done" / "landed.hl7").exists()


def test_a_failed_commit_leaves_the_file_for_the_next_run(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write(folder, "a.hl7", message(1).encode())
    sink = RecordingSink(folder, fail=True)
    with pytest.raises(RuntimeError):
        source(folder).run(sink)
    assert (folder / "a.hl7").exists() and not (folder / "done").exists()


def test_files_still_being_written_are_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for name in ("x.hl7.tmp", "x.part", ".x.hl7"):
        write(folder, name, message(1).encode(), age=100)
    write(folder, "fresh.hl7", message(2).encode())
    write(folder, "old.hl7", message(3).encode(), age=100)
    assert [p.name for p in source(folder, min_age=30.0).pending()] == ["old.hl7"]
    assert [p.name for p in source(folder, pattern="*.hl7").pending()] == ["old.hl7", "fresh.hl7"]


def test_an_empty_file_is_a_dead_letter_and_a_name_seen_before_keeps_both(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write(folder, "empty.hl7", b"")
    sink = RecordingSink(folder)
    source(folder).run(sink)
    (dead,) = sink.batches[0].dead_letters
    assert dead.reason == "the file is empty" and not sink.batches[0].units
    write(folder, "empty.hl7", b"FHS|^~\\&|LIS\rFTS|0\r")  # an empty batch file
    source(folder).run(sink)
    assert sink.batches[1].dead_letters[0].reason == "the file holds no HL7 message"
    assert len(list((folder / "done").iterdir())) == 2


def test_import_file_is_one_batch_without_cursor_and_moves_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "one-off.hl7", (message(1) + message(2, bad=True)).encode())
    batch = import_file(path, "szph", terminology=Terminology.load(ROOT / "fhir_profiles"))
    assert (batch.hospital_id, batch.adapter, batch.cursor) == ("szph", "import", None)
    assert len(batch.units) == 1 and len(batch.dead_letters) == 1
    assert path.exists()


# -- with the real ingest -------------------------------------------------------------------


def _copy(hospital: str, into: Path, names: list[str] | None = None) -> Path:
    folder = into / hospital
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sorted((FIXTURES / hospital).glob("*.hl7"))):
        if names is None or src.name in names:
            shutil.copy(src, folder / src.name)
            stamp = time.time() - 1000 + i  # file order = delivery order
            os.utime(folder / src.name, (stamp, stamp))
    return folder


def test_demo_fixtures_through_the_real_ingest(exchange: Exchange, tmp_path: Path) -> None:
    terminology = Terminology.load(ROOT / "fhir_profiles")
    results = {
        h: Hl7Folder(h, "lis-folder", _copy(h, tmp_path), terminology).run(exchange.ingestor)
        for h in ("szph", "pkuszh", "nsdh")
    }
    assert all(r.error is None for r in results.values())
    assert {h: (r.received, r.rejected) for h, r in results.items()} == {
        "szph": (5, 1),  # the deliberately bad message
        "pkuszh": (4, 0),
        "nsdh": (2, 0),
    }
    assert results["pkuszh"].new_versions == 2  # corrected HbA1c: Observation + report

    with exchange.store.read() as conn:
        reg = exchange.registry
        zhang = {
            reg.by_identifier(conn, naming.mrn("szph"), "SZ1001"),
            reg.by_identifier(conn, naming.mrn("pkuszh"), "PK2001"),
            reg.by_identifier(conn, naming.NATIONAL_ID, "440305198003151231"),
        }
        assert len(zhang) == 1 and None not in zhang  # one exchange patient, three ways in
        (patient_id,) = zhang
        cbc = conn.execute(
            text(
                "SELECT hospital_id FROM observation_index WHERE patient_id = :p AND code = :c "
                "ORDER BY hospital_id"
            ),
            {"p": patient_id, "c": "6690-2"},
        ).all()
        assert [r.hospital_id for r in cbc] == ["pkuszh", "szph"]  # his CBC from two hospitals
        smith = reg.by_identifier(conn, naming.passport("USA"), "561234987")
        assert smith and smith != patient_id
        versions = conn.execute(  # the current version in resource, the superseded in history
            text(
                "SELECT r.version_id AS current, v.version_id AS old FROM resource r "
                "JOIN resource_version v ON v.type = r.type AND v.id = r.id "
                "WHERE r.type = 'Observation' AND r.source_id = :s"
            ),
            {"s": naming.result_id("pkuszh") + "|PKR1118002.300101"},
        ).all()
        assert [(v.current, v.old) for v in versions] == [(2, 1)]
        dead = conn.execute(text("SELECT key, reason FROM dead_letter")).all()
        assert [d.key for d in dead] == ["szph-20261116-batch.hl7#3 MSH-10 SZ20261116000203"]

    # Delivered again: nothing new is indexed. A file the cursor names (each feed's last) is
    # known to have landed and is only moved; an older one is read and found unchanged.
    again = {"szph": "szph-20261115-zhang-wei.hl7", "pkuszh": "pkuszh-20261119-correction.hl7"}
    replay = tmp_path / "replay"
    runs = {
        h: Hl7Folder(h, "lis-folder", _copy(h, replay, [name]), terminology).run(exchange.ingestor)
        for h, name in again.items()
    }
    assert {h: (r.indexed, r.new_versions, r.rejected) for h, r in runs.items()} == {
        "szph": (0, 0, 0),
        "pkuszh": (0, 0, 0),
    }
    assert runs["szph"].unchanged == 18 and runs["pkuszh"].received == 0
    assert all((replay / h / "done" / name).exists() for h, name in again.items())


def _count(db: Path, sql: str) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_kill_mid_run_then_restart_holds_each_result_once(sqlite_url: str, tmp_path: Path) -> None:
    """A real SIGKILL of the sync process part-way through a folder, then a clean rerun."""
    folder = tmp_path / "in"
    files = 12
    for f in range(files):
        data = "".join(message(f * 4 + i) for i in range(4)).encode()
        write(folder, f"f{f:02d}.hl7", data, age=1000 - f)
    last_sha = hashlib.sha256((folder / f"f{files - 1:02d}.hl7").read_bytes()).hexdigest()
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    cmd = [sys.executable, str(CHILD), sqlite_url, str(folder), "szph"]

    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        done = folder / "done"
        if done.is_dir() and len(list(done.iterdir())) >= 2:
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    moved = len(list((folder / "done").iterdir()))
    assert 0 < moved < files, "the kill must land part-way through the folder"
    assert child.returncode == -signal.SIGKILL

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list((folder / "done").iterdir())) == files and not list(folder.glob("*.hl7"))
    observations = _count(db, "SELECT count(*) FROM resource WHERE type = 'Observation'")
    distinct = _count(
        db, "SELECT count(DISTINCT source_id) FROM resource WHERE type = 'Observation'"
    )
    assert observations == distinct == files * 4 * 6  # every result exactly once
    assert _count(db, "SELECT count(*) FROM resource WHERE type = 'DiagnosticReport'") == files * 4
    assert (
        _count(
            db,
            "SELECT count(*) FROM resource WHERE version_id > 1 AND type = 'Observation'",
        )
        == 0
    )
    with closing(sqlite3.connect(db)) as conn:
        (cursor,) = conn.execute(
            "SELECT value FROM sync_cursor WHERE hospital_id = 'szph' AND adapter = 'lis-folder'"
        ).fetchone()
    assert cursor == f"sha256:{last_sha}"
