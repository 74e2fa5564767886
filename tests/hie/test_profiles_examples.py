"""Walk the public FHIR R4 examples of the types hie profiles (and the validator test cases):
each is accepted, or rejected with issues whose FHIRPath points into the resource.

Inputs: ``../shared/reference-data/fhir-r4/`` (HL7 core examples, IPS 2.0.0, US Core 8.0.0,
FHIR/fhir-test-cases validator cases; provenance in that folder's README). ``GOLDEN`` records
what hie's profiles say about each file, as ``severity:expression`` (``e`` error, ``w``
warning); fhir_profiles/README.md explains the policy behind the recurring verdicts:

- ``Observation.identifier`` / ``DiagnosticReport.identifier``: hie needs a source identifier
  (most published examples have none; the HTTP API may waive it for plain creates);
- ``Observation.category``: vital signs, surveys, social history, exam and genetics examples
  are not laboratory or imaging results, so they are not exchanged;
- ``ImagingStudy.started``: recognition rules need the study date (IPS example lacks it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hie.outcome import Issue
from hie.profile import Profiles

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference-data" / "fhir-r4"
PROFILED = {"Patient", "Observation", "DiagnosticReport", "ImagingStudy"}
ACCEPTED_WITHOUT_PROFILE = {"Organization", "Endpoint", "Specimen"}
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")

GOLDEN: dict[str, tuple[str, ...]] = {
    "core-examples/DiagnosticReport-102.json": (
        "e:DiagnosticReport.category",
        "e:DiagnosticReport.identifier",
    ),
    "core-examples/DiagnosticReport-example-pgx.json": (
        "e:DiagnosticReport.category",
        "e:DiagnosticReport.identifier",
    ),
    "core-examples/DiagnosticReport-f201.json": ("e:DiagnosticReport.identifier",),
    "core-examples/DiagnosticReport-gingival-mass.json": (),
    "core-examples/DiagnosticReport-pap.json": (
        "e:DiagnosticReport.category",
        "e:DiagnosticReport.identifier",
    ),
    "core-examples/DiagnosticReport-ultrasound.json": ("e:DiagnosticReport.identifier",),
    "core-examples/Endpoint-direct-endpoint.json": (),
    "core-examples/Endpoint-example-iid.json": (),
    "core-examples/Endpoint-example-wadors.json": (),
    "core-examples/Endpoint-example.json": (),
    "core-examples/ImagingStudy-example-xr.json": (),
    "core-examples/ImagingStudy-example.json": (),
    "core-examples/Observation-10minute-apgar-score.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-1minute-apgar-score.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-20minute-apgar-score.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-2minute-apgar-score.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-5minute-apgar-score.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-656.json": ("e:Observation.category", "e:Observation.identifier"),
    "core-examples/Observation-abdo-tender.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-alcohol-type.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-bgpanel.json": ("e:Observation.identifier",),
    "core-examples/Observation-blood-pressure-cancel.json": ("e:Observation.category",),
    "core-examples/Observation-blood-pressure-dar.json": ("e:Observation.category",),
    "core-examples/Observation-blood-pressure.json": ("e:Observation.category",),
    "core-examples/Observation-bloodgroup.json": ("e:Observation.identifier",),
    "core-examples/Observation-bmd.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-bmi-using-related.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-bmi.json": ("e:Observation.category", "e:Observation.identifier"),
    "core-examples/Observation-body-height.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-body-length.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-body-temperature.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-clinical-gender.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-date-lastmp.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-decimal.json": (
        "e:Observation.category",
        "e:Observation.code.coding",
        "e:Observation.component[0].code.coding",
        "e:Observation.component[1].code.coding",
        "e:Observation.component[2].code.coding",
        "e:Observation.component[3].code.coding",
        "e:Observation.component[4].code.coding",
        "e:Observation.component[5].code.coding",
        "e:Observation.component[6].code.coding",
        "e:Observation.effective",
        "e:Observation.identifier",
        "e:Observation.subject",
    ),
    "core-examples/Observation-ekg.json": ("e:Observation.category", "e:Observation.identifier"),
    "core-examples/Observation-example-TPMT-diplotype.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-TPMT-haplotype-one.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-TPMT-haplotype-two.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-diplotype1.json": (
        "e:Observation",
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-genetics-1.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-genetics-2.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-genetics-3.json": (
        "e:Observation",
        "e:Observation.category",
        "e:Observation.code.coding",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-genetics-4.json": (
        "e:Observation.category",
        "e:Observation.code.coding",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-genetics-5.json": (
        "e:Observation.category",
        "e:Observation.code.coding",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-genetics-brcapat.json": (
        "e:Observation",
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-haplotype1.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-haplotype2.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example-phenotype.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-example.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-eye-color.json": (
        "e:Observation.category",
        "e:Observation.code.coding",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-f001.json": ("e:Observation.category",),
    "core-examples/Observation-f002.json": ("e:Observation.category",),
    "core-examples/Observation-f003.json": ("e:Observation.category",),
    "core-examples/Observation-f004.json": ("e:Observation.category",),
    "core-examples/Observation-f005.json": ("e:Observation.category",),
    "core-examples/Observation-f202.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-f203.json": ("e:Observation.category", "e:Observation.effective"),
    "core-examples/Observation-f204.json": ("e:Observation.category", "e:Observation.effective"),
    "core-examples/Observation-f205.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.interpretation[0]",
    ),
    "core-examples/Observation-f206.json": (
        "e:Observation.category",
        "e:Observation.effective",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-gcs-qa.json": ("e:Observation.category", "e:Observation.identifier"),
    "core-examples/Observation-glasgow.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-head-circumference.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-heart-rate.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-herd1.json": (
        "e:Observation.identifier",
        "e:Observation.subject.reference",
    ),
    "core-examples/Observation-map-sitting.json": (
        "e:Observation.identifier",
        "e:Observation.interpretation[0]",
    ),
    "core-examples/Observation-mbp.json": ("e:Observation.category", "e:Observation.identifier"),
    "core-examples/Observation-respiratory-rate.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-rhstatus.json": ("e:Observation.identifier",),
    "core-examples/Observation-satO2.json": ("e:Observation.category",),
    "core-examples/Observation-secondsmoke.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-trachcare.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-unsat.json": ("e:Observation.category",),
    "core-examples/Observation-vitals-panel.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-vomiting.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "core-examples/Observation-vp-oyster.json": ("e:Observation.category",),
    "core-examples/Organization-1.json": (),
    "core-examples/Organization-1832473e-2fe0-452d-abe9-3cdb9879522f.json": (),
    "core-examples/Organization-2.16.840.1.113883.19.5.json": (),
    "core-examples/Organization-2.json": (),
    "core-examples/Organization-3.json": (),
    "core-examples/Organization-f001.json": (),
    "core-examples/Organization-f002.json": (),
    "core-examples/Organization-f003.json": (),
    "core-examples/Organization-f201.json": (),
    "core-examples/Organization-f203.json": (),
    "core-examples/Organization-hl7.json": (),
    "core-examples/Organization-hl7pay.json": (),
    "core-examples/Organization-mmanu.json": (),
    "core-examples/Patient-animal.json": (),
    "core-examples/Patient-ch-example.json": (),
    "core-examples/Patient-dicom.json": (),
    "core-examples/Patient-example.json": (),
    "core-examples/Patient-f001.json": (),
    "core-examples/Patient-f201.json": (),
    "core-examples/Patient-genetics-example1.json": (),
    "core-examples/Patient-glossy.json": (),
    "core-examples/Patient-ihe-pcd.json": ("e:Patient.identifier",),
    "core-examples/Patient-infant-fetal.json": (),
    "core-examples/Patient-infant-mom.json": ("e:Patient.identifier",),
    "core-examples/Patient-infant-twin-1.json": (),
    "core-examples/Patient-infant-twin-2.json": (),
    "core-examples/Patient-mom.json": (),
    "core-examples/Patient-newborn.json": ("e:Patient.identifier",),
    "core-examples/Patient-pat1.json": (),
    "core-examples/Patient-pat2.json": (),
    "core-examples/Patient-pat3.json": (),
    "core-examples/Patient-pat4.json": (),
    "core-examples/Patient-proband.json": (),
    "core-examples/Patient-xcda.json": (),
    "core-examples/Patient-xds.json": (),
    "core-examples/Specimen-101.json": (),
    "core-examples/Specimen-isolate.json": (),
    "core-examples/Specimen-pooled-serum.json": (),
    "core-examples/Specimen-sst.json": (),
    "core-examples/Specimen-vma-urine.json": (),
    "ips-2.0.0/DiagnosticReport-hemoglobin.json": ("e:DiagnosticReport.identifier",),
    "ips-2.0.0/ImagingStudy-TII-ImagingStudy-5-1.json": ("e:ImagingStudy.started",),
    "ips-2.0.0/Observation-hemoglobin.json": ("e:Observation.identifier",),
    "ips-2.0.0/Observation-ips-example-imaging-1.json": ("e:Observation.identifier",),
    "ips-2.0.0/Observation-ips-example-imaging-4.json": ("e:Observation.identifier",),
    "ips-2.0.0/Observation-ips-example-imaging-5.json": ("e:Observation.identifier",),
    "ips-2.0.0/Observation-pathology-cancer.json": ("e:Observation.identifier",),
    "ips-2.0.0/Observation-pathology-suppressed-data.json": ("e:Observation.identifier",),
    "ips-2.0.0/Observation-serum-creatinine-adult.json": ("e:Observation.identifier",),
    "ips-2.0.0/Observation-urine-wbc-range.json": ("e:Observation.identifier",),
    "ips-2.0.0/Organization-lab-org-example.json": (),
    "ips-2.0.0/Patient-66033.json": (),
    "ips-2.0.0/Specimen-specimen-example-1.json": (),
    "us-core-8.0.0/DiagnosticReport-chest-xray-report.json": (
        "e:DiagnosticReport.identifier",
        "w:DiagnosticReport.category[0]",
    ),
    "us-core-8.0.0/diagnosticreport-cbc.json": ("e:DiagnosticReport.identifier",),
    "us-core-8.0.0/diagnosticreport-metabolic-panel.json": ("e:DiagnosticReport.identifier",),
    "us-core-8.0.0/observation-cbc-erythrocytes.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-cbc-hematocrit.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-cbc-hemoglobin.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-cbc-leukocytes.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-cbc-mch.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-cbc-mchc.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-cbc-mcv.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-cbc-platelets.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-serum-bun.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-serum-calcium.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-serum-chloride.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-serum-co2.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-serum-creatinine.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-serum-glucose.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-serum-potassium.json": ("e:Observation.identifier",),
    "us-core-8.0.0/observation-serum-sodium.json": ("e:Observation.identifier",),
    "us-core-8.0.0/organization-acme-lab.json": (),
    "us-core-8.0.0/patient-example.json": (),
    "us-core-8.0.0/specimen-example-serum.json": (),
    "validator-test-cases/Observation-ex-pain.json": (
        "e:Observation",
        "e:Observation.category",
        "e:Observation.code",
        "e:Observation.effective",
        "e:Observation.identifier",
        "e:Observation.subject",
    ),
    "validator-test-cases/ai1.json": (),
    "validator-test-cases/ai3.json": (),
    "validator-test-cases/ai4.json": (),
    "validator-test-cases/attachment-with-invalid-binary.json": (),
    "validator-test-cases/empty-array.json": ("e:DocumentReference.category[0].coding",),
    "validator-test-cases/encounter-period.json": (),
    "validator-test-cases/hakan-se-2.json": (),
    "validator-test-cases/json-comments.json": ("e:Patient.identifier",),
    "validator-test-cases/json-good.json": ("e:Patient.identifier",),
    "validator-test-cases/obs-quantity.json": (
        "e:Observation.category",
        "e:Observation.code",
        "e:Observation.effective",
        "e:Observation.identifier",
        "e:Observation.subject",
    ),
    "validator-test-cases/obs-temp-bad.json": (
        "e:Observation.category",
        "e:Observation.identifier",
    ),
    "validator-test-cases/obs-temp.json": ("e:Observation.category", "e:Observation.identifier"),
    "validator-test-cases/pat-security-bad-string.json": ("e:Patient.identifier",),
    "validator-test-cases/pat-security-bad-xhtml.json": ("e:Patient.identifier",),
    "validator-test-cases/patient-example-ra4.json": (),
    "validator-test-cases/patient-id-bad-1.json": ("e:Patient.id", "e:Patient.identifier"),
    "validator-test-cases/patient-id-bad-2.json": ("e:Patient.id", "e:Patient.identifier"),
    "validator-test-cases/patient-id-bad-3.json": ("e:Patient.id", "e:Patient.identifier"),
    "validator-test-cases/resource-invalid-id-1.json": ("e:Location.id",),
    "validator-test-cases/synthea.json": (),
}
BUNDLES: dict[str, tuple[int, int]] = {  # accepted, total profiled entries
    "core-examples/Bundle-101.json": (0, 18),
    "core-examples/Bundle-bundle-references.json": (1, 11),
    "core-examples/Bundle-bundle-response.json": (0, 1),
    "core-examples/Bundle-bundle-transaction.json": (2, 5),
    "core-examples/Bundle-dg2.json": (0, 1),
    "core-examples/Bundle-f001.json": (0, 1),
    "core-examples/Bundle-f202.json": (0, 1),
    "core-examples/Bundle-ghp.json": (0, 52),
    "core-examples/Bundle-hla-1.json": (0, 10),
    "core-examples/Bundle-lipids.json": (1, 5),
    "core-examples/Bundle-lri-example.json": (17, 17),
    "core-examples/Bundle-micro.json": (0, 26),
    "core-examples/Bundle-report.json": (0, 14),
    "core-examples/Bundle-xds.json": (0, 1),
    "ips-2.0.0/Bundle-IPS-examples-Bundle-01.json": (1, 8),
    "validator-test-cases/bundle-document-versioned-references-bad.json": (0, 3),
    "validator-test-cases/bundle-document-versioned-references-good.json": (0, 3),
    "validator-test-cases/bundle-duplicate-id.json": (0, 1),
}


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return Profiles.load(ROOT / "fhir_profiles")


def _load(rel: str) -> Any:
    return json.loads((REFERENCE / rel).read_text(encoding="utf-8"))


def _resources() -> list[tuple[str, dict[str, Any]]]:
    """Every single-resource example of interest, and every profiled entry of every Bundle."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(REFERENCE.rglob("*.json")):
        if path.name == "manifest.json" or "expected-outcome" in path.name:
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue  # the not-JSON validator cases are the parser's business
        rel = str(path.relative_to(REFERENCE))
        if not isinstance(doc, dict):
            continue
        if doc.get("resourceType") == "Bundle":
            for n, entry in enumerate(doc.get("entry") or []):
                res = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(res, dict) and res.get("resourceType") in PROFILED:
                    found.append((f"{rel}#entry[{n}]", res))
        elif doc.get("resourceType") in PROFILED | ACCEPTED_WITHOUT_PROFILE or rel.startswith(
            "validator-test-cases/"
        ):
            found.append((rel, doc))
    return found


RESOURCES = _resources()


def test_the_reference_data_is_there() -> None:
    assert len(RESOURCES) > 300, REFERENCE
    assert set(GOLDEN) == {name for name, _ in RESOURCES if "#" not in name}


def _points_into(resource: dict[str, Any], issue: Issue) -> bool:
    """Every step of the expression exists in the resource, except that the last step of a
    ``required`` issue names the element that is missing."""
    assert issue.expression
    first, *steps = issue.expression.split(".")
    if first != resource["resourceType"]:
        return False
    node: Any = resource
    for n, step in enumerate(steps):
        m = _SEGMENT.fullmatch(step)
        if m is None or not isinstance(node, dict):
            return False
        name, index = m.group(1), m.group(2)
        keys = [name] if name in node else [k for k in node if re.fullmatch(name + "[A-Z].*", k)]
        if not keys:
            return n == len(steps) - 1 and issue.code == "required"
        node = node[keys[0]]
        if index is not None:
            if not isinstance(node, list) or int(index) >= len(node):
                return False
            node = node[int(index)]
    return True


@pytest.mark.parametrize(("name", "resource"), RESOURCES, ids=[n for n, _ in RESOURCES])
def test_example_is_accepted_or_rejected_pointing_into_it(
    profiles: Profiles, name: str, resource: dict[str, Any]
) -> None:
    issues = profiles.validate(resource)
    for issue in issues:
        assert _points_into(resource, issue), (issue.expression, issue.diagnostics)
        assert issue.diagnostics.startswith(f"{issue.expression}: ")
    if "#" not in name:
        got = tuple(sorted(f"{i.severity[0]}:{i.expression}" for i in issues))
        assert got == GOLDEN[name]


def test_bundle_entries(profiles: Profiles) -> None:
    got: dict[str, tuple[int, int]] = {}
    for name, resource in RESOURCES:
        if "#" in name:
            bundle = name.split("#")[0]
            accepted, total = got.get(bundle, (0, 0))
            ok = not [i for i in profiles.validate(resource) if i.severity == "error"]
            got[bundle] = (accepted + ok, total + 1)
    assert got == BUNDLES


def test_same_expression_as_the_hl7_java_validator(profiles: Profiles) -> None:
    """Where the HL7 reference validator flags what hie checks, hie names the same element."""
    for case, rule in [
        ("empty-array", "Array cannot be empty"),
        ("patient-id-bad-1", "Invalid Resource id"),
        ("patient-id-bad-2", "Invalid Resource id"),
        ("patient-id-bad-3", "Invalid Resource id"),
        ("resource-invalid-id-1", "Invalid Resource id"),
    ]:
        expected = _load(f"validator-test-cases/{case}.expected-outcome.json")
        wanted = {
            e
            for i in expected["issue"]
            if rule in (i.get("details") or {}).get("text", "")
            for e in i["expression"]
        }
        got = {i.expression for i in profiles.validate(_load(f"validator-test-cases/{case}.json"))}
        assert wanted and wanted <= got, case


def test_vital_signs_are_rejected_by_category(profiles: Profiles) -> None:
    vital = [
        (name, r)
        for name, r in RESOURCES
        if r.get("resourceType") == "Observation"
        and any(
            c.get("code") == "vital-signs"
            for cc in r.get("category") or []
            for c in cc.get("coding") or []
        )
    ]
    assert len(vital) >= 15
    for name, resource in vital:
        assert "Observation.category" in {
            i.expression for i in profiles.validate(resource) if i.severity == "error"
        }, name


def test_us_core_and_ips_lab_results_pass_once_the_source_identifier_is_waived(
    profiles: Profiles,
) -> None:
    """They are proper lab results; only hie's idempotency identifier is missing."""
    labs = [
        (name, r)
        for name, r in RESOURCES
        if name.startswith(("us-core", "ips"))
        and "#" not in name
        and r.get("resourceType") == "Observation"
    ]
    assert len(labs) >= 20
    for name, resource in labs:
        assert profiles.validate(resource, waive={"Observation.identifier"}) == [], name
