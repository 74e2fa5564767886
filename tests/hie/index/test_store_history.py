"""History rows: only superseded versions, each carrying the exchange patient it belongs to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hie.exchange import Exchange
from hie.index.store import RV, TOKEN, TYPE_INDEX, R, Store
from tests.hie.api.api_builders import observation

OBS = TYPE_INDEX["Observation"]
T0 = datetime(2026, 11, 3, 10, tzinfo=UTC)


def _put(store: Store, n: int, patient: str, record: str = "r1") -> None:
    with store.write() as conn:
        prev = store.current(conn, "Observation", "o1")
        store.put(
            conn,
            observation("Patient/r1", result_id="o1", value=float(n)),
            rid="o1",
            prev=prev,
            now=T0 + timedelta(hours=n),
            hospital_id="szph",
            source_id="o1",
            patient_id=patient,
            record_id=record,
        )


def _history_patients(store: Store) -> list[tuple[int, str | None]]:
    with store.read() as conn:
        rows = conn.execute(
            select(RV.c.version_id, RV.c.patient_id)
            .where(RV.c.id == "o1")
            .order_by(RV.c.version_id)
        ).all()
    return [(r.version_id, r.patient_id) for r in rows]


def test_history_rows_follow_their_patient(exchange: Exchange) -> None:
    store = exchange.store
    _put(store, 1, "p1")
    assert _history_patients(store) == []  # the current version lives in resource only
    _put(store, 2, "p1")
    assert _history_patients(store) == [(1, "p1")]
    with store.write() as conn:  # a link or merge moves the record's rows, history included
        assert store.repoint_patient(conn, "p2", record_ids=["r1"]) == 1
    assert _history_patients(store) == [(1, "p2")]
    with store.read() as conn:  # and every other row keyed by the resource
        tokens = set(
            conn.execute(select(TOKEN.c.patient_id).where(TOKEN.c.res_id == "o1")).scalars()
        )
        indexed = conn.execute(select(OBS.c.patient_id).where(OBS.c.id == "o1")).scalar_one()
        current = conn.execute(select(R.c.patient_id).where(R.c.id == "o1")).scalar_one()
    assert tokens == {"p2"} and indexed == current == "p2"
    with store.write() as conn:
        store.set_patient(conn, "Observation", "o1", "p3")
    assert _history_patients(store) == [(1, "p3")]
    _put(store, 3, "p4")  # a new version for another patient takes its history along
    assert _history_patients(store) == [(1, "p4"), (2, "p4")]
    assert [v for v, _, _ in store.history("Observation", "o1", 10)] == [3, 2, 1]
    found = store.version("Observation", "o1", 2)
    assert found is not None and found[1].replace(tzinfo=UTC) == T0 + timedelta(hours=2)
