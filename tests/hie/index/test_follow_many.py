"""``PatientRegistry.follow_many``: the merges of many exchange patients followed at once (the
batch ingest asks it for every known record's patient) agree with ``follow`` one by one.

Written for issue 8 (MLLP ingest on PostgreSQL: one statement instead of one per patient).
"""

from __future__ import annotations

from sqlalchemy import update

from hie.exchange import Exchange
from hie.fhirtime import now_utc
from hie.index.patients import EP


def test_follow_many_agrees_with_follow(exchange: Exchange) -> None:
    registry, now = exchange.registry, now_utc()
    with exchange.store.write() as conn:
        a, b, c, d, alone = (registry.new_patient(conn, now) for _ in range(5))
        # a → b → c (a chain of merges), d → c, and a loop-free patient left alone
        for source, target in ((a, b), (b, c), (d, c)):
            conn.execute(update(EP).where(EP.c.id == source).values(merged_into=target))
        many = registry.follow_many(conn, [a, b, c, d, alone, a, "not-a-patient"])
        one = {p: registry.follow(conn, p) for p in (a, b, c, d, alone)}
    assert many == one
    assert many == {a: c, b: c, c: c, d: c, alone: alone}
