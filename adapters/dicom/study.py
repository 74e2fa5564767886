"""One DICOM study → one :class:`~adapters.base.Unit`: Patient, Endpoint and ImagingStudy.

Pure: study- and series-level attributes in the DICOM JSON model (PS3.18 §F.2) go in, FHIR
R4 JSON comes out. QIDO-RS results feed it directly; the folder adapter first folds instance
headers into the same shape (``dataset.py``). Mapping choices, with their sources:

* ``identifier``: StudyInstanceUID as ``urn:dicom:uid`` / ``urn:oid:<uid>`` (FHIR R4
  ImagingStudy notes), AccessionNumber typed ``ACSN`` (v2 table 0203) in the hospital's
  accession namespace ``{BASE}/sid/accession/{hospital_id}``.
* ``subject``: the Patient entry of the same unit (``patient.py`` explains the identifiers).
* ``started``: StudyDate + StudyTime, zone from TimezoneOffsetFromUTC or the PACS default.
* ``series[].bodySite``: Body Part Examined through the Annex L ConceptMap (``body_site.py``).
* ``procedureCode``: Requested Procedure Code Sequence (0032,1064), else Procedure Code
  Sequence (0008,1032); coding scheme designators (PS3.16 §8) mapped to FHIR systems.
* ``referrer``: Referring Physician's Name as a display-only reference (no Practitioner is
  known to the exchange).
* ``endpoint``: the PACS's WADO-RS base (``endpoint.py``); none if the source has no URL.

Missing StudyInstanceUID or PatientID is a :class:`~adapters.base.BadMessage`: a study that
cannot be identified, or cannot be tied to a patient, must not land.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydicom.dataset import Dataset

from adapters.base import BadMessage, Entry, Unit
from hie import naming

from . import json_model as dj
from .body_site import BodySiteMap, default_body_sites
from .dataset import StudyHeaders
from .dates import SHANGHAI_OFFSET, fhir_datetime, utc_offset
from .endpoint import endpoint_full_url, endpoint_resource
from .patient import patient_resource
from .person_name import display

JSON = dict[str, Any]

# Raw form of a study, kept with units and dead letters so they can be replayed without the
# source: {"study": <DICOM JSON>, "series": [<DICOM JSON>...], "wadoBaseUrl": <str|null>}.
PAYLOAD_CONTENT_TYPE = "application/vnd.hie.dicom-study+json"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
# PS3.16 §8 Coding Scheme Designators → FHIR code systems (FHIR R4 terminologies page)
CODING_SCHEMES = {
    "LN": naming.LOINC,
    "SCT": naming.SNOMED,
    "SRT": "http://snomed.info/srt",
    "DCM": naming.DICOM_DCM,
    "RADLEX": "http://www.radlex.org",
    "UCUM": naming.UCUM,
}
# PS3.5 §9.1: a UID is an OID (first arc 0-2), dotted decimal without leading zeros, at most
# 64 characters. FHIR ``id`` (series.uid), ``urn:oid:`` and hie's ImagingStudy profile
# (hie-img-1) all depend on it, so anything else is refused here with the reason.
_UID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")


def accession_system(hospital_id: str) -> str:
    return f"{naming.BASE}/sid/accession/{hospital_id}"


def study_reference(study_uid: str) -> JSON:
    """A logical Reference to the ImagingStudy of ``study_uid``, by its identifier.

    For imaging reports (DiagnosticReport.imagingStudy) from a RIS, which know the Study
    Instance UID (e.g. HL7 v2 OBX with value type RP, or IHE's ZDS segment) but not the
    exchange's resource id. The identifier is the one :func:`imaging_study` writes.
    """
    uid = _uid(study_uid.strip(), "StudyInstanceUID", dj.STUDY_INSTANCE_UID)
    return {
        "type": "ImagingStudy",
        "identifier": {"system": naming.DICOM_UID, "value": f"urn:oid:{uid}"},
    }


@dataclass(frozen=True)
class Pacs:
    """What the mapping must know about the PACS the studies came from (hospital config)."""

    hospital_id: str
    wado_base_url: str | None = None
    body_sites: BodySiteMap = field(default_factory=default_body_sites)
    issuer_systems: Mapping[str, str] = field(default_factory=dict)
    default_offset: str = SHANGHAI_OFFSET


def _uid(value: str | None, what: str, tag: str, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise BadMessage(f"{what} ({tag[:4]},{tag[4:]}) is missing", location=_loc(tag))
        return None
    if len(value) > 64 or not _UID.match(value):
        raise BadMessage(f"{what} {value!r} is not a DICOM UID (PS3.5 §9.1)", location=_loc(tag))
    return value


def _loc(tag: str) -> str:
    return f"({tag[:4]},{tag[4:]})"


def _modality(code: str | None) -> JSON:
    # A series without Modality (type 1 in the General Series module) is shown as OT, "Other".
    value = code.upper() if code and _MODALITY.match(code.upper()) else "OT"
    return {"system": naming.DICOM_DCM, "code": value}


def _codeable_concept(items: list[JSON], text: str | None, hospital_id: str) -> JSON | None:
    codings: list[JSON] = []
    for item in items:
        code = dj.text(item, dj.CODE_VALUE)
        if not code:
            continue
        scheme = (dj.text(item, dj.CODING_SCHEME_DESIGNATOR) or "").upper()
        coding: JSON = {
            "system": CODING_SCHEMES.get(scheme, naming.local_codes(hospital_id)),
            "code": code,
        }
        meaning = dj.text(item, dj.CODE_MEANING)
        if meaning:
            coding["display"] = meaning
        codings.append(coding)
    if not codings and not text:
        return None
    concept: JSON = {}
    if codings:
        concept["coding"] = codings
    if text:
        concept["text"] = text
    return concept


def _series(obj: JSON, pacs: Pacs, zone: str) -> JSON:
    uid = _uid(dj.text(obj, dj.SERIES_INSTANCE_UID), "SeriesInstanceUID", dj.SERIES_INSTANCE_UID)
    out: JSON = {"uid": uid}
    number = dj.integer(obj, dj.SERIES_NUMBER)
    if number is not None and number >= 0:
        out["number"] = number
    out["modality"] = _modality(dj.text(obj, dj.MODALITY))
    description = dj.text(obj, dj.SERIES_DESCRIPTION)
    if description:
        out["description"] = description
    count = dj.integer(obj, dj.NUMBER_OF_SERIES_RELATED_INSTANCES)
    if count is not None and count >= 0:
        out["numberOfInstances"] = count
    site = pacs.body_sites.coding(dj.text(obj, dj.BODY_PART_EXAMINED))
    if site is not None:
        out["bodySite"] = site
    started = fhir_datetime(
        dj.text(obj, dj.SERIES_DATE),
        dj.text(obj, dj.SERIES_TIME),
        dj.text(obj, dj.TIMEZONE_OFFSET_FROM_UTC),
        zone,
    )
    if started:
        out["started"] = started
    return out


def _series_order(series: JSON) -> tuple[int, int, str]:
    number = series.get("number")
    return (number is None, number if isinstance(number, int) else 0, series["uid"])


def imaging_study(
    study: JSON,
    series: Sequence[JSON],
    pacs: Pacs,
    *,
    subject: JSON,
    endpoint: JSON | None,
) -> JSON:
    """The ImagingStudy resource; ``subject`` and ``endpoint`` are the references to use."""
    uid = _uid(dj.text(study, dj.STUDY_INSTANCE_UID), "StudyInstanceUID", dj.STUDY_INSTANCE_UID)
    offset = dj.text(study, dj.TIMEZONE_OFFSET_FROM_UTC)
    zone = utc_offset(offset) or pacs.default_offset
    resource: JSON = {
        "resourceType": "ImagingStudy",
        "identifier": [{"use": "official", "system": naming.DICOM_UID, "value": f"urn:oid:{uid}"}],
        "status": "available",
    }
    accession = dj.text(study, dj.ACCESSION_NUMBER)
    if accession:
        resource["identifier"].append(
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                "system": accession_system(pacs.hospital_id),
                "value": accession,
                "assigner": {"reference": f"Organization/{pacs.hospital_id}"},
            }
        )
    mapped_series = sorted((_series(s, pacs, zone) for s in series), key=_series_order)
    seen_uids: set[str] = set()
    unique_series = []
    for s in mapped_series:
        if s["uid"] not in seen_uids:
            seen_uids.add(s["uid"])
            unique_series.append(s)
    modalities = {m.upper() for m in dj.texts(study, dj.MODALITIES_IN_STUDY)}
    modalities |= {s["modality"]["code"] for s in unique_series}
    modalities = {m for m in modalities if _MODALITY.match(m)}
    if modalities:
        resource["modality"] = [_modality(m) for m in sorted(modalities)]
    resource["subject"] = subject
    started = fhir_datetime(
        dj.text(study, dj.STUDY_DATE), dj.text(study, dj.STUDY_TIME), None, zone
    )
    if started is None:
        # StudyDate is type 2 (may be empty); the earliest series start is the next best.
        # hie's profile requires ``started`` (recognition windows are measured from it).
        series_starts = sorted(s["started"] for s in unique_series if "started" in s)
        started = series_starts[0] if series_starts else None
    if started is None:
        raise BadMessage(
            "StudyDate (0008,0020) is missing or not a date and no series has a SeriesDate: "
            "the study cannot be placed in time",
            location=_loc(dj.STUDY_DATE),
        )
    resource["started"] = started
    referrers = [display(pn) for pn in dj.person_names(study, dj.REFERRING_PHYSICIAN_NAME)]
    if referrers and referrers[0]:
        resource["referrer"] = {"display": referrers[0]}
    if endpoint is not None:
        resource["endpoint"] = [endpoint]
    number_of_series = dj.integer(study, dj.NUMBER_OF_STUDY_RELATED_SERIES)
    if number_of_series is None and unique_series:
        number_of_series = len(unique_series)
    if number_of_series is not None:
        resource["numberOfSeries"] = number_of_series
    number_of_instances = dj.integer(study, dj.NUMBER_OF_STUDY_RELATED_INSTANCES)
    if number_of_instances is None and unique_series:
        counts = [s.get("numberOfInstances") for s in unique_series]
        if all(isinstance(c, int) for c in counts):
            number_of_instances = sum(c for c in counts if isinstance(c, int))
    if number_of_instances is not None:
        resource["numberOfInstances"] = number_of_instances
    procedure = _codeable_concept(
        dj.items(study, dj.REQUESTED_PROCEDURE_CODE_SEQUENCE)
        or dj.items(study, dj.PROCEDURE_CODE_SEQUENCE),
        dj.text(study, dj.REQUESTED_PROCEDURE_DESCRIPTION),
        pacs.hospital_id,
    )
    if procedure is not None:
        resource["procedureCode"] = [procedure]
    description = dj.text(study, dj.STUDY_DESCRIPTION)
    if description:
        resource["description"] = description
    if unique_series:
        resource["series"] = unique_series
    return resource


def _local_url(hospital_id: str, kind: str, key: str) -> str:
    """A stable ``urn:uuid`` for an entry, so a unit built twice is byte-for-byte the same."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{hospital_id}|{kind}|{key}')}"


def study_payload(study: JSON, series: Sequence[JSON], wado_base_url: str | None = None) -> bytes:
    """The raw form kept with a unit or dead letter; :func:`unit_from_payload` replays it."""
    body = {"study": study, "series": list(series), "wadoBaseUrl": wado_base_url}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def study_unit(study: JSON, series: Sequence[JSON], pacs: Pacs) -> Unit:
    """Patient + Endpoint (when the PACS has a DICOMweb URL) + ImagingStudy, landing together."""
    uid = _uid(dj.text(study, dj.STUDY_INSTANCE_UID), "StudyInstanceUID", dj.STUDY_INSTANCE_UID)
    assert uid is not None
    patient_id = dj.text(study, dj.PATIENT_ID)
    if not patient_id:
        raise BadMessage(
            "PatientID (0010,0020) is missing: the study cannot be linked to a patient",
            location=_loc(dj.PATIENT_ID),
        )
    patient = patient_resource(study, pacs.hospital_id, pacs.issuer_systems)
    patient_url = _local_url(pacs.hospital_id, "patient", patient_id)
    entries = [Entry(patient, patient_url)]
    endpoint_ref: JSON | None = None
    if pacs.wado_base_url:
        endpoint_url = endpoint_full_url(pacs.hospital_id, pacs.wado_base_url)
        entries.append(Entry(endpoint_resource(pacs.hospital_id, pacs.wado_base_url), endpoint_url))
        endpoint_ref = {"reference": endpoint_url}
    study_resource = imaging_study(
        study, series, pacs, subject={"reference": patient_url}, endpoint=endpoint_ref
    )
    study_url = _local_url(pacs.hospital_id, "study", uid)
    entries.append(Entry(study_resource, study_url))
    return Unit(
        key=uid,
        entries=tuple(entries),
        raw=study_payload(study, series, pacs.wado_base_url),
        content_type=PAYLOAD_CONTENT_TYPE,
        trusted=True,
    )


def unit_from_payload(raw: bytes, pacs: Pacs | str) -> Unit:
    """Replay a unit or dead letter kept by either imaging adapter (``study_payload`` form).

    ``pacs`` may be just the hospital id: the payload remembers the DICOMweb base URL the
    study was read with. A Pacs with its own ``wado_base_url`` overrides it.
    """
    try:
        body = json.loads(raw)
        study, series = body["study"], body["series"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadMessage(f"not an imaging study payload: {exc}") from exc
    if not isinstance(study, dict) or not isinstance(series, list):
        raise BadMessage("not an imaging study payload: study must be an object, series a list")
    if isinstance(pacs, str):
        pacs = Pacs(pacs)
    remembered = body.get("wadoBaseUrl")
    if pacs.wado_base_url is None and isinstance(remembered, str) and remembered:
        pacs = replace(pacs, wado_base_url=remembered)
    return study_unit(study, [s for s in series if isinstance(s, dict)], pacs)


def study_unit_from_datasets(datasets: Sequence[Dataset], pacs: Pacs) -> Unit:
    """The unit for one study given the headers of its instances (pydicom Datasets)."""
    if not datasets:
        raise BadMessage("no instances given for the study")
    uid = _uid(
        str(datasets[0].get("StudyInstanceUID", "")).strip() or None,
        "StudyInstanceUID",
        dj.STUDY_INSTANCE_UID,
    )
    assert uid is not None
    headers = StudyHeaders(uid)
    for ds in datasets:
        headers.add(ds)
    headers.check()
    return study_unit(headers.study_json(), headers.series_json(), pacs)
