"""Hospitals from the configuration, served as FHIR Organization resources (id = hospital id)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, text

from hie import naming
from hie.fhirtime import now_utc
from hie.hospitals import HospitalsConfig
from hie.index import tables as t
from hie.index.store import Store, content_hash

H = t.Hospital.__table__  # type: ignore[attr-defined]
LEVEL_ZH = {"3A": "三级甲等", "3B": "三级乙等", "2A": "二级甲等", "2B": "二级乙等", "1": "一级"}
# pg_advisory_xact_lock's key for the hospitals' sync: any constant, the same in every process
SYNC_LOCK = 0x6869_6520_6F72_67  # "hie org"


def organization(h: Any) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": f"{naming.BASE}/sid/hospital", "value": h.id}],
        "active": True,
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                        "code": "prov",
                        "display": "Healthcare Provider",
                    }
                ],
                "text": LEVEL_ZH.get(h.level, h.level),
            }
        ],
        "name": h.name_zh,
        "alias": [h.name_en],
        "extension": [
            {"url": f"{naming.BASE}/fhir/StructureDefinition/hospital-level", "valueCode": h.level}
        ],
    }


def sync_hospitals(store: Store, config: HospitalsConfig) -> int:
    """Write each configured hospital as an Organization; unchanged ones make no new version.

    Every API process does this at start, and several may start at once: they sync one at a
    time, and the later ones find the rows written. On PostgreSQL a transaction advisory lock
    serializes them (without it, the second process's INSERT of the same ids failed its start
    with a unique violation); SQLite's write transactions already queue (BEGIN IMMEDIATE).
    """
    now = now_utc()
    changed = 0
    with store.write() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SYNC_LOCK})
        conn.execute(delete(H))
        conn.execute(
            insert(H),
            [
                {"id": h.id, "name_zh": h.name_zh, "name_en": h.name_en, "level": h.level}
                for h in config.hospitals
            ],
        )
        for h in config.hospitals:
            org = organization(h)
            prev = store.current(conn, "Organization", h.id)
            digest = content_hash(org)
            if prev is not None and prev.content_hash == digest:
                continue
            store.put(
                conn,
                org,
                rid=h.id,
                prev=prev,
                now=now,
                hospital_id=h.id,
                source_id=f"hospital:{h.id}",
                patient_id=None,
                digest=digest,
            )
            changed += 1
    return changed
