"""``SqlDirectory``: the linker's view of the index answers as the in-memory directory does.

Written for issue 8: a new hospital record's decision reads its identifiers (one statement for
all of them) and its candidate block with the candidates' traits (one statement, merges
followed) instead of a round trip per identifier and two for the block.
"""

from __future__ import annotations

import orjson
from sqlalchemy import insert, update

from hie.exchange import Exchange
from hie.fhirtime import now_utc
from hie.identity.directory import Candidate
from hie.identity.traits import Traits, from_patient
from hie.index.mpi import BLOCK, TRAITS, SqlDirectory
from hie.index.patients import EP


def _traits(name: str, born: str) -> Traits:
    return from_patient(
        {
            "resourceType": "Patient",
            "name": [{"text": name}],
            "birthDate": born,
            "gender": "female",
        }
    )


def test_candidates_come_with_their_traits_and_merges_followed(exchange: Exchange) -> None:
    registry, now = exchange.registry, now_utc()
    people = {n: _traits(n, born) for n, born in (("王芳", "1980-01-02"), ("李娜", "1975-05-06"))}
    with exchange.store.write() as conn:
        a, merged, survivor, other = (registry.new_patient(conn, now) for _ in range(4))
        conn.execute(update(EP).where(EP.c.id == merged).values(merged_into=survivor))
        for pid, who in ((a, "王芳"), (merged, "李娜"), (survivor, "李娜"), (other, "李娜")):
            conn.execute(insert(TRAITS).values(patient_id=pid, traits=_json(people[who])))
        # block k: a, and the merged patient (a block row left behind); block j: other only
        for key, pid in (("k", a), ("k", merged), ("j", other)):
            conn.execute(insert(BLOCK).values(key=key, patient_id=pid))
        directory = SqlDirectory(conn, registry)
        found = directory.candidates(["k"])
        both = directory.candidates(["k", "j", "nobody"])
        none = directory.candidates(["nobody"])
    assert found == sorted(
        [Candidate(a, people["王芳"]), Candidate(survivor, people["李娜"])],
        key=lambda c: c.patient_id,
    )
    assert {c.patient_id for c in both} == {a, survivor, other}
    assert len(both) == 3 and none == []


def _json(traits: Traits) -> str:
    return orjson.dumps(traits.to_json()).decode()
