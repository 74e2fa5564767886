"""The synthetic city (bench/city.py): deterministic, valid, and the same data in both formats.

Written for issue 8. The city is generated in each test from its seed; nothing is stored.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from adapters.hl7v2.coding import Context
from adapters.hl7v2.framing import split_messages
from adapters.hl7v2.oru import map_framed
from bench.city import generate
from bench.people import person
from hie.fhir import check_model
from hie.identity.national_id import validate
from hie.profile import Profiles
from hie.settings import Settings


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=12, hospitals=4, seed=11)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "city.json"
    }


def test_same_seed_same_city_byte_for_byte(city: Path, tmp_path: Path) -> None:
    generate(tmp_path, patients=12, hospitals=4, seed=11)
    assert _files(tmp_path) == _files(city)
    other = tmp_path / "other"
    generate(other, patients=12, hospitals=4, seed=12)
    assert _files(other) != _files(city)


def test_national_ids_are_valid_and_unique() -> None:
    people = [person(5, i) for i in range(30_000)]
    ids = [p.national_id for p in people if p.national_id]
    assert len(ids) == len(set(ids)) > 29_000
    for p in people[:3000]:
        if p.national_id:
            got = validate(p.national_id, birth_date=p.birth_date, gender=p.gender)
            assert got.birth_date == p.birth_date
    assert any(p.passport for p in people)
    assert any(p.national_id is None for p in people)  # foreigners with a passport only


def test_every_resource_passes_the_models_and_profiles(city: Path) -> None:
    profiles = Profiles.load(Settings().profiles_dir)
    kinds: set[str] = set()
    for path in (city / "fhir").glob("*.ndjson"):
        for line in path.read_bytes().splitlines():
            doc = orjson.loads(line)
            assert doc["type"] == "transaction"
            for entry in doc["entry"]:
                res = entry["resource"]
                kinds.add(res["resourceType"])
                assert entry["fullUrl"].startswith("urn:uuid:")
                assert check_model(res) == []
                errors = [i for i in profiles.validate(res) if i.severity in ("error", "fatal")]
                assert errors == [], (res["resourceType"], errors)
    assert kinds == {"Patient", "Observation", "DiagnosticReport", "ImagingStudy"}


def test_hl7_files_carry_the_same_results_under_the_same_identifiers(city: Path) -> None:
    ndjson: set[str] = set()
    for path in (city / "fhir").glob("*.ndjson"):
        for line in path.read_bytes().splitlines():
            for entry in orjson.loads(line)["entry"]:
                res = entry["resource"]
                if res["resourceType"] == "Observation":
                    ident = res["identifier"][0]
                    ndjson.add(f"{ident['system']}|{ident['value']}")
    hl7: set[str] = set()
    for folder in (city / "hl7").iterdir():
        for path in folder.glob("*.hl7"):
            for framed in split_messages(path.read_bytes()):
                unit = map_framed(framed, Context(folder.name))
                for entry in unit.entries:
                    if entry.resource["resourceType"] == "Observation":
                        ident = entry.resource["identifier"][0]
                        hl7.add(f"{ident['system']}|{ident['value']}")
    assert hl7 == ndjson and len(hl7) > 100


def test_corrections_reuse_the_identifier_with_a_new_value(tmp_path: Path) -> None:
    generate(tmp_path, patients=150, hospitals=6, seed=3, hl7=False)
    seen: dict[str, object] = {}
    corrected = 0
    for path in (tmp_path / "fhir").glob("*.ndjson"):
        for line in path.read_bytes().splitlines():
            for entry in orjson.loads(line)["entry"]:
                res = entry["resource"]
                if res["resourceType"] != "Observation":
                    continue
                key = res["identifier"][0]["value"]
                if res["status"] == "corrected":
                    assert key in seen and seen[key] != res.get("valueQuantity")
                    corrected += 1
                seen[key] = res.get("valueQuantity")
    assert corrected >= 1
