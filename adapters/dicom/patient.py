"""The Patient a study belongs to, as the PACS knows them (Patient module, PS3.3 §C.7.1.1).

The exchange links the patient by identifiers, so what matters here is giving each DICOM
patient identifier the right system:

* ``PatientID`` (0010,0020) is qualified by ``IssuerOfPatientID`` (0010,0021). Absent, or
  equal to the hospital id, it is the hospital's MRN (``naming.mrn(hospital_id)``).
* ``OtherPatientIDsSequence`` (0010,1002) items carry their own issuer and map the same way;
  an item without an issuer is *not* taken as an MRN (it is some other number) but treated
  like the next case.
* ``OtherPatientIDs`` (0010,1000, retired but still sent by many modalities) has no issuer;
  a value that passes ``hie.identity.national_id.validate`` (GB 11643: 18 characters, known
  province, check character, real birth date) is taken as a resident identity number. Other
  bare values cannot be placed in any namespace and are left out.
* A number whose issuer *says* it is a national ID is passed on as sent; if it fails GB 11643
  ingest rejects the record with the identity module's reason, as for every other feed.

Issuer conventions (case-insensitive), checked after the per-hospital ``issuer_systems``
table from the hospital's config, which wins:

=============================================  ===================================================
IssuerOfPatientID                              identifier system
=============================================  ===================================================
the hospital id, or absent (PatientID only)    ``naming.mrn(hospital_id)``
``CN-RESIDENT-ID``, ``NNCHN``, ``GB11643``     ``naming.NATIONAL_ID``
``CN-HEALTH-CARD``                             ``naming.HEALTH_CARD``
``PASSPORT-<ISO 3166 alpha-3>``                ``naming.passport(<country>)``
anything else                                  ``{BASE}/sid/dicom-issuer/{hospital_id}/{issuer}``
=============================================  ===================================================

``NNCHN`` is HL7 v2 table 0363's form (``NN`` + country) for a national person identifier.
An unknown issuer gets a namespace of its own under the hospital rather than a guess, so a
label a PACS happens to use can never merge two patients by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from hie import naming
from hie.identity import national_id
from hie.identity.errors import InvalidIdentifier

from . import json_model as dj
from .dates import fhir_date
from .person_name import human_names

JSON = dict[str, Any]

NATIONAL_ID_ISSUERS = frozenset({"CN-RESIDENT-ID", "NNCHN", "GB11643"})
HEALTH_CARD_ISSUERS = frozenset({"CN-HEALTH-CARD"})
PASSPORT_PREFIX = "PASSPORT-"
# PS3.3 §C.7.1.1 Patient's Sex; FHIR administrative-gender
_GENDER = {"M": "male", "F": "female", "O": "other"}


def unknown_issuer_system(hospital_id: str, issuer: str) -> str:
    return f"{naming.BASE}/sid/dicom-issuer/{hospital_id}/{quote(issuer, safe='')}"


def identifier_system(
    issuer: str | None, hospital_id: str, issuer_systems: Mapping[str, str] | None = None
) -> str:
    """The identifier system for a patient id given its DICOM issuer (see module table)."""
    if issuer is None or not issuer.strip():
        return naming.mrn(hospital_id)
    key = issuer.strip()
    folded = key.upper()
    for configured, system in (issuer_systems or {}).items():
        if configured.upper() == folded:
            return system
    if folded == hospital_id.upper():
        return naming.mrn(hospital_id)
    if folded in NATIONAL_ID_ISSUERS:
        return naming.NATIONAL_ID
    if folded in HEALTH_CARD_ISSUERS:
        return naming.HEALTH_CARD
    if folded.startswith(PASSPORT_PREFIX) and len(folded) > len(PASSPORT_PREFIX):
        return naming.passport(folded[len(PASSPORT_PREFIX) :])
    return unknown_issuer_system(hospital_id, key)


def _is_national_id(value: str) -> bool:
    """Whether a number without an issuer passes GB 11643 (the identity module's rules).

    Only a number that validates is taken: a bare value that merely looks like one could be
    anything, and a wrong national ID would hold the whole study back at ingest.
    """
    try:
        national_id.validate(value)
    except InvalidIdentifier:
        return False
    return True


def _identifier(system: str, value: str, hospital_id: str) -> JSON:
    if system == naming.NATIONAL_ID:
        value = national_id.normalise(value)  # full-width digits, lower-case x
    ident: JSON = {"system": system, "value": value}
    if naming.mrn_hospital(system) == hospital_id:
        ident["type"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
        }
        ident["assigner"] = {"reference": f"Organization/{hospital_id}"}
    return ident


def identifiers(
    study: JSON, hospital_id: str, issuer_systems: Mapping[str, str] | None = None
) -> list[JSON]:
    """All identifiers of the patient, PatientID first, without duplicates."""
    found: list[JSON] = []
    seen: set[tuple[str, str]] = set()

    def add(system: str, value: str) -> None:
        ident = _identifier(system, value, hospital_id)
        key = (ident["system"], ident["value"])
        if key not in seen:
            seen.add(key)
            found.append(ident)

    patient_id = dj.text(study, dj.PATIENT_ID)
    if patient_id:
        issuer = dj.text(study, dj.ISSUER_OF_PATIENT_ID)
        add(identifier_system(issuer, hospital_id, issuer_systems), patient_id)
    unqualified = list(dj.texts(study, dj.OTHER_PATIENT_IDS))
    for item in dj.items(study, dj.OTHER_PATIENT_IDS_SEQUENCE):
        other = dj.text(item, dj.PATIENT_ID)
        issuer = dj.text(item, dj.ISSUER_OF_PATIENT_ID)
        if other and issuer:
            add(identifier_system(issuer, hospital_id, issuer_systems), other)
        elif other:
            unqualified.append(other)
    for other in unqualified:
        if _is_national_id(other):
            add(naming.NATIONAL_ID, other)
    return found


def patient_resource(
    study: JSON, hospital_id: str, issuer_systems: Mapping[str, str] | None = None
) -> JSON:
    """A Patient carrying what the PACS knows; ingest links it to the exchange's patient."""
    resource: JSON = {
        "resourceType": "Patient",
        "identifier": identifiers(study, hospital_id, issuer_systems),
    }
    names = [n for pn in dj.person_names(study, dj.PATIENT_NAME) for n in human_names(pn)]
    if names:
        resource["name"] = names
    sex = dj.text(study, dj.PATIENT_SEX)
    if sex and sex.upper() in _GENDER:
        resource["gender"] = _GENDER[sex.upper()]
    born = fhir_date(dj.text(study, dj.PATIENT_BIRTH_DATE))
    if born:
        resource["birthDate"] = born
    return resource
