"""A walk over the public FHIR R4 examples in ``../shared/reference-data/fhir-r4`` (written by
others: HL7's core examples, US Core 8.0.0, IPS 2.0.0 and the HL7 validator's test cases; see
the README there for sources and licences). Tests use them as input hie's developers did not
write; nothing here changes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hie.fhir import SUPPORTED_TYPES

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference-data"
FHIR_R4 = REFERENCE / "fhir-r4"
FOLDERS = ("core-examples", "us-core-8.0.0", "ips-2.0.0", "validator-test-cases")


@dataclass(frozen=True)
class Example:
    folder: str
    path: Path
    resource: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.folder}/{self.path.name}"

    @property
    def type(self) -> str:
        return str(self.resource["resourceType"])


def json_files(folder: str) -> Iterator[Path]:
    """The instance files of ``folder`` (not the validator's expected outcomes or manifest)."""
    for path in sorted((FHIR_R4 / folder).glob("*.json")):
        if path.name.endswith(".expected-outcome.json") or path.name == "manifest.json":
            continue
        yield path


def examples(folder: str, types: frozenset[str] = SUPPORTED_TYPES) -> list[Example]:
    """Every file of ``folder`` that is a JSON resource of one of ``types``.

    Files that are not JSON (the validator's ``bad-json-*``) and other resource types
    (Bundle, OperationOutcome, StructureDefinition, ...) are left out.
    """
    out = []
    for path in json_files(folder):
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("resourceType") in types:
            out.append(Example(folder, path, data))
    return out


def available() -> bool:
    return all((FHIR_R4 / folder).is_dir() for folder in FOLDERS)
