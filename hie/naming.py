"""The identifier and code-system URIs the exchange mints, in one place.

Hospitals' own identifiers are namespaced by hospital id so that MRN 123 at one hospital
never collides with MRN 123 at another. The NamingSystem resources in ``fhir_profiles/``
declare the same URIs for outside readers; keep the two in step.
"""

from __future__ import annotations

import secrets
import time

BASE = "https://hie.example.org"

NATIONAL_ID = f"{BASE}/sid/cn-resident-id"  # 居民身份证号, GB 11643, 18 characters
HEALTH_CARD = f"{BASE}/sid/health-card"
EXCHANGE_PATIENT = f"{BASE}/sid/patient"  # the exchange's own patient id
DICOM_UID = "urn:dicom:uid"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"  # modalities


def passport(country: str) -> str:
    """Passport numbers, one system per issuing country (ISO 3166-1 alpha-3, e.g. ``USA``)."""
    return f"{BASE}/sid/passport/{country.upper()}"


def mrn(hospital_id: str) -> str:
    """A hospital's medical record numbers (病历号/登记号)."""
    return f"{BASE}/sid/mrn/{hospital_id}"


def filler_order(hospital_id: str) -> str:
    """A hospital's filler order numbers (OBR-3): the source identifier of a DiagnosticReport."""
    return f"{BASE}/sid/filler-order/{hospital_id}"


def result_id(hospital_id: str) -> str:
    """Source identifiers of single results (Observation), ``{filler}.{local code}[.{sub-id}]``."""
    return f"{BASE}/sid/result/{hospital_id}"


def local_codes(hospital_id: str) -> str:
    """A hospital's own test codes, kept when no ConceptMap entry maps them to LOINC."""
    return f"{BASE}/cs/local/{hospital_id}"


def is_passport(system: str) -> bool:
    return system.startswith(f"{BASE}/sid/passport/")


def mrn_hospital(system: str) -> str | None:
    """The hospital id of an MRN system, or None if ``system`` is not one."""
    prefix = f"{BASE}/sid/mrn/"
    return system[len(prefix) :] if system.startswith(prefix) else None


def new_id() -> str:
    """A new resource or patient id: 32 hex characters, the first 12 the milliseconds since
    1970, the other 20 random (80 bits, as unguessable as it needs to be behind tokens).

    Time first, as in UUIDv7 (RFC 9562), so ids made one after another sort together and a
    new row goes in at the end of every index keyed by id instead of on a random page:
    at a million results and more, random UUIDs made each insert read a cold page.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
