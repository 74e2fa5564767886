"""A folder of DICOM files (a PACS export, a modality's store folder) as a pull source.

Each run lists the folder, reads the header of every file newer than the cursor, groups the
instances into series and studies and yields one :class:`~adapters.base.Batch` per
``studies_per_batch`` studies. Files that are not usable DICOM become dead letters naming the
file and the fault; the rest of the folder lands.

The cursor is the ``(time, relative path)`` of the newest file covered, where time is the
later of mtime and ctime in nanoseconds: ``cp -p``, ``rsync -t`` and ``mv`` keep an old mtime
but set ctime, so a file copied in with an old date is still seen. Files are taken in that
order, and a batch's cursor only moves past a file once every file before it has landed or
been dead-lettered, so resuming from any committed cursor loses nothing.

Two ways a study can arrive in pieces, and what is done about them:

* a transfer still in progress: files younger than ``settle_seconds`` wait for the next run
  (as Orthanc waits ``StableAge`` before calling a study stable);
* more instances of an already indexed study arriving later: the older files in the same
  directories as the new ones are read again, so the ImagingStudy is rebuilt whole rather than
  replaced by the late part. In one flat folder that means re-reading it; a per-study layout
  (``patient/study/series``, as PACS exports write) keeps it cheap.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from adapters.base import BadMessage, Batch, Cursor, DeadLetter, Sink, SyncResult, Unit
from adapters.dicom.body_site import BodySiteMap, default_body_sites
from adapters.dicom.dataset import StudyHeaders
from adapters.dicom.dates import SHANGHAI_OFFSET
from adapters.dicom.study import PAYLOAD_CONTENT_TYPE, Pacs, study_payload, study_unit
from adapters.runner import run_pull

from .reader import read_instance

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class FileKey:
    """A file's place in the folder's order: (max(mtime, ctime) ns, relative POSIX path)."""

    time_ns: int
    path: str

    def encode(self) -> str:
        return json.dumps({"time_ns": self.time_ns, "path": self.path}, ensure_ascii=False)

    @classmethod
    def decode(cls, value: str | None) -> FileKey | None:
        if not value:
            return None
        try:
            body = json.loads(value)
            return cls(int(body["time_ns"]), str(body["path"]))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable dicom-folder cursor %r: reading the whole folder", value)
            return None


@dataclass
class DicomFolderSource:
    """Pull source over ``folder``; ``wado_base_url`` is the PACS that holds these images.

    With ``wado_base_url=None`` the studies are indexed without an Endpoint: the exchange
    knows they exist but cannot offer a way to open them.
    """

    hospital_id: str
    folder: Path
    wado_base_url: str | None = None
    name: str = "dicom-folder"
    studies_per_batch: int = 50
    settle_seconds: float = 30.0
    body_sites: BodySiteMap = field(default_factory=default_body_sites)
    issuer_systems: Mapping[str, str] = field(default_factory=dict)
    default_offset: str = SHANGHAI_OFFSET
    max_dead_letter_bytes: int = 1 << 20
    clock: Callable[[], float] = time.time

    @property
    def cursor_name(self) -> str:
        # The folder is part of the name: a cursor from another folder must not skip files.
        return f"files:{self.folder.resolve()}"

    @property
    def pacs(self) -> Pacs:
        return Pacs(
            hospital_id=self.hospital_id,
            wado_base_url=self.wado_base_url,
            body_sites=self.body_sites,
            issuer_systems=self.issuer_systems,
            default_offset=self.default_offset,
        )

    def run(self, sink: Sink) -> SyncResult:
        """One pull run into ``sink`` (``adapters.runner.run_pull``, as ``hie sync`` does)."""
        return run_pull(self, sink, self.hospital_id, self.name)

    # -- listing ---------------------------------------------------------------------------
    def _list(self) -> list[FileKey]:
        """Every regular, non-hidden file under the folder, in cursor order."""
        found: list[FileKey] = []
        stack = [self.folder]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    relative = PurePosixPath(Path(entry.path).relative_to(self.folder).as_posix())
                    found.append(FileKey(max(st.st_mtime_ns, st.st_ctime_ns), str(relative)))
        found.sort()
        return found

    # -- batches ---------------------------------------------------------------------------
    def batches(self, cursor: str | None) -> Iterator[Batch]:
        start = FileKey.decode(cursor)
        cutoff_ns = int((self.clock() - self.settle_seconds) * 1_000_000_000)
        listing = self._list()
        fresh = [f for f in listing if (start is None or f > start) and f.time_ns <= cutoff_ns]
        if not fresh:
            return
        studies: dict[str, StudyHeaders] = {}
        first_file: dict[str, str] = {}
        # Per fresh file: the study it joined, a dead letter, or None (DICOMDIR, vanished).
        outcomes: list[str | DeadLetter | None] = []
        for key in fresh:
            outcomes.append(self._read_into(key, studies, first_file))
        if start is not None and studies:
            self._complete(studies, listing, start, fresh, outcomes)

        order = list(studies)
        size = max(1, self.studies_per_batch)
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        emitted: set[str] = set()
        position = 0
        for chunk in chunks or [[]]:
            units: list[Unit] = []
            dead: list[DeadLetter] = []
            for uid in chunk:
                outcome = self._unit(studies[uid], first_file[uid])
                if isinstance(outcome, Unit):
                    units.append(outcome)
                else:
                    dead.append(outcome)
            emitted.update(chunk)
            while position < len(fresh):
                done = outcomes[position]
                if isinstance(done, str) and done not in emitted:
                    break
                if isinstance(done, DeadLetter):
                    dead.append(done)
                position += 1
            yield Batch(
                hospital_id=self.hospital_id,
                adapter=self.name,
                units=units,
                dead_letters=dead,
                cursor=Cursor(self.cursor_name, fresh[position - 1].encode()),
            )

    def _read_into(
        self, key: FileKey, studies: dict[str, StudyHeaders], first_file: dict[str, str]
    ) -> str | DeadLetter | None:
        path = self.folder / key.path
        try:
            header = read_instance(path)
        except FileNotFoundError:
            log.info("%s vanished before it was read", path)
            return None
        except BadMessage as exc:
            return self._dead_file(key, path, exc)
        if header is None:
            return None
        assert header.study_uid is not None
        headers = studies.setdefault(header.study_uid, StudyHeaders(header.study_uid))
        first_file.setdefault(header.study_uid, key.path)
        headers.add(header)
        return header.study_uid

    def _complete(
        self,
        studies: dict[str, StudyHeaders],
        listing: list[FileKey],
        start: FileKey,
        fresh: list[FileKey],
        outcomes: list[str | DeadLetter | None],
    ) -> None:
        """Fold older files of the touched studies back in (see the module docstring)."""
        directories = {
            PurePosixPath(key.path).parent
            for key, done in zip(fresh, outcomes, strict=True)
            if isinstance(done, str)
        }
        for key in listing:
            if key > start:
                break
            if PurePosixPath(key.path).parent not in directories:
                continue
            try:
                header = read_instance(self.folder / key.path)
            except (BadMessage, FileNotFoundError):
                continue  # dead-lettered (or moved away) when it was new
            if header is not None and header.study_uid in studies:
                studies[header.study_uid].add(header)

    def _unit(self, headers: StudyHeaders, first_path: str) -> Unit | DeadLetter:
        study, series = headers.study_json(), headers.series_json()
        try:
            headers.check()
            return study_unit(study, series, self.pacs)
        except BadMessage as exc:
            others = headers.instance_count - 1
            where = first_path + (f" and {others} other file(s)" if others > 0 else "")
            return DeadLetter(
                key=headers.study_uid,
                raw=study_payload(study, series, self.pacs.wado_base_url),
                reason=f"study {headers.study_uid} ({where}): {exc.reason}",
                content_type=PAYLOAD_CONTENT_TYPE,
                location=exc.location,
            )

    def _dead_file(self, key: FileKey, path: Path, exc: BadMessage) -> DeadLetter:
        try:
            with path.open("rb") as fp:
                raw = fp.read(self.max_dead_letter_bytes + 1)
        except OSError:
            raw = b""
        reason = f"{key.path}: {exc.reason}"
        if len(raw) > self.max_dead_letter_bytes:
            raw = raw[: self.max_dead_letter_bytes]
            reason += f" (first {self.max_dead_letter_bytes} bytes kept)"
        is_part10 = raw[128:132] == b"DICM"
        return DeadLetter(
            key=key.path,
            raw=raw,
            reason=reason,
            content_type="application/dicom" if is_part10 else "application/octet-stream",
            location=exc.location,
        )
