"""City events → FHIR R4 transaction Bundles, shaped like what hie's own adapters produce.

Identifiers follow ``hie.naming`` exactly as the HL7 v2 mapping writes them (filler order
number on the DiagnosticReport, ``{filler}.{LOINC}`` on each Observation, the MRN of the
sending hospital plus the national ID on the Patient), so the NDJSON and the ORU^R01 files
describe the same results under the same identifiers. Entries point at each other with
``urn:uuid:`` full URLs (FHIR R4 §3.1.0.11.2, transaction reference resolution) derived from
the hospital and filler number, so the same seed gives byte-identical output.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from bench.events import Event, Order, Study
from bench.panels import Test, range_text
from bench.people import Person
from hie import naming

JSON = dict[str, Any]

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_NS = uuid.UUID("0f6b4a8e-2c1d-4e57-9b0a-51e1c7d3a2b4")
_FLAG = {"H": "High", "L": "Low"}
_LAB = [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}]


def fhir_datetime(when: datetime) -> str:
    """``2024-03-01T08:15:00+08:00``: seconds and the zone, as FHIR instant/dateTime want."""
    return when.isoformat(timespec="seconds")


def urn(hospital: str, key: str, role: str) -> str:
    """A name-based UUID (RFC 4122 §4.3, version 5), formatted without uuid.UUID's overhead."""
    b = bytearray(hashlib.sha1(_NS.bytes + f"{hospital}|{key}|{role}".encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ident(system: str, value: str, type_code: str | None = None) -> JSON:
    out: JSON = {}
    if type_code:
        out["type"] = {"coding": [{"system": V2_0203, "code": type_code}]}
    out["system"] = system
    out["value"] = value
    return out


def patient(who: Person, hospital: str, mrn: str, with_national_id: bool) -> JSON:
    idents = [_ident(naming.mrn(hospital), mrn, "MR")]
    if who.national_id and with_national_id:
        idents.append(_ident(naming.NATIONAL_ID, who.national_id, "NI"))
    if who.passport:
        idents.append(_ident(naming.passport(who.passport[0]), who.passport[1], "PPN"))
    return {
        "resourceType": "Patient",
        "identifier": idents,
        "name": [{"text": who.text, "family": who.family, "given": [who.given]}],
        "gender": who.gender,
        "birthDate": who.birth_date.isoformat(),
    }


def _quantity(value: float | int, test: Test) -> JSON:
    return {"value": value, "unit": test.unit, "system": naming.UCUM, "code": test.unit}


def observation(order: Order, n: int, subject: str, times: tuple[str, str]) -> JSON:
    result = order.results[n]
    test, value = result.test, result.value
    h = order.hospital.id
    obs: JSON = {
        "resourceType": "Observation",
        "identifier": [{"system": naming.result_id(h), "value": f"{order.filler}.{test.loinc}"}],
        "status": result.status,
        "category": _LAB,
        "code": {"coding": [{"system": naming.LOINC, "code": test.loinc, "display": test.name}]},
        "subject": {"reference": subject},
        "effectiveDateTime": times[0],
        "issued": times[1],
        "performer": [{"reference": f"Organization/{h}"}],
    }
    if value.number is not None:
        obs["valueQuantity"] = _quantity(value.number, test)
    elif value.text is not None:
        obs["valueString"] = value.text
    else:
        obs["dataAbsentReason"] = {"coding": [{"system": ABSENT, "code": "not-performed"}]}
    if value.flag:
        obs["interpretation"] = [
            {
                "coding": [
                    {"system": INTERPRETATION, "code": value.flag, "display": _FLAG[value.flag]}
                ]
            }
        ]
    if test.low is not None or test.high is not None:
        rng: JSON = {}
        if test.low is not None:
            rng["low"] = _quantity(test.low, test)
        if test.high is not None:
            rng["high"] = _quantity(test.high, test)
        obs["referenceRange"] = [rng]
    elif test.ordinal:
        obs["referenceRange"] = [{"text": range_text(test)}]
    return obs


def report(order: Order, subject: str, results: list[str], times: tuple[str, str]) -> JSON:
    h = order.hospital.id
    panel = order.panel
    system = naming.local_codes(h) if panel.system == "local" else panel.system
    out: JSON = {
        "resourceType": "DiagnosticReport",
        "identifier": [_ident(naming.filler_order(h), order.filler, "FILL")],
        "status": order.status,
        "category": [{"coding": [{"system": V2_0074, "code": "LAB", "display": "Laboratory"}]}],
        "code": {"coding": [{"system": system, "code": panel.code, "display": panel.name}]},
        "subject": {"reference": subject},
        "effectiveDateTime": times[0],
        "issued": times[1],
        "performer": [{"reference": f"Organization/{h}"}],
    }
    if results:
        out["result"] = [{"reference": r} for r in results]
    return out


def imaging_study(study: Study, subject: str) -> JSON:
    h = study.hospital.id
    modality = {"system": naming.DICOM_DCM, "code": study.modality}
    site = {"system": naming.SNOMED, "code": study.body_site[0], "display": study.body_site[1]}
    per_series, extra = divmod(study.instances, study.series)
    series = [
        {
            "uid": f"{study.uid}.{i}",
            "number": i,
            "modality": modality,
            "bodySite": site,
            "numberOfInstances": per_series + (1 if i <= extra else 0),
        }
        for i in range(1, study.series + 1)
    ]
    return {
        "resourceType": "ImagingStudy",
        "identifier": [
            {"system": naming.DICOM_UID, "value": f"urn:oid:{study.uid}"},
            _ident(f"{naming.BASE}/sid/accession/{h}", study.accession, "ACSN"),
        ],
        "status": "available",
        "modality": [modality],
        "subject": {"reference": subject},
        "started": fhir_datetime(study.started),
        "numberOfSeries": study.series,
        "numberOfInstances": study.instances,
        "description": study.description,
        "series": series,
    }


def _entry(full_url: str, resource: JSON) -> JSON:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def bundle(event: Event) -> tuple[JSON, int]:
    """The transaction Bundle for one event and how many Observations (results) it holds."""
    h = event.hospital.id
    key = event.filler if isinstance(event, Order) else event.uid
    version = event.status if isinstance(event, Order) else "study"
    subject = urn(h, key, f"patient:{version}")
    entries = [_entry(subject, patient(event.person, h, event.mrn, event.with_national_id))]
    if isinstance(event, Study):
        entries.append(_entry(urn(h, key, "study"), imaging_study(event, subject)))
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, 0
    times = (fhir_datetime(event.collected), fhir_datetime(event.issued))
    results = [urn(h, key, f"obs:{n}:{version}") for n in range(len(event.results))]
    for n, full_url in enumerate(results):
        entries.append(_entry(full_url, observation(event, n, subject, times)))
    report_url = urn(h, key, f"report:{version}")
    entries.append(_entry(report_url, report(event, subject, results, times)))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, len(results)
