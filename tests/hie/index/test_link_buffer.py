"""Linking new hospital records inside one ingest batch (issue 8: bulk load round trips).

A batch's units are planned one after the other against what the batch has written so far,
and some rows wait in the batch's write buffer until its end. Whatever a later unit of the
same batch looks up to link a patient (the MPI's identifier and candidate lookups, a
record's own link, a result's subject by id or identifier) must see the patients earlier
units made, exactly as if every unit had been written alone. Today a new exchange patient's
rows are written at once (about ten statements each); these tests are the contract any
change that queues them in the batch's buffer must keep. Input is a tiny synthetic city
(bench/city.py) with valid national IDs.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from adapters.base import Batch, Cursor, Unit
from bench.city import generate
from hie import naming
from hie.bulk import ndjson_unit
from hie.exchange import Exchange
from hie.index.mpi import BLOCK, EVENT, TRAITS
from hie.index.patients import EP, PI, PR
from hie.index.store import R
from tests.hie.test_ingest_batch import refusing

JSON = dict[str, Any]


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[JSON]]:
    """One hospital's Bundles, one per person (the first Bundle of each MRN)."""
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=30, hospitals=2, seed=8)
    path = max((out / "fhir").glob("*.ndjson"), key=lambda p: p.stat().st_size)
    firsts: dict[str, JSON] = {}
    for line in path.read_bytes().splitlines():
        doc = orjson.loads(line)
        mrn = _mrn(_patient(doc))
        firsts.setdefault(mrn, doc)
    assert len(firsts) >= 8
    return path.stem, list(firsts.values())


def _patient(doc: JSON) -> JSON:
    return next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")


def _observations(doc: JSON) -> list[JSON]:
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"]


def _mrn(patient: JSON) -> str:
    return next(i["value"] for i in patient["identifier"] if "/sid/mrn/" in i["system"])


def _unit(doc: JSON, key: str, hospital: str) -> Unit:
    unit = ndjson_unit(orjson.dumps(doc), key, hospital)
    assert isinstance(unit, Unit)
    return unit


def _ingest(exchange: Exchange, hospital: str, docs: list[JSON]) -> list[str]:
    units = [_unit(d, f"u{n}", hospital) for n, d in enumerate(docs)]
    result = exchange.ingestor.ingest(Batch(hospital, "bulk-ndjson", units, [], Cursor("t", "1")))
    return [i.status for i in result.items]


def _count(exchange: Exchange, table: Any, *where: Any) -> int:
    with exchange.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _identity_counts(exchange: Exchange) -> tuple[int, ...]:
    return tuple(_count(exchange, table) for table in (EP, PR, PI, EVENT, TRAITS, BLOCK))


def _record_patient(exchange: Exchange, hospital: str, mrn: str) -> str:
    source = f"{naming.mrn(hospital)}|{mrn}"
    with exchange.store.read() as conn:
        rid = conn.execute(
            select(R.c.id).where(R.c.type == "Patient", R.c.source_id == source)
        ).scalar_one()
        return str(conn.execute(select(PR.c.patient_id).where(PR.c.record_id == rid)).scalar_one())


def _second_registration(doc: JSON, mrn: str) -> JSON:
    """The same person registered again under another MRN, with new result ids."""
    again = copy.deepcopy(doc)
    for ident in _patient(again)["identifier"]:
        if "/sid/mrn/" in ident["system"]:
            ident["value"] = mrn
    for entry in again["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Patient":  # results and reports: new source ids
            for ident in res.get("identifier") or []:
                ident["value"] += "-again"
    return again


def test_two_records_of_one_person_in_one_batch_are_one_exchange_patient(
    exchange: Exchange, people: tuple[str, list[JSON]]
) -> None:
    hospital, docs = people
    first, other = docs[0], docs[1]
    again = _second_registration(first, "DUP-0001")
    assert _ingest(exchange, hospital, [first, other, again]) == ["created"] * 3
    assert _count(exchange, EP) == 2
    one = _record_patient(exchange, hospital, _mrn(_patient(first)))
    assert _record_patient(exchange, hospital, "DUP-0001") == one
    assert _record_patient(exchange, hospital, _mrn(_patient(other))) != one
    with exchange.store.read() as conn:
        rules = {
            r.rule for r in conn.execute(select(EVENT.c.rule).where(EVENT.c.to_patient == one))
        }
    assert rules == {"new", "deterministic:national-id"}
    # the master lists both records, and every result of the person points at it
    master = exchange.store.get("Patient", one)
    assert master is not None
    links = orjson.loads(master.body)["link"]
    assert len([x for x in links if x["type"] == "seealso"]) == 2
    results = len(_observations(first)) + len(_observations(again))
    assert _count(exchange, R, R.c.type == "Observation", R.c.patient_id == one) == results


def test_a_record_changed_later_in_the_same_batch_is_linked_once(
    exchange: Exchange, people: tuple[str, list[JSON]]
) -> None:
    hospital, docs = people
    first = docs[2]
    changed = copy.deepcopy(first)
    _patient(changed)["telecom"] = [{"system": "phone", "value": "13912345678"}]
    assert _ingest(exchange, hospital, [first, docs[3], changed]) == [
        "created",
        "created",
        "updated",
    ]
    pid = _record_patient(exchange, hospital, _mrn(_patient(first)))
    assert _count(exchange, EP) == 2 and _count(exchange, PR) == 2
    assert _count(exchange, EVENT) == 2  # one link each; the change re-links nothing
    assert _count(exchange, PI, PI.c.patient_id == pid) == len(_patient(first)["identifier"])
    with exchange.store.read() as conn:
        traits = conn.execute(select(TRAITS.c.traits).where(TRAITS.c.patient_id == pid)).scalar()
        blocks = {r.key for r in conn.execute(select(BLOCK.c.key).where(BLOCK.c.patient_id == pid))}
    assert "13912345678" in str(traits) and "ph:13912345678" in blocks
    master = exchange.store.get("Patient", pid)
    assert master is not None and b"13912345678" in master.body


def test_a_result_may_name_a_patient_of_the_same_batch_by_identifier(
    exchange: Exchange, people: tuple[str, list[JSON]]
) -> None:
    hospital, docs = people
    first = docs[4]
    mrn = _mrn(_patient(first))
    by_identifier = {"system": naming.mrn(hospital), "value": mrn}
    # a later unit of the batch: a result alone, its subject the MRN of unit 0's new patient
    later = copy.deepcopy(_observations(first)[0])
    later["identifier"][0]["value"] += "-later"
    later["subject"] = {"identifier": by_identifier}
    # one unit: a new patient and a result naming it by MRN instead of by its entry
    inner = copy.deepcopy(docs[5])
    _observations(inner)[0]["subject"] = {
        "identifier": {"system": naming.mrn(hospital), "value": _mrn(_patient(inner))}
    }
    statuses = _ingest(
        exchange,
        hospital,
        [
            first,
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": later, "request": {"method": "POST", "url": "Observation"}}],
            },
            inner,
        ],
    )
    assert statuses == ["created"] * 3
    pid = _record_patient(exchange, hospital, mrn)
    source = f"{later['identifier'][0]['system']}|{later['identifier'][0]['value']}"
    assert _count(exchange, R, R.c.source_id == source, R.c.patient_id == pid) == 1
    inner_pid = _record_patient(exchange, hospital, _mrn(_patient(inner)))
    expected = len(_observations(inner))
    assert _count(exchange, R, R.c.type == "Observation", R.c.patient_id == inner_pid) == expected


def test_a_batch_sent_again_changes_no_identity_row(
    exchange: Exchange, people: tuple[str, list[JSON]]
) -> None:
    hospital, docs = people
    batch = [*docs[:6], _second_registration(docs[0], "DUP-0002")]
    assert _ingest(exchange, hospital, batch) == ["created"] * len(batch)
    before = _identity_counts(exchange)
    assert before[0] == 6 and before[1] == 7
    assert _ingest(exchange, hospital, batch) == ["unchanged"] * len(batch)
    assert _identity_counts(exchange) == before


def test_a_unit_that_fails_after_linking_leaves_no_identity_rows(
    exchange: Exchange, people: tuple[str, list[JSON]]
) -> None:
    hospital, docs = people
    orphan = copy.deepcopy(docs[6])
    _observations(orphan)[-1]["subject"] = {"reference": "Patient/nobody-knows-this-one"}
    assert _ingest(exchange, hospital, [docs[0], orphan, docs[1]]) == [
        "created",
        "rejected",
        "created",
    ]
    assert _identity_counts(exchange)[:4] == (2, 2, 2 * len(_patient(docs[0])["identifier"]), 2)
    # sent again, fixed: linked now, once
    assert _ingest(exchange, hospital, [docs[6]]) == ["created"]
    assert _count(exchange, EP) == 3 and _count(exchange, EVENT) == 3


def test_a_batch_the_database_refuses_keeps_its_new_patients_unit_by_unit(
    exchange: Exchange, people: tuple[str, list[JSON]]
) -> None:
    hospital, docs = people
    bad = copy.deepcopy(docs[7])
    _observations(bad)[0]["identifier"][0]["value"] = "REFUSE-ME"
    batch = [docs[0], bad, docs[1], _second_registration(docs[0], "DUP-0003")]
    with refusing(exchange, "REFUSE-ME"):  # the batch's write fails: then unit by unit
        statuses = _ingest(exchange, hospital, batch)
    assert statuses == ["created", "rejected", "created", "created"]
    patients = 2
    assert _count(exchange, EP) == patients
    assert _count(exchange, PR) == patients + 1  # the second registration joined docs[0]'s
    assert _count(exchange, EVENT) == patients + 1
    pid = _record_patient(exchange, hospital, _mrn(_patient(docs[0])))
    assert _record_patient(exchange, hospital, "DUP-0003") == pid
