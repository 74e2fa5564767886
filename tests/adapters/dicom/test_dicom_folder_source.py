"""The DICOM-folder adapter: bad files to dead letters, the rest lands, the cursor never skips."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from imaging_support import FIXTURES, RecordingSink
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from adapters.base import BadMessage, Unit
from adapters.dicom_folder.reader import read_header, read_instance
from adapters.dicom_folder.source import DicomFolderSource, FileKey

WADO = "http://127.0.0.1:18042/dicom-web"


def source(folder: Path, **kwargs: object) -> DicomFolderSource:
    options: dict[str, object] = {"wado_base_url": WADO, "settle_seconds": 0}
    options.update(kwargs)
    return DicomFolderSource("szph", folder, **options)  # type: ignore[arg-type]


def study_of(unit: Unit) -> dict[str, Any]:
    return next(e.resource for e in unit.entries if e.resource["resourceType"] == "ImagingStudy")


def copy_in(files: list[Path], folder: Path, base: Path) -> None:
    """Copy one by one, so each file gets a later ctime than the one before."""
    for path in files:
        target = folder / path.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def test_bad_files_become_dead_letters_and_the_rest_lands(
    tmp_path: Path, sink: RecordingSink
) -> None:
    shutil.copytree(FIXTURES / "szph", tmp_path / "szph")
    shutil.copytree(FIXTURES / "bad", tmp_path / "bad")
    result = source(tmp_path).run(sink)

    assert [u.key for u in sink.units] == [
        pydicom.dcmread(next((FIXTURES / "szph").rglob("*.dcm"))).StudyInstanceUID
    ]
    assert study_of(sink.units[0])["numberOfInstances"] == 4
    reasons = {d.key: d.reason for d in sink.dead_letters}
    assert reasons.pop("bad/truncated-header.dcm") == (
        "bad/truncated-header.dcm: file is truncated inside element (0008,1030): "
        "19 of 38 value bytes present"
    )
    assert reasons.pop("bad/wrong-preamble.dcm").startswith(
        "bad/wrong-preamble.dcm: not a DICOM Part 10 file: no 'DICM' prefix"
    )
    assert reasons.pop("bad/not-dicom.txt").startswith("bad/not-dicom.txt: not a DICOM Part 10")
    assert reasons.pop("bad/no-study-uid.dcm") == (
        "bad/no-study-uid.dcm: StudyInstanceUID (0020,000D) is missing"
    )
    (study_key, reason) = reasons.popitem()  # the file without PatientID: a study-level fault
    assert reason == (
        f"study {study_key} (bad/no-patient-id.dcm): PatientID (0010,0020) is missing: "
        "the study cannot be linked to a patient"
    )
    assert reasons == {}
    by_key = {d.key: d for d in sink.dead_letters}
    assert (
        by_key["bad/wrong-preamble.dcm"].raw == (FIXTURES / "bad/wrong-preamble.dcm").read_bytes()
    )
    assert by_key["bad/truncated-header.dcm"].content_type == "application/dicom"
    assert by_key["bad/not-dicom.txt"].content_type == "application/octet-stream"
    assert json.loads(by_key[study_key].raw)["study"]["0020000D"]["Value"] == [study_key]
    assert (result.received, result.rejected, result.error) == (6, 5, None)
    assert result.cursor_after == sink.batches[-1].cursor.value  # type: ignore[union-attr]


def test_pydicom_bundled_files_header_only(tmp_path: Path, sink: RecordingSink) -> None:
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm", "no_meta.dcm"):
        shutil.copyfile(get_testdata_file(name), tmp_path / name)  # type: ignore[arg-type]
    source(tmp_path).run(sink)
    # MR_truncated's pixels are cut short but its header is whole: headers-only reading lands
    # it (as the same instance as MR_small). no_meta.dcm has no preamble: refused, not forced.
    assert sorted(study_of(u)["numberOfInstances"] for u in sink.units) == [1, 1]
    assert [d.key for d in sink.dead_letters] == ["no_meta.dcm"]
    assert "no 'DICM' prefix" in sink.dead_letters[0].reason


def test_every_cut_of_a_header_is_a_dead_letter() -> None:
    data = (FIXTURES / "szph/ct-chest-zhang-wei/02-01.dcm").read_bytes()
    pixel_data = data.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) tag, little endian
    for cut in range(0, pixel_data + 12):  # up to the end of the Pixel Data element header
        with pytest.raises(BadMessage):
            read_header(io.BytesIO(data[:cut]), cut)
    whole_header = data[: pixel_data + 12 + 10]  # pixels cut short: the header is whole
    assert read_header(io.BytesIO(whole_header), len(whole_header)) is not None


def test_committed_cursor_means_nothing_is_read_twice(tmp_path: Path, sink: RecordingSink) -> None:
    shutil.copytree(FIXTURES / "nsdh", tmp_path / "nsdh")
    first = source(tmp_path).run(sink)
    assert len(sink.units) == 2
    second = source(tmp_path).run(sink)
    assert (second.received, second.cursor_before, second.cursor_after) == (
        0,
        first.cursor_after,
        first.cursor_after,
    )
    assert len(sink.batches) == 2 - 1  # one batch (both studies) from the first run only


def test_late_instance_rebuilds_the_whole_study(tmp_path: Path, sink: RecordingSink) -> None:
    study_dir = tmp_path / "ct"
    shutil.copytree(FIXTURES / "szph/ct-chest-zhang-wei", study_dir)
    source(tmp_path).run(sink)
    assert study_of(sink.units[0])["numberOfInstances"] == 4

    late = pydicom.dcmread(study_dir / "02-03.dcm")
    late.SOPInstanceUID = late.file_meta.MediaStorageSOPInstanceUID = UID(
        "1.2.826.0.1.3680043.99.1"
    )
    late.InstanceNumber = 4
    time.sleep(0.01)
    late.save_as(study_dir / "02-04.dcm", enforce_file_format=True)
    source(tmp_path).run(sink)
    rebuilt = study_of(sink.units[1])
    assert (rebuilt["numberOfInstances"], rebuilt["numberOfSeries"]) == (5, 2)
    assert [s["numberOfInstances"] for s in rebuilt["series"]] == [1, 4]


def test_files_younger_than_settle_time_wait(tmp_path: Path, sink: RecordingSink) -> None:
    shutil.copytree(FIXTURES / "pkuszh", tmp_path / "pkuszh")
    now = time.time()
    waiting = source(tmp_path, settle_seconds=60, clock=lambda: now)
    assert waiting.run(sink).received == 0 and sink.batches == []
    later = source(tmp_path, settle_seconds=60, clock=lambda: now + 61)
    assert later.run(sink).received == 1


def test_batches_of_n_studies_and_resume_after_a_crash(tmp_path: Path) -> None:
    # Interleave the files of three studies in time order, so a study's files straddle
    # batch boundaries: the cursor may only pass a file once its whole study has landed.
    files = sorted(FIXTURES.glob("nsdh/*/*.dcm")) + sorted(FIXTURES.glob("pkuszh/*/*.dcm"))
    interleaved = [f for pair in zip(files[::2], files[1::2], strict=False) for f in pair]
    interleaved += [f for f in files if f not in interleaved]
    copy_in(interleaved, tmp_path, FIXTURES)

    crashing = RecordingSink(fail_on_batch=2)
    with pytest.raises(RuntimeError, match="simulated"):
        source(tmp_path, studies_per_batch=1).run(crashing)
    assert len(crashing.batches) == 1
    first_cursor = FileKey.decode(crashing.batches[0].cursor.value)  # type: ignore[union-attr]
    keys = source(tmp_path)._list()
    landed = {u.key for u in crashing.units}
    for key in keys:
        if first_cursor is not None and key <= first_cursor:  # everything before the cursor
            header = read_instance(tmp_path / key.path)
            assert header is not None and header.study_uid in landed

    source(tmp_path, studies_per_batch=1).run(crashing)  # resume
    all_studies = {u.key for u in crashing.units}
    assert len(all_studies) == 3
    assert crashing.batches[-1].cursor.value == keys[-1].encode()  # type: ignore[union-attr]


def test_dicomdir_and_hidden_files_are_not_dead_letters(
    tmp_path: Path, sink: RecordingSink
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.1.3.10")  # Media Storage Directory
    meta.MediaStorageSOPInstanceUID = UID("1.2.826.0.1.3680043.99.2")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dicomdir = Dataset()
    dicomdir.file_meta = meta
    dicomdir.FileSetID = "HIE"
    dicomdir.save_as(tmp_path / "DICOMDIR", enforce_file_format=True)
    (tmp_path / ".partial.dcm").write_bytes(b"half a file")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "junk").write_bytes(b"junk")
    result = source(tmp_path).run(sink)
    assert (len(sink.units), len(sink.dead_letters)) == (0, 0)
    assert result.cursor_after is not None and "DICOMDIR" in result.cursor_after


def test_large_dead_letter_keeps_only_the_first_bytes(tmp_path: Path, sink: RecordingSink) -> None:
    (tmp_path / "video.mp4").write_bytes(b"\x00" * 5000)
    source(tmp_path, max_dead_letter_bytes=1000).run(sink)
    (dead,) = sink.dead_letters
    assert len(dead.raw) == 1000 and dead.reason.endswith("(first 1000 bytes kept)")


def test_folder_without_wado_url_indexes_without_endpoint(
    tmp_path: Path, sink: RecordingSink
) -> None:
    shutil.copytree(FIXTURES / "nsdh/dx-chest-wang-fang", tmp_path / "dx")
    source(tmp_path, wado_base_url=None).run(sink)
    (unit,) = sink.units
    assert [e.resource["resourceType"] for e in unit.entries] == ["Patient", "ImagingStudy"]
    assert "endpoint" not in study_of(unit)


def test_cursor_orders_by_later_of_mtime_and_ctime(tmp_path: Path) -> None:
    path = tmp_path / "old.dcm"
    shutil.copyfile(FIXTURES / "nsdh/dx-chest-wang-fang/01-01.dcm", path)
    os.utime(path, ns=(0, 0))  # as `cp -p` of a file from 1970 would leave it
    (key,) = source(tmp_path)._list()
    assert key.time_ns == path.stat().st_ctime_ns > 0
    assert FileKey.decode(key.encode()) == key
    assert FileKey.decode("not json") is None
    assert source(tmp_path).cursor_name == f"files:{tmp_path.resolve()}"
