"""Local test codes that reached the index without a LOINC mapping, for ops to map.

Adapters never drop an unmapped code: the result is stored with the hospital's own code
system (``naming.local_codes``). This reads them back from the search index, so the list is
the same for every process and survives restarts: a code counts while some current result
carries it and no LOINC coding.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import aliased

from hie import naming
from hie.index.store import TOKEN, Store

LOCAL_PREFIX = f"{naming.BASE}/cs/local/"


@dataclass(frozen=True)
class UnmappedCode:
    hospital_id: str
    code: str
    results: int


def unmapped_codes(store: Store, hospital_id: str | None = None) -> list[UnmappedCode]:
    other = aliased(TOKEN)
    loinc = exists().where(
        and_(
            other.c.type == TOKEN.c.type,
            other.c.res_id == TOKEN.c.res_id,
            other.c.param == "code",
            other.c.system == naming.LOINC,
        )
    )
    prefix = LOCAL_PREFIX + (hospital_id or "")
    stmt = (
        select(TOKEN.c.system, TOKEN.c.code, func.count().label("n"))
        .where(
            TOKEN.c.param == "code",
            TOKEN.c.type.in_(("Observation", "DiagnosticReport")),
            TOKEN.c.system.like(prefix + "%"),
            ~loinc,
        )
        .group_by(TOKEN.c.system, TOKEN.c.code)
        .order_by(func.count().desc(), TOKEN.c.system, TOKEN.c.code)
    )
    with store.read() as conn:
        return [
            UnmappedCode(r.system.removeprefix(LOCAL_PREFIX), r.code, int(r.n))
            for r in conn.execute(stmt)
        ]
