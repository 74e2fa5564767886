"""The recognition engine, table-driven: every reference-only reason, the recognised paths,
boundary times, credentials judged at the time of the test, corrections, panels, pending tests
elsewhere, ordering, and a catalogue edited on disk changing verdicts with no code change."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from recognition_world import PROFILES, SH, World, at, loinc

from hie.naming import LOINC
from hie.outcome import Invalid
from hie.recognition.catalogue import CATALOGUE_URL, Catalogue, CatalogueError
from hie.recognition.engine import evaluate
from hie.recognition.explanation import REASONS
from hie.recognition.model import LabCredential, PendingOrder, PriorResult

URINE, SERUM = "122575003", "119364003"
CBC_REQUIRED = ("6690-2", "789-8", "718-7", "4544-3", "777-3", "787-2")
CBC = (*CBC_REQUIRED, "785-6", "786-4")  # MCH and MCHC are optional components


# --- every reason a result is reference-only ------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[World], PriorResult]
    reason: str
    rule: str
    requester: str = "pkuszh"
    when: str = "2026-11-05T09:00:00"


REFERENCE_ONLY = [
    Case(
        "expired",
        lambda w: w.result("2823-3"),
        "expired",
        "window.expired",
        when="2026-11-09T00:00:00",
    ),
    Case(
        "lab lacked HbA1c credential",
        lambda w: w.result("4548-4", hospital_id="nsdh"),
        "no-credential-at-time",
        "credential.missing",
    ),
    Case("preliminary", lambda w: w.result(status="preliminary"), "not-final", "status.not-final"),
    Case(
        "registered",
        lambda w: w.result(status="registered", value=None, unit=None),
        "not-final",
        "status.not-final",
    ),
    Case("unknown status", lambda w: w.result(status="unknown"), "not-final", "status.not-final"),
    Case(
        "cancelled",
        lambda w: w.result(status="cancelled", value=None, unit=None),
        "cancelled",
        "status.cancelled",
    ),
    Case(
        "entered in error",
        lambda w: w.result(status="entered-in-error"),
        "entered-in-error",
        "status.entered-in-error",
    ),
    Case(
        "GGT is not on the list",
        lambda w: w.result("2324-2", unit="U/L", value=Decimal(30)),
        "not-on-list",
        "catalogue.not-on-list",
    ),
    Case(
        "CT from a 2A hospital for a 3A requester",
        lambda w: w.result(
            "CT-chest-plain",
            resource_type="ImagingStudy",
            codes=(),
            hospital_id="baoan2",
            modality="CT",
            body_site="51185008",
            contrast=False,
            status="available",
        ),
        "outside-scope",
        "scope.no-rule",
    ),
    Case(
        "HbA1c from a community centre for a 3A requester",
        lambda w: w.result("4548-4", hospital_id="skchc"),
        "outside-scope",
        "scope.no-rule",
    ),
    Case(
        "producer unknown to the exchange",
        lambda w: w.result(hospital_id="elsewhere"),
        "outside-scope",
        "scope.unknown-hospital",
    ),
    Case(
        "HbA1c in IFCC mmol/mol under the % code",
        lambda w: w.result("4548-4", unit="mmol/mol", value=Decimal(43)),
        "unit-mismatch",
        "catalogue.unit",
    ),
    Case(
        "potassium without a unit", lambda w: w.result(unit=None), "unit-mismatch", "catalogue.unit"
    ),
    Case(
        "serum glucose code on a urine specimen",
        lambda w: w.result("2345-7", specimen=URINE),
        "specimen-mismatch",
        "catalogue.specimen",
    ),
    Case(
        "flagged superseded by the index",
        lambda w: w.result(superseded=True),
        "superseded",
        "version.superseded",
    ),
]


@pytest.mark.parametrize("case", REFERENCE_ONLY, ids=lambda c: c.name)
def test_reference_only_reason(world: World, case: Case) -> None:
    result = case.build(world)
    wanted = result.codes[0][1] if result.codes else (CATALOGUE_URL, "CT-chest-plain")
    assessed = world.one(result, wanted, when=case.when, requester=case.requester)
    v = assessed.verdict
    assert (v.kind, v.reason, v.rule) == ("reference-only", case.reason, case.rule)
    assert v.mark is None and v.covers == ()
    assert v.explanation_zh and v.explanation_en
    assert any(c.rule == case.rule and not c.passed for c in v.checks)


def test_every_reason_is_exercised() -> None:
    assert {c.reason for c in REFERENCE_ONLY} == set(REASONS)


# --- recognised -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("producer", "requester", "code", "rule"),
    [
        ("szph", "pkuszh", "2823-3", "scope.same-tier"),  # 3A -> 3A
        ("nsdh", "szph", "2345-7", "scope.same-tier"),  # 3B -> 3A: both tertiary
        ("szph", "baoan2", "4548-4", "scope.higher-tier"),  # 3A -> 2A
        ("pkuszh", "skchc", "CT-chest-plain", "scope.higher-tier"),  # 3A -> CHC
        ("baoan2", "pkuszh", "2823-3", "scope.lower-tier-basic"),  # 2A -> 3A, basic item
        ("skchc", "nsdh", "718-7", "scope.lower-tier-basic"),  # CHC -> 3B, basic item
        ("pkuszh", "pkuszh", "4548-4", "own-result"),
    ],
)
def test_recognised(world: World, producer: str, requester: str, code: str, rule: str) -> None:
    if code.startswith("CT"):
        result = world.result(
            code,
            resource_type="ImagingStudy",
            codes=(),
            hospital_id=producer,
            modality="CT",
            body_site="51185008",
            contrast=False,
            status="available",
        )
        wanted: Any = (CATALOGUE_URL, code)
    else:
        result = world.result(code, hospital_id=producer)
        wanted = code
    v = world.one(result, wanted, requester=requester).verdict
    assert (v.kind, v.reason, v.rule) == ("recognised", None, rule)
    assert v.covers == ((wanted if isinstance(wanted, tuple) else loinc(wanted)),)
    assert v.expires_at is not None and v.expires_at > at("2026-11-05T09:00:00")
    if rule == "own-result":
        assert (v.basis, v.mark, v.mark_prefix) == ("own-result", None, None)
        assert v.explanation_zh.startswith("本院")
    else:
        assert (v.basis, v.mark, v.mark_prefix) == ("mutual-recognition", "粤HR", "粤")
        assert "粤HR" in v.explanation_zh and "粤HR" in v.explanation_en
        assert v.producer_name_en and v.producer_name_en in v.explanation_en


def test_recognised_verdict_carries_card_facts(world: World) -> None:
    v = world.one(world.result("2823-3", hospital_id="szph")).verdict
    assert v.expires_at == datetime(2026, 11, 9, tzinfo=SH)
    assert (v.producer_id, v.producer_name_zh) == ("szph", "深圳市人民医院")
    assert (v.item_code, v.item_display_zh) == ("2823-3", "钾")
    assert (v.item_display_en or "").startswith("Potassium")
    assert v.credential == LabCredential(
        "szph", "discipline:chemistry", "NCCL-EQA", date(2026, 1, 1), date(2026, 12, 31)
    )
    assert "2026-11-08 24:00" in v.explanation_zh
    assert [c.rule for c in v.checks] == [
        "status.final",
        "catalogue.on-list",
        "catalogue.specimen",
        "catalogue.unit",
        "scope.same-tier",
        "credential.held",
        "window.within",
    ]


# --- boundary times -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effective", "when", "kind"),
    [
        ("2026-11-01T10:00:00+08:00", "2026-11-08T23:59:59+08:00", "recognised"),
        ("2026-11-01T10:00:00+08:00", "2026-11-09T00:00:00+08:00", "reference-only"),
        ("2026-11-01T10:00:00+08:00", "2026-11-09T00:00:01+08:00", "reference-only"),
        # Same instants asked in UTC: nothing changes.
        ("2026-11-01T02:00:00+00:00", "2026-11-08T15:59:59+00:00", "recognised"),
        ("2026-11-01T02:00:00+00:00", "2026-11-08T16:00:01+00:00", "reference-only"),
        # Done late at night UTC: already 1 Nov in Shanghai, so it counts from 1 Nov.
        ("2026-10-31T17:30:00+00:00", "2026-11-08T23:59:59+08:00", "recognised"),
        # 15:30 UTC is 23:30 on 31 Oct in Shanghai: its window ended a day earlier.
        ("2026-10-31T15:30:00+00:00", "2026-11-07T23:59:59+08:00", "recognised"),
        ("2026-10-31T15:30:00+00:00", "2026-11-08T00:00:00+08:00", "reference-only"),
    ],
)
def test_boundary_times(world: World, effective: str, when: str, kind: str) -> None:
    v = world.one(world.result("2823-3", effective=at(effective)), when=when).verdict
    assert v.kind == kind
    if kind == "reference-only":
        assert v.reason == "expired"


# --- credentials are judged on the day of the test ------------------------------------------


def _chem(hospital: str, start: date, end: date, scheme: str = "NCCL-EQA") -> LabCredential:
    return LabCredential(hospital, "discipline:chemistry", scheme, start, end)


@pytest.mark.parametrize(
    ("effective", "when", "credentials", "kind"),
    [
        # Valid when the test was done, expired now: still recognised.
        (
            "2026-12-20T10:00",
            "2027-01-05T09:00",
            [_chem("nsdh", date(2026, 1, 1), date(2026, 12, 31))],
            "recognised",
        ),
        # Valid now, not yet when the test was done: not recognised.
        (
            "2026-11-01T10:00",
            "2026-11-05T09:00",
            [_chem("nsdh", date(2026, 11, 3), date(2027, 11, 2))],
            "reference-only",
        ),
        # 00:30 on 1 Jan in Shanghai is still 31 Dec in UTC; the local day decides.
        (
            "2027-01-01T00:30",
            "2027-01-05T09:00",
            [_chem("nsdh", date(2026, 1, 1), date(2026, 12, 31))],
            "reference-only",
        ),
        (
            "2027-01-01T00:30",
            "2027-01-05T09:00",
            [_chem("nsdh", date(2027, 1, 1), date(2027, 12, 31))],
            "recognised",
        ),
        # A scheme the catalogue does not name does not count.
        (
            "2026-11-01T10:00",
            "2026-11-05T09:00",
            [_chem("nsdh", date(2026, 1, 1), date(2026, 12, 31), "ISO-15189")],
            "reference-only",
        ),
        # Another hospital's pass does not count.
        (
            "2026-11-01T10:00",
            "2026-11-05T09:00",
            [_chem("szph", date(2026, 1, 1), date(2026, 12, 31))],
            "reference-only",
        ),
    ],
)
def test_credential_at_the_time_of_the_test(
    world: World, effective: str, when: str, credentials: list[LabCredential], kind: str
) -> None:
    result = world.result("2345-7", hospital_id="nsdh", effective=at(effective))
    v = world.one(result, when=when, credentials=credentials).verdict
    assert v.kind == kind
    if kind == "reference-only":
        assert (v.reason, v.rule) == ("no-credential-at-time", "credential.missing")
    else:
        assert v.credential == credentials[0]


def test_item_only_credential_ignores_the_discipline_pass(world: World) -> None:
    """HbA1c has its own NCCL programme: a chemistry pass does not cover it (catalogue data)."""
    nsdh = world.one(world.result("4548-4", hospital_id="nsdh")).verdict
    assert nsdh.reason == "no-credential-at-time"
    assert "item:4548-4" in nsdh.explanation_en
    item_pass = LabCredential("nsdh", "item:4548-4", "GD-EQA", date(2026, 1, 1), date(2026, 12, 31))
    again = world.one(world.result("4548-4", hospital_id="nsdh"), credentials=[item_pass]).verdict
    assert again.kind == "recognised" and again.credential == item_pass


# --- several failures: the first in the fixed order decides, the rest are kept -------------


def test_first_failure_decides_and_others_are_listed(world: World) -> None:
    result = world.result("4548-4", hospital_id="nsdh", status="preliminary", unit="mmol/mol")
    v = world.one(result, when="2027-03-01T09:00:00").verdict
    assert v.reason == "not-final"
    assert v.other_reasons == ("unit-mismatch", "no-credential-at-time", "expired")


# --- corrections ----------------------------------------------------------------------------


def test_corrected_version_supersedes_the_first(world: World) -> None:
    first = world.result("2823-3", id="k", version="1", value=Decimal("5.9"))
    second = replace(
        first,
        version="2",
        status="corrected",
        value=Decimal("4.1"),
        issued=at("2026-11-02T08:00:00"),
    )
    assessment = world.run([first, second], ["2823-3"])
    by_version = {a.result.version: a.verdict for a in assessment.results}
    assert by_version["2"].kind == "recognised"
    assert (by_version["1"].reason, by_version["1"].rule) == ("superseded", "version.superseded")
    assert "Observation/k/_history/2" in by_version["1"].explanation_en
    assert [a.result.version for a in assessment.results] == ["2", "1"]
    assert assessment.coverage[0].state == "covered"


def test_correction_not_yet_issued_at_the_time_asked(world: World) -> None:
    first = world.result("2823-3", id="k", version="1")
    second = replace(first, version="2", status="corrected", issued=at("2026-11-06T08:00:00"))
    assessment = world.run([first, second], ["2823-3"], when="2026-11-05T09:00:00")
    assert [(a.result.version, a.verdict.kind) for a in assessment.results] == [("1", "recognised")]


def test_replacement_result_supersedes_the_result_it_names(world: World) -> None:
    old = world.result("2345-7", id="old")
    new = world.result(
        "2345-7",
        id="new",
        replaces="Observation/old",
        status="corrected",
        effective=at("2026-11-01T10:00:00"),
    )
    verdicts = {a.result.id: a.verdict for a in world.run([old, new], ["2345-7"]).results}
    assert verdicts["new"].kind == "recognised"
    assert verdicts["old"].reason == "superseded"


def test_a_void_replacement_does_not_supersede(world: World) -> None:
    old = world.result("2345-7", id="old")
    bad = world.result("2345-7", id="bad", replaces="Observation/old", status="entered-in-error")
    verdicts = {a.result.id: a.verdict for a in world.run([old, bad], ["2345-7"]).results}
    assert verdicts["old"].kind == "recognised"
    assert verdicts["bad"].reason == "entered-in-error"


# --- panels and components ------------------------------------------------------------------


def _cbc(
    world: World, hospital: str = "szph", skip: tuple[str, ...] = (), **member_kw: Any
) -> list[PriorResult]:
    members = [
        world.result(
            code,
            id=f"cbc-{code}",
            hospital_id=hospital,
            specimen="119297000",
            **(member_kw if code == "718-7" else {}),
        )
        for code in CBC
        if code not in skip
    ]
    report = world.result(
        "58410-2",
        resource_type="DiagnosticReport",
        id="cbc",
        hospital_id=hospital,
        members=tuple(m.ref for m in members),
    )
    return [report, *members]


def test_cbc_without_optional_components_is_complete(world: World) -> None:
    assessment = world.run(_cbc(world, skip=("785-6", "786-4")), ["58410-2", "786-4"])
    states = {c.requested[1]: c.state for c in assessment.coverage}
    assert states == {"58410-2": "covered", "786-4": "none"}


def test_complete_cbc_covers_the_requested_panel(world: World) -> None:
    assessment = world.run(_cbc(world), ["58410-2"])
    report = next(a for a in assessment.results if a.result.id == "cbc")
    assert report.verdict.covers == (loinc("58410-2"),) and report.verdict.missing == ()
    assert assessment.coverage[0].state == "covered"
    assert assessment.coverage[0].by == ("DiagnosticReport/cbc",)
    assert len(assessment.results) == 9  # the report and its eight components


def test_requested_haemoglobin_is_covered_by_a_cbc(world: World) -> None:
    assessment = world.run(_cbc(world), ["718-7"])
    refs = [a.result.ref for a in assessment.results]
    assert sorted(refs) == ["DiagnosticReport/cbc", "Observation/cbc-718-7"]
    for a in assessment.results:
        assert a.verdict.covers == (loinc("718-7"),)
    assert assessment.coverage[0].state == "covered"


def test_cbc_without_platelets_covers_the_panel_only_partly(world: World) -> None:
    assessment = world.run(_cbc(world, skip=("777-3",)), ["58410-2"])
    report = next(a for a in assessment.results if a.result.id == "cbc")
    assert report.verdict.kind == "recognised"
    assert report.verdict.covers == () and report.verdict.missing == ("777-3",)
    coverage = assessment.coverage[0]
    assert (coverage.state, coverage.missing) == ("partial", ("777-3",))
    assert len(coverage.by) == 5  # the five required components present


def test_a_member_that_fails_is_missing_from_the_panel(world: World) -> None:
    results = _cbc(world, unit="mmol/L")  # haemoglobin in a wrong unit
    assessment = world.run(results, ["718-7", "6690-2"])
    report = next(a for a in assessment.results if a.result.id == "cbc")
    assert "718-7" in report.verdict.missing
    assert report.verdict.covers == (loinc("6690-2"),)
    states = {c.requested[1]: c.state for c in assessment.coverage}
    assert states == {"718-7": "none", "6690-2": "covered"}


def test_panel_assembled_from_separate_component_results(world: World) -> None:
    parts = [world.result(c, hospital_id="szph") for c in ("2093-3", "2571-8", "2085-9")]
    parts.append(world.result("18262-6", hospital_id="nsdh", unit="mmol/L"))  # direct LDL alias
    coverage = world.run(parts, ["57698-3"]).coverage[0]
    assert coverage.state == "covered" and len(coverage.by) == 4


def test_basic_metabolic_panel_partly_covered_by_electrolytes(world: World) -> None:
    results = [world.result("2823-3"), world.result("2951-2"), world.result("2075-0")]
    coverage = world.run(results, ["51990-0"]).coverage[0]
    assert coverage.state == "partial"
    assert coverage.missing == ("2345-7", "3094-0", "2160-0", "17861-6")  # CO2 is optional


def test_members_from_another_hospital_do_not_complete_a_panel(world: World) -> None:
    results = _cbc(world)
    report = replace(results[0], hospital_id="pkuszh")
    assessment = world.run([report, *results[1:]], ["58410-2"], requester="nsdh")
    verdict = next(a.verdict for a in assessment.results if a.result.id == "cbc")
    assert verdict.missing == CBC_REQUIRED


def test_members_not_passed_in_are_asked_for_once(world: World) -> None:
    """Asked for haemoglobin, the index passes the report and haemoglobin; the engine asks
    for the report's other members (once, all together) to know the panel is complete."""
    results = _cbc(world)
    report, members = results[0], {m.ref: m for m in results[1:]}
    asked: list[list[str]] = []

    def source(refs: list[str]) -> list[PriorResult]:
        asked.append(refs)
        return [members[r] for r in refs if r in members]

    hgb = members["Observation/cbc-718-7"]
    assessment = world.run([report, hgb], ["718-7"], members=source)
    assert len(asked) == 1
    assert sorted(asked[0]) == sorted(r for r in members if r != hgb.ref)
    verdict = next(a.verdict for a in assessment.results if a.result.id == "cbc")
    assert verdict.missing == () and verdict.covers == (loinc("718-7"),)
    # Members read only for the check are not answered: they relate to nothing asked.
    assert sorted(a.result.ref for a in assessment.results) == [report.ref, hgb.ref]


def test_members_of_a_panel_that_fails_its_own_checks_are_not_asked_for(world: World) -> None:
    results = _cbc(world)
    report = replace(results[0], status="preliminary")
    asked: list[list[str]] = []
    assessment = world.run([report], ["718-7"], members=lambda refs: asked.append(refs) or [])
    verdict = assessment.results[0].verdict
    assert asked == []
    assert (verdict.reason, verdict.covers, verdict.missing) == ("not-final", (), ())


def test_a_reference_only_panel_lists_nothing_missing(world: World) -> None:
    """Only a panel that could stand in says what it lacks; an expired one covers nothing."""
    assessment = world.run(_cbc(world, skip=("777-3",)), ["58410-2"], when="2027-06-01T09:00:00")
    verdict = next(a.verdict for a in assessment.results if a.result.id == "cbc")
    assert (verdict.reason, verdict.missing) == ("expired", ())


# --- pending elsewhere ----------------------------------------------------------------------


def _order(**kw: Any) -> PendingOrder:
    base: dict[str, Any] = {
        "ref": "ServiceRequest/o1",
        "hospital_id": "szph",
        "codes": (loinc("58410-2"),),
        "authored": at("2026-11-04T16:00:00"),
    }
    base.update(kw)
    return PendingOrder(**base)


def test_preliminary_result_elsewhere_is_pending(world: World) -> None:
    prelim = world.result("4548-4", status="preliminary", effective=at("2026-11-04T10:00:00"))
    assessment = world.run([prelim], ["4548-4"])
    (pending,) = assessment.pending
    assert (pending.ref, pending.source, pending.hospital_name_zh) == (
        prelim.ref,
        "result",
        "深圳市人民医院",
    )
    assert pending.covers == (loinc("4548-4"),)
    assert "勿重复开单" in pending.explanation_zh
    assert assessment.coverage[0].state == "pending"
    assert assessment.results[0].verdict.reason == "not-final"


def test_active_order_for_a_cbc_is_pending_for_a_requested_haemoglobin(world: World) -> None:
    assessment = world.run([], ["718-7"], orders=[_order()])
    assert [p.ref for p in assessment.pending] == ["ServiceRequest/o1"]
    assert assessment.coverage[0].pending == ("ServiceRequest/o1",)


@pytest.mark.parametrize(
    "order",
    [
        _order(hospital_id="pkuszh"),  # the requester's own order
        _order(status="completed"),
        _order(authored=at("2026-11-05T10:00:00")),  # after the time asked
        _order(authored=at("2026-10-28T10:00:00")),  # older than the 7-day window: abandoned
        _order(codes=(loinc("2324-2"),)),  # another test
    ],
)
def test_orders_that_are_not_pending(world: World, order: PendingOrder) -> None:
    assert world.run([], ["718-7"], orders=[order]).pending == ()


def test_fulfilled_order_is_not_pending(world: World) -> None:
    done = world.result(
        "58410-2", resource_type="DiagnosticReport", based_on_order="ServiceRequest/o1"
    )
    assert world.run([done], ["718-7"], orders=[_order()]).pending == ()


# --- ordering and determinism ---------------------------------------------------------------


def test_recognised_first_then_newest_then_priority(world: World) -> None:
    old_ok = world.result("2345-7", id="old-ok", effective=at("2026-10-20T10:00:00"))
    new_bad = world.result(
        "2345-7",
        id="new-bad",
        hospital_id="nsdh",
        status="preliminary",
        effective=at("2026-11-04T10:00:00"),
    )
    newest_ok = world.result("2345-7", id="newest-ok", effective=at("2026-11-03T10:00:00"))
    panel = world.result(
        "51990-0", resource_type="DiagnosticReport", id="bmp", effective=at("2026-11-03T10:00:00")
    )
    assessment = world.run([old_ok, new_bad, newest_ok, panel], ["2345-7"])
    assert [a.result.id for a in assessment.results] == ["bmp", "newest-ok", "old-ok", "new-bad"]


def test_same_answer_whatever_the_input_order(world: World) -> None:
    results = [
        *_cbc(world),
        world.result("2823-3", id="k1"),
        world.result("2823-3", id="k2"),
        world.result("4548-4", hospital_id="nsdh"),
    ]
    codes = ["58410-2", "2823-3", "4548-4"]
    first = world.run(results, codes)
    shuffled = results[:]
    random.Random(7).shuffle(shuffled)
    assert world.run(shuffled, codes) == first


# --- imaging --------------------------------------------------------------------------------


def _study(world: World, **kw: Any) -> PriorResult:
    base: dict[str, Any] = {
        "resource_type": "ImagingStudy",
        "codes": (),
        "modality": "CT",
        "body_site": "51185008",
        "contrast": False,
        "status": "available",
    }
    base.update(kw)
    return world.result("CT-chest-plain", **base)


def test_imaging_matched_by_modality_site_and_contrast(world: World) -> None:
    v = world.one(_study(world), (CATALOGUE_URL, "CT-chest-plain")).verdict
    assert v.kind == "recognised" and v.item_code == "CT-chest-plain"
    assert v.expires_at == datetime(2027, 5, 2, tzinfo=SH)  # 6 months: last day 1 May 2027
    assert v.credential is not None and v.credential.scope == "discipline:imaging"


@pytest.mark.parametrize(
    ("changes", "item"),
    [
        # The demo studies (fixtures/dicom): no contrast in the headers, taken as plain.
        ({"contrast": None}, "CT-chest-plain"),
        ({"contrast": None, "codes": ((LOINC, "24627-2"),)}, "CT-chest-plain"),
        ({"modality": "MR", "body_site": "12738006", "contrast": None}, "MR-brain-plain"),
        ({"modality": "US", "body_site": "818981001", "contrast": None}, "US-abdomen"),
        ({"modality": "CT", "body_site": "818981001", "contrast": True}, "CT-abdomen-contrast"),
        # Never taken as enhanced; an enhanced study never passes for a plain one.
        ({"modality": "CT", "body_site": "818981001", "contrast": None}, None),
        ({"contrast": True}, None),
        ({"contrast": True, "codes": ((LOINC, "24627-2"),)}, None),
        ({"modality": "MR", "contrast": None}, None),  # no MR chest item
    ],
)
def test_imaging_key(world: World, changes: dict[str, Any], item: str | None) -> None:
    study = _study(world, **changes)
    assert world.catalogue.match(study) == (world.catalogue.item(item) if item else None)


def test_unstated_contrast_is_explained(world: World) -> None:
    v = world.one(_study(world, contrast=None), (CATALOGUE_URL, "CT-chest-plain")).verdict
    assert v.kind == "recognised"
    assert any(c.rule == "imaging.contrast" for c in v.checks)


def test_radiograph_any_contrast_and_loinc_alias(world: World) -> None:
    cr = _study(world, modality="CR", contrast=None)
    v = world.one(cr, loinc("42272-5")).verdict
    assert (v.kind, v.item_code) == ("recognised", "DX-chest")


# --- the request itself ---------------------------------------------------------------------


def test_requested_code_not_on_the_list(world: World) -> None:
    ggt = world.result("2324-2", unit="U/L", value=Decimal(30))
    assessment = world.run([ggt], ["2324-2", "2324-2"])
    assert len(assessment.requested) == 1 and assessment.requested[0].item_code is None
    coverage = assessment.coverage[0]
    assert (coverage.state, coverage.on_list) == ("none", False)


def test_unrelated_and_future_results_are_left_out(world: World) -> None:
    future = world.result("2823-3", effective=at("2026-11-06T10:00:00"))
    other = world.result("2345-7")
    assert world.run([future, other], ["2823-3"]).results == ()


@pytest.mark.parametrize(
    ("when", "requester", "expression"),
    [(datetime(2026, 11, 5, 9), "pkuszh", "at"), (at("2026-11-05T09:00"), "nowhere", "requester")],
)
def test_bad_request(world: World, when: datetime, requester: str, expression: str) -> None:
    with pytest.raises(Invalid) as caught:
        world.run([], ["2823-3"], when=when, requester=requester)
    assert caught.value.expression == expression


# --- the catalogue is data ------------------------------------------------------------------


def _edit(tmp_path: Path, code: str, edit: Callable[[list[dict[str, Any]]], None]) -> Catalogue:
    doc = json.loads((PROFILES / "CodeSystem-recognition-catalogue.json").read_text("utf-8"))
    concept = next(c for c in doc["concept"] if c["code"] == code)
    edit(concept["property"])
    copy = tmp_path / "CodeSystem-recognition-catalogue.json"
    copy.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return Catalogue.load(copy)


def test_editing_a_window_in_a_copy_changes_the_verdict(world: World, tmp_path: Path) -> None:
    def lengthen(props: list[dict[str, Any]]) -> None:
        next(p for p in props if p["code"] == "window")["valueString"] = "P14D"

    result = world.result("2823-3")
    when = "2026-11-10T09:00:00"
    shipped = world.one(result, when=when).verdict
    edited = world.one(result, when=when, catalogue=_edit(tmp_path, "2823-3", lengthen)).verdict
    assert (shipped.kind, shipped.reason) == ("reference-only", "expired")
    assert shipped.expires_at == datetime(2026, 11, 9, tzinfo=SH)
    assert (edited.kind, edited.expires_at) == ("recognised", datetime(2026, 11, 16, tzinfo=SH))


def test_an_edit_that_contradicts_a_panel_is_refused(tmp_path: Path) -> None:
    def shorten(props: list[dict[str, Any]]) -> None:
        next(p for p in props if p["code"] == "window")["valueString"] = "P3D"

    with pytest.raises(CatalogueError, match=r"51990-0.*outlive.*2823-3"):
        _edit(tmp_path, "2823-3", shorten)


def test_editing_a_credential_rule_in_a_copy_changes_the_verdict(
    world: World, tmp_path: Path
) -> None:
    def discipline_is_enough(props: list[dict[str, Any]]) -> None:
        next(p for p in props if p["code"] == "credential-scope")["valueCode"] = (
            "item-or-discipline"
        )

    result = world.result("4548-4", hospital_id="nsdh")
    assert world.one(result).verdict.reason == "no-credential-at-time"
    edited = world.one(result, catalogue=_edit(tmp_path, "4548-4", discipline_is_enough))
    assert edited.verdict.kind == "recognised"


def test_evaluate_accepts_a_hospital_mapping(world: World) -> None:
    hospitals = {h.id: h for h in world.hospitals}
    result = world.result("2823-3")
    assessment = evaluate(
        [result],
        [loinc("2823-3")],
        "pkuszh",
        at("2026-11-05T09:00"),
        world.catalogue,
        hospitals,
        world.credentials,
        world.policy,
    )
    assert assessment.results[0].verdict.kind == "recognised"
    assert assessment.at - at("2026-11-05T09:00") == timedelta(0)


@pytest.mark.parametrize(
    ("code", "changes", "kind"),
    [
        ("6301-6", {"unit": None, "value": Decimal("1.02")}, "recognised"),  # INR: unity, no unit
        ("6301-6", {"unit": "s"}, "reference-only"),
        ("2345-7", {"specimen": "SER"}, "recognised"),  # HL7 v2 table 0070 code
        ("2345-7", {"specimen": "UR"}, "reference-only"),
        ("2345-7", {"specimen": None}, "recognised"),  # not stated: not checked
        ("5804-0", {"specimen": "122575003", "value": "2+", "unit": None}, "recognised"),
    ],
)
def test_unit_and_specimen_details(
    world: World, code: str, changes: dict[str, Any], kind: str
) -> None:
    # Asked two days after the test: inside even the 3-day coagulation and urine windows.
    assert world.one(world.result(code, **changes), when="2026-11-03T09:00").verdict.kind == kind


def test_without_the_trail_verdicts_are_the_same_but_for_their_checks(world: World) -> None:
    """``trail=False`` (what ``$prior-results`` asks) drops ``Verdict.checks`` and nothing else:
    every reason's explanation still names what failed."""
    results = [
        world.result("2823-3"),  # recognised, another hospital
        world.result("2823-3", id="own", hospital_id="pkuszh"),  # own result
        world.result("2823-3", id="old", effective=at("2026-09-01T10:00:00")),  # expired
        world.result("2823-3", id="fix", version="1"),  # superseded by version 2
        world.result("2823-3", id="fix", version="2"),
        world.result("2823-3", id="prelim", status="preliminary"),  # not final
        world.result("2823-3", id="void", status="cancelled"),
        world.result("2823-3", id="unit", unit="g/L"),  # unit mismatch
        world.result("2345-7", id="urine", specimen="UR"),  # specimen mismatch
        world.result("4548-4", id="noeqa", hospital_id="nsdh"),  # no credential that day
    ]
    codes = ["2823-3", "2345-7", "4548-4"]
    full = world.run(results, codes)
    bare = world.run(results, codes, trail=False)
    reasons = {a.verdict.reason for a in full.results}
    assert reasons >= {
        None,
        "expired",
        "superseded",
        "not-final",
        "cancelled",
        "unit-mismatch",
        "specimen-mismatch",
        "no-credential-at-time",
    }
    assert all(a.verdict.checks for a in full.results)
    assert [a.result.key for a in bare.results] == [a.result.key for a in full.results]
    for with_checks, without in zip(full.results, bare.results, strict=True):
        assert without.verdict.checks == ()
        assert without.verdict == replace(with_checks.verdict, checks=())
    assert bare.coverage == full.coverage


def test_without_expired_results_only_those_past_their_window_are_left_out(world: World) -> None:
    """``include_expired=False`` (``$prior-results``' default) drops what is past its window,
    whatever else it fails, and nothing else: the other verdicts and the coverage stay."""
    results = [
        world.result("2823-3", id="ok"),  # recognised
        world.result("2823-3", id="old", effective=at("2026-09-01T10:00:00")),  # expired
        world.result(  # outside its window and without a credential: still left out
            "4548-4", id="old-noeqa", hospital_id="nsdh", effective=at("2026-06-01T10:00:00")
        ),
        world.result("4548-4", id="noeqa", hospital_id="nsdh"),  # within its window
        world.result("2823-3", id="prelim", status="preliminary"),  # pending, within
        world.result(  # pending for longer than the window: as an abandoned order
            "2823-3", id="stale", status="preliminary", effective=at("2026-08-01T10:00:00")
        ),
        world.result("2324-2", id="ggt", unit="U/L", value=Decimal(30)),  # no window at all
        world.result("2324-2", id="ggt-old", effective=at("2025-01-01T10:00:00")),
    ]
    codes = ["2823-3", "4548-4", "2324-2"]
    every = world.run(results, codes)
    today = world.run(results, codes, include_expired=False)
    past = {
        a.result.id
        for a in every.results
        if "expired" in (a.verdict.reason, *a.verdict.other_reasons)
    }
    assert past == {"old", "old-noeqa", "stale"}
    assert [a for a in every.results if a.result.id not in past] == list(today.results)
    assert {a.result.id for a in today.results} == {"ok", "noeqa", "prelim", "ggt", "ggt-old"}
    assert [p.ref for p in every.pending] == ["Observation/prelim", "Observation/stale"]
    assert [p.ref for p in today.pending] == ["Observation/prelim"]
    assert [replace(c, pending=()) for c in today.coverage] == [
        replace(c, pending=()) for c in every.coverage
    ]
    assert today.coverage[0].pending == ("Observation/prelim",)
