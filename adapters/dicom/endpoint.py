"""The Endpoint through which a study's images are fetched: the PACS's DICOMweb base URL.

Images stay in the hospital's PACS; the exchange only says where they are. FHIR R4
ImagingStudy.endpoint: for ``dicom-wado-rs`` the Endpoint.address is the WADO-RS base, to
which ``/studies/{StudyInstanceUID}`` is appended (PS3.18 §10.4.1). The base URL is also
the Endpoint's source identifier (system ``{BASE}/sid/endpoint/{hospital_id}``), so every
study from the same PACS refers to one Endpoint and a re-run never makes a copy.
"""

from __future__ import annotations

import uuid
from typing import Any

from hie import naming

JSON = dict[str, Any]

CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"


def endpoint_system(hospital_id: str) -> str:
    return f"{naming.BASE}/sid/endpoint/{hospital_id}"


def normalise_base_url(base_url: str) -> str:
    """One spelling per PACS: no trailing slash, so two configs of the same URL agree."""
    return base_url.strip().rstrip("/")


def endpoint_full_url(hospital_id: str, base_url: str) -> str:
    key = f"{endpoint_system(hospital_id)}|{normalise_base_url(base_url)}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, key)}"


def endpoint_resource(hospital_id: str, base_url: str) -> JSON:
    address = normalise_base_url(base_url)
    return {
        "resourceType": "Endpoint",
        "identifier": [{"system": endpoint_system(hospital_id), "value": address}],
        "status": "active",
        "connectionType": {"system": CONNECTION_TYPE, "code": "dicom-wado-rs"},
        "name": f"{hospital_id} PACS (DICOMweb WADO-RS)",
        "managingOrganization": {"reference": f"Organization/{hospital_id}"},
        "payloadType": [{"text": "DICOM WADO-RS"}],
        "payloadMimeType": ["application/dicom", "application/dicom+json"],
        "address": address,
    }
