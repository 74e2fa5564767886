"""The CapabilityStatement, built from the same tables the server runs on, so it tells the truth."""

from __future__ import annotations

from typing import Any

from hie.fhir import STORED_TYPES
from hie.index.search import INCLUDES, PARAMS, SORTS

VERSION = "0.1.0"
_SD = "https://hie.example.org/fhir/StructureDefinition"
PROFILES = {
    "Observation": f"{_SD}/hie-lab-observation",
    "DiagnosticReport": f"{_SD}/hie-diagnostic-report",
    "ImagingStudy": f"{_SD}/hie-imaging-study",
    "Patient": f"{_SD}/hie-patient",
}


def capability_statement(
    base_url: str, operations: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    resources = []
    for rtype in STORED_TYPES:
        params = [
            {"name": p.name, "type": p.kind, "documentation": p.doc} for p in PARAMS.get(rtype, [])
        ]
        params += [
            {"name": "_id", "type": "token"},
            {"name": "_lastUpdated", "type": "date"},
        ]
        if any(p["name"] == "patient" for p in params):
            params.append(
                {
                    "name": "patient.identifier",
                    "type": "token",
                    "documentation": "Chained: any identifier of the patient (MRN, national ID)",
                }
            )
        entry: dict[str, Any] = {
            "type": rtype,
            "profile": PROFILES.get(rtype, f"http://hl7.org/fhir/StructureDefinition/{rtype}"),
            "interaction": [
                {"code": c}
                for c in ("read", "vread", "history-instance", "search-type", "create", "update")
            ],
            "versioning": "versioned",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "not-supported",
            "searchInclude": [k for k in INCLUDES if k.startswith(rtype + ":")],
            "searchParam": params,
        }
        if rtype == "Patient" and operations:
            entry["operation"] = [o for o in operations if o.get("scope") == "Patient"]
        resources.append(entry)
    ops = [{k: v for k, v in o.items() if k != "scope"} for o in operations or []]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "hie",
        "kind": "instance",
        "software": {"name": "hie", "version": VERSION},
        "implementation": {"description": "hie medical-results exchange", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Every interaction but this statement needs a bearer token. Searches sort with "
                    f"_sort={', '.join(SORTS)}; paging follows the 'next' link."
                ),
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer tokens signed by the exchange (hie token).",
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                **({"operation": ops} if ops else {}),
            }
        ],
    }
