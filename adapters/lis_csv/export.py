"""An LIS CSV export read into rows, each with its line number and its own raw bytes.

Chinese LIS exports come as UTF-8 (often with a BOM, which Excel writes) or GB18030 (the
national standard superset of GBK/GB2312, what Windows tools in zh-CN produce). Lines are split
on the bytes before decoding: ``\\n`` and ``\\r`` never occur inside a multi-byte character in
either encoding (GB 18030-2005 §5: trailing bytes are 0x30-0x39 or 0x40-0xFE), so one line that
fails to decode is one bad row, not a lost file. Every row keeps its raw bytes so a dead letter
holds exactly what the hospital sent.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from adapters.base import DeadLetter

BOMS = (b"\xef\xbb\xbf", b"\x84\x31\x95\x33")  # UTF-8, GB18030 encodings of U+FEFF


@dataclass(frozen=True)
class Row:
    """One data record: ``line`` is its first physical line in the file (the header is 1)."""

    line: int
    raw: bytes
    values: Mapping[str, str]  # logical field name (CsvColumns attribute) → cell text


@dataclass
class Export:
    header_raw: bytes
    rows: list[Row] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class _Lines:
    """Decodes physical lines for ``csv.reader`` and remembers the raw bytes it handed out."""

    def __init__(self, data: bytes, encoding: str, key: str) -> None:
        for bom in BOMS:
            data = data.removeprefix(bom)
        self._lines = data.splitlines(keepends=True)
        self._encoding = encoding
        self._key = key
        self.next_line = 1  # physical line number of the next line to hand out
        self.consumed: list[bytes] = []
        self.record_start = 1  # physical line of the first line in ``consumed``
        self.bad: list[DeadLetter] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while self.next_line <= len(self._lines):
            raw = self._lines[self.next_line - 1]
            number = self.next_line
            self.next_line += 1
            try:
                text = raw.decode(self._encoding)
            except UnicodeDecodeError as exc:
                self.bad.append(
                    DeadLetter(
                        f"{self._key}:row {number}",
                        raw,
                        f"row {number}: not valid {self._encoding} at byte {exc.start}",
                        content_type=f"text/csv; charset={self._encoding}",
                        location=f"row {number}",
                    )
                )
                continue
            if not self.consumed:
                self.record_start = number
            self.consumed.append(raw)
            return text
        raise StopIteration


def read_export(
    data: bytes, *, encoding: str, delimiter: str, columns: Mapping[str, str], key: str
) -> Export:
    """Rows of ``data`` keyed by logical field name; ``columns`` maps field → header text.

    A header missing a configured column makes the whole file a dead letter: no row of it
    can be read right. Blank lines are skipped. ``key`` (the file name) prefixes dead-letter
    keys.
    """
    lines = _Lines(data, encoding, key)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return Export(b"", dead_letters=lines.bad)
    except csv.Error as exc:
        return Export(b"", dead_letters=[_whole_file(data, key, encoding, f"header: {exc}")])
    header_raw = b"".join(lines.consumed)
    lines.consumed.clear()
    names = [unicodedata.normalize("NFC", h).strip().lstrip("\ufeff") for h in header]
    missing = [f"{field}={title!r}" for field, title in columns.items() if title not in names]
    if missing:
        reason = f"row 1: header lacks the configured column(s) {', '.join(missing)}"
        return Export(
            header_raw, dead_letters=[*lines.bad, _whole_file(data, key, encoding, reason)]
        )
    index = {field: names.index(title) for field, title in columns.items()}
    export = Export(header_raw)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            first = lines.record_start
            raw = b"".join(lines.consumed)
            lines.consumed.clear()
            export.dead_letters.append(_row_dead(key, first, raw, encoding, f"row {first}: {exc}"))
            continue
        first = lines.record_start
        raw = b"".join(lines.consumed)
        lines.consumed.clear()
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            reason = f"row {first}: {len(cells)} cells, the header has {len(names)}"
            export.dead_letters.append(_row_dead(key, first, raw, encoding, reason))
            continue
        values = {field: cells[i].strip() for field, i in index.items()}
        export.rows.append(Row(first, raw, values))
    export.dead_letters[:0] = lines.bad
    return export


def _row_dead(key: str, line: int, raw: bytes, encoding: str, reason: str) -> DeadLetter:
    return DeadLetter(
        f"{key}:row {line}",
        raw,
        reason,
        content_type=f"text/csv; charset={encoding}",
        location=f"row {line}",
    )


def _whole_file(data: bytes, key: str, encoding: str, reason: str) -> DeadLetter:
    return DeadLetter(key, data, reason, content_type=f"text/csv; charset={encoding}")
