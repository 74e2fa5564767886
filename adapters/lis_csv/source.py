"""A folder of LIS CSV exports as a pull source with a durable cursor.

The cursor is ``sha256:<hex of the file>`` once a file has fully landed, or
``sha256:<hex>@<n>`` after its first ``n`` orders (large files go in several batches). It is
committed by the sink together with the data it covers. A file moves to ``done/`` only after
that commit, which the source learns when the runner resumes it for the next batch (see
:mod:`adapters.runner`). So a crash:

* before the commit: the file is still there and the cursor does not name it → read again
  (ingest upserts by source identifier, so the units that had landed are unchanged);
* after the commit, before the move: the cursor names the file's hash → moved, not re-read;
* mid-file: the cursor says how many orders landed → the rest follow.

A file's dead letters travel with its first batch, so they too are stored exactly once.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path

from adapters.base import BadMessage, Batch, Cursor, DeadLetter, Unit
from adapters.lis_csv.export import read_export
from adapters.lis_csv.order import (
    CodeMapper,
    MappedRow,
    OrderContext,
    build_unit,
    map_row,
    normal,
    same_patient,
)
from hie.hospitals import Exchange, LisCsvAdapter

CURSOR_NAME = "lis-csv"
_CURSOR = re.compile(r"^sha256:(?P<sha>[0-9a-f]{64})(?:@(?P<done>\d+))?$")


@dataclass
class LisCsvSource:
    hospital_id: str
    name: str
    folder: Path
    columns: Mapping[str, str]  # logical field → header text (CsvColumns, unset ones left out)
    map_code: CodeMapper
    tz: tzinfo
    encoding: str = "utf-8"
    delimiter: str = ","
    pattern: str = "*.csv"
    orders_per_batch: int = 200
    datetime_formats: tuple[str, ...] = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
    cursor_name: str = field(default=CURSOR_NAME)

    @classmethod
    def from_config(
        cls, hospital_id: str, adapter: LisCsvAdapter, exchange: Exchange, map_code: CodeMapper
    ) -> LisCsvSource:
        columns = {k: v for k, v in adapter.columns.model_dump().items() if v is not None}
        return cls(
            hospital_id=hospital_id,
            name=adapter.name,
            folder=adapter.path,
            columns=columns,
            map_code=map_code,
            tz=exchange.tz,
            encoding=adapter.encoding,
            delimiter=adapter.delimiter,
            pattern=adapter.pattern,
            orders_per_batch=adapter.orders_per_batch,
            datetime_formats=tuple(adapter.datetime_formats),
        )

    @property
    def done_folder(self) -> Path:
        return self.folder / "done"

    def batches(self, cursor: str | None) -> Iterator[Batch]:
        match = _CURSOR.match(cursor or "")
        for path in sorted(p for p in self.folder.glob(self.pattern) if p.is_file()):
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            start = 0
            if match and match["sha"] == sha:
                if match["done"] is None:
                    self._archive(path, sha)  # landed before a crash; only the move was lost
                    continue
                start = int(match["done"])
            units, dead = self.parse(data, key=path.name)
            rest = units[start:]
            step = self.orders_per_batch
            chunks = [rest[i : i + step] for i in range(0, len(rest), step)] or [[]]
            for n, chunk in enumerate(chunks):
                done = start + n * step + len(chunk)
                value = f"sha256:{sha}" if done >= len(units) else f"sha256:{sha}@{done}"
                yield Batch(
                    self.hospital_id,
                    self.name,
                    units=chunk,
                    dead_letters=dead if start == 0 and n == 0 else [],
                    cursor=Cursor(self.cursor_name, value),
                )
            # Resumed after the last batch: the sink has committed the whole file.
            self._archive(path, sha)
            match = None

    def parse(self, data: bytes, *, key: str) -> tuple[list[Unit], list[DeadLetter]]:
        """One export's bytes → units (one per order, in file order) and dead letters.

        Also what ``hie import FILE --hospital H`` uses for a one-off file.
        """
        ctype = f"text/csv; charset={self.encoding}"
        export = read_export(
            data, encoding=self.encoding, delimiter=self.delimiter, columns=self.columns, key=key
        )
        ctx = OrderContext(
            self.hospital_id, self.columns, self.tz, self.datetime_formats, self.map_code
        )
        dead = list(export.dead_letters)
        orders: dict[str, list[MappedRow]] = {}
        for row in export.rows:
            try:
                mapped = map_row(row, ctx)
                group = orders.setdefault(normal(row.values["order_number"]), [])
                _fits(mapped, group, ctx)
            except BadMessage as exc:
                dead.append(
                    DeadLetter(f"{key}:row {row.line}", row.raw, exc.reason, ctype, exc.location)
                )
                continue
            group.append(mapped)
        units = [
            build_unit(
                order,
                rows,
                ctx,
                key=f"{key}:order {order}",
                header_raw=export.header_raw,
                encoding=self.encoding,
            )
            for order, rows in orders.items()
            if rows
        ]
        return units, dead

    def _archive(self, path: Path, sha: str) -> None:
        self.done_folder.mkdir(exist_ok=True)
        target = self.done_folder / path.name
        if target.exists():  # the same name exported again: keep both
            target = target.with_name(f"{path.stem}.{sha[:12]}{path.suffix}")
        os.replace(path, target)


def _fits(mapped: MappedRow, group: list[MappedRow], ctx: OrderContext) -> None:
    """Rows of one order must describe one patient and name each test once."""
    if not group:
        return
    first = group[0]
    if not same_patient(first.patient, mapped.patient):
        field_name = "national_id" if "national_id" in ctx.columns else "mrn"
        where = f"row {mapped.row.line}, column {ctx.columns[field_name]}"
        raise BadMessage(
            f"{where}: patient differs from row {first.row.line} of the same order",
            location=where,
        )
    for other in group:
        if other.local_code == mapped.local_code:
            where = f"row {mapped.row.line}, column {ctx.columns['test_code']}"
            raise BadMessage(
                f"{where}: test {mapped.local_code} already in this order at row {other.row.line}",
                location=where,
            )
