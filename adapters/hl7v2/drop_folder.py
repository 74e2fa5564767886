"""A folder of HL7 v2 files as a pull source: one Batch per file, oldest first.

A hospital's LIS (or an interface engine) writes files of one or many ORU^R01 messages into
a folder. Each file becomes one :class:`~adapters.base.Batch`: a unit per good message and a
dead letter (the message's own bytes and the reason) per bad one, so one broken message never
holds back the rest of its file. The batch's cursor is ``sha256:<hex of the file>``.

A file moves to ``done/`` only after ingest has committed its batch, which the source learns
when :func:`adapters.runner.run_pull` resumes it for the next one. So a crash:

* before the commit: nothing landed, the file is still there → read again;
* after the commit, before the move: the stored cursor names this file's hash → it is moved
  without being read again (and if the cursor had moved on, re-reading is still harmless:
  ingest upserts by source identifier, so a replay changes nothing).

Files still being written are left alone: names starting with ``.`` or ending ``.tmp`` /
``.part``, and files modified less than ``min_age`` seconds ago.

:func:`import_file` is the one-off path (``hie import FILE --hospital H``): one file, one
Batch, no cursor, nothing moved.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path

from adapters.base import BadMessage, Batch, Cursor, DeadLetter, Sink, SyncResult, Unit
from adapters.hl7v2.coding import CodeMapper, Context, NoMapping
from adapters.hl7v2.framing import split_messages
from adapters.hl7v2.message import parse
from adapters.hl7v2.oru import CONTENT_TYPE, map_oru
from adapters.hl7v2.timestamp import SHANGHAI
from adapters.runner import run_pull

log = logging.getLogger(__name__)

CURSOR_NAME = "hl7v2-folder"
_PARTIAL = (".tmp", ".part", ".partial", ".filepart")


def read_payload(
    data: bytes, name: str, ctx: Context, default_charset: str = "utf-8"
) -> tuple[list[Unit], list[DeadLetter]]:
    """A file's bytes → units for the good messages and dead letters for the bad ones."""
    units: list[Unit] = []
    dead: list[DeadLetter] = []
    messages = split_messages(data)
    if not messages:
        reason = "the file holds no HL7 message" if data.strip() else "the file is empty"
        return [], [DeadLetter(name, data, reason, CONTENT_TYPE)]
    for framed in messages:
        key = f"{name}#{framed.index}"
        try:
            msg = parse(framed, default_charset)
            if msg.control_id:
                key += f" MSH-10 {msg.control_id}"
            units.append(map_oru(msg, ctx, framed.raw, key))
        except BadMessage as exc:
            dead.append(DeadLetter(key, framed.raw, str(exc), CONTENT_TYPE, exc.location))
        except Exception as exc:  # a mapper bug must not wedge the whole feed on one file
            log.exception("HL7 v2 mapping failed on %s", key)
            reason = f"hie failed to map this message ({type(exc).__name__}: {exc}); a bug"
            dead.append(DeadLetter(key, framed.raw, reason, CONTENT_TYPE))
    return units, dead


def import_file(
    path: Path,
    hospital_id: str,
    *,
    terminology: CodeMapper | None = None,
    tz: tzinfo = SHANGHAI,
    adapter: str = "import",
    default_charset: str = "utf-8",
) -> Batch:
    """One file → one Batch, for ``hie import FILE --hospital H`` (no cursor, no move)."""
    ctx = Context(hospital_id, terminology or NoMapping(), tz)
    units, dead = read_payload(path.read_bytes(), path.name, ctx, default_charset)
    return Batch(hospital_id, adapter, units=units, dead_letters=dead)


@dataclass
class Hl7Folder:
    """The ``hl7v2-folder`` adapter: a :class:`~adapters.base.PullSource`."""

    hospital_id: str
    name: str
    folder: Path
    terminology: CodeMapper = field(default_factory=NoMapping)
    tz: tzinfo = SHANGHAI
    pattern: str = "*"
    default_charset: str = "utf-8"
    min_age: float = 0.0
    cursor_name: str = CURSOR_NAME

    @property
    def done_folder(self) -> Path:
        return self.folder / "done"

    def pending(self) -> list[Path]:
        """Files ready to read, oldest first (modification time, then name)."""
        now = time.time()
        ready: list[tuple[int, str, Path]] = []
        for path in self.folder.glob(self.pattern):
            if not path.is_file() or path.name.startswith(".") or path.suffix in _PARTIAL:
                continue
            stat = path.stat()
            if now - stat.st_mtime < self.min_age:
                continue
            ready.append((stat.st_mtime_ns, path.name, path))
        return [p for _, _, p in sorted(ready)]

    def batches(self, cursor: str | None) -> Iterator[Batch]:
        ctx = Context(self.hospital_id, self.terminology, self.tz)
        for path in self.pending():
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            value = f"sha256:{sha}"
            if cursor == value:
                self._archive(path, sha)  # landed before a crash; only the move was lost
                continue
            units, dead = read_payload(data, path.name, ctx, self.default_charset)
            yield Batch(
                self.hospital_id,
                self.name,
                units=units,
                dead_letters=dead,
                cursor=Cursor(self.cursor_name, value),
            )
            # Resumed: the sink has committed this file's batch.
            self._archive(path, sha)
            cursor = value

    def run(self, sink: Sink) -> SyncResult:
        """Pull every waiting file into ``sink`` now (what the scheduler and ``hie sync`` do)."""
        return run_pull(self, sink, self.hospital_id, self.name)

    def _archive(self, path: Path, sha: str) -> None:
        self.done_folder.mkdir(exist_ok=True)
        target = self.done_folder / path.name
        if target.exists():  # the same name delivered again: keep both
            target = target.with_name(f"{path.stem}.{sha[:12]}{path.suffix}")
        os.replace(path, target)
