"""The savings ledger and decision checks: counts, money, minutes per visit, withdrawn
decisions, decline rates, rollups, CSV."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from recognition_world import PROFILES, World, at

from hie.outcome import Invalid
from hie.recognition.catalogue import Catalogue
from hie.recognition.decision import Decision, DeclineReasons, check_decision
from hie.recognition.savings import Lookup, csv_text, ledger, lookup_from, rollup


def decision(action: str = "accept", item: str = "4548-4", **kw: Any) -> Decision:
    base: dict[str, Any] = {
        "id": f"d-{item}-{kw.get('at', '')}-{kw.get('encounter', '')}-{action}",
        "action": action,
        "item_code": item,
        "hospital_id": "pkuszh",
        "department": "endocrinology",
        "clinician": "dr-li",
        "at": at("2026-11-05T09:30:00"),
        "result_ref": "Observation/a1c",
    }
    base.update(kw)
    return Decision(**base)


def rows_by_item(rows: Any) -> dict[str, Any]:
    return {r.item: r for r in rows}


def test_ledger_counts_money_and_declines(catalogue: Catalogue) -> None:
    lookups = [
        Lookup(
            "pkuszh", "endocrinology", at("2026-11-05T09:00"), ("4548-4", "2345-7"), ("4548-4",)
        ),
        Lookup("pkuszh", "endocrinology", at("2026-11-06T09:00"), ("4548-4",), ("4548-4",)),
    ]
    decisions = [
        decision(),
        decision(at=at("2026-11-06T09:10"), id="d2"),
        decision("decline", at=at("2026-11-06T09:20"), id="d3", reason="too-old"),
        decision("decline", item="2345-7", id="d4", reason="fast-changing"),
    ]
    rows = rows_by_item(ledger(lookups, decisions, catalogue))
    a1c = rows["4548-4"]
    assert (a1c.lookups, a1c.offered, a1c.accepted, a1c.declined, a1c.tests_avoided) == (
        2,
        2,
        2,
        1,
        2,
    )
    assert a1c.rmb_saved == Decimal(100)  # 2 x 50 RMB
    assert a1c.minutes_saved == 80  # two visits (no encounter given), 40 minutes each
    assert a1c.declined_by_reason == (("too-old", 1),)
    assert a1c.decline_rate == pytest.approx(1 / 3)
    glucose = rows["2345-7"]
    assert (glucose.lookups, glucose.offered, glucose.accepted, glucose.declined) == (1, 0, 0, 1)
    assert glucose.decline_rate == 1.0 and glucose.rmb_saved == 0


def test_minutes_count_once_per_visit(catalogue: Catalogue) -> None:
    visit = [
        decision(item="2823-3", encounter="e1", id="a"),
        decision(item="CT-chest-plain", encounter="e1", id="b"),
        decision(item="4548-4", encounter="e1", id="c"),
        decision(item="2345-7", encounter="e2", id="d"),
    ]
    rows = rows_by_item(ledger([], visit, catalogue))
    assert rows["CT-chest-plain"].minutes_saved == 120  # the largest of visit e1, once
    assert rows["2823-3"].minutes_saved == 0 and rows["4548-4"].minutes_saved == 0
    assert rows["2345-7"].minutes_saved == 40
    assert sum(r.rmb_saved for r in rows.values()) == Decimal(6 + 180 + 50 + 5)


def test_withdrawn_decisions_and_snapshots(catalogue: Catalogue) -> None:
    kept = decision(price_rmb=Decimal("48.5"), minutes_saved=35)
    withdrawn = decision(id="gone", withdrawn_at=at("2026-11-05T10:00"))
    (row,) = ledger([], [kept, withdrawn], catalogue)
    assert (row.accepted, row.rmb_saved, row.minutes_saved) == (1, Decimal("48.5"), 35)


def test_months_are_local(catalogue: Catalogue) -> None:
    late = decision(at=datetime.fromisoformat("2026-11-30T16:30:00+00:00"))  # 1 Dec in Shanghai
    (row,) = ledger([], [late], catalogue)
    assert row.month == "2026-12"


def test_rollup_and_csv(catalogue: Catalogue) -> None:
    decisions = [
        decision(),
        decision(item="2823-3", department="nephrology", id="k"),
        decision("decline", item="2823-3", department=None, id="k2", reason="emergency"),
        decision(hospital_id="szph", id="s"),
    ]
    rows = ledger([], decisions, catalogue)
    by_hospital = {r.hospital: r for r in rollup(rows, ["hospital"])}
    assert by_hospital["pkuszh"].accepted == 2 and by_hospital["pkuszh"].declined == 1
    assert by_hospital["pkuszh"].rmb_saved == Decimal(56)
    assert (by_hospital["pkuszh"].department, by_hospital["pkuszh"].item) == ("*", "*")
    (total,) = rollup(rows, [])
    assert (total.accepted, total.declined, total.tests_avoided) == (3, 1, 3)
    departments = {r.department for r in rollup(rows, ["department"])}
    assert departments == {"endocrinology", "nephrology", "-"}
    with pytest.raises(ValueError, match="unknown ledger dimension"):
        rollup(rows, ["ward"])  # type: ignore[list-item]
    text = csv_text(rollup(rows, ["hospital", "item"]))
    lines = text.splitlines()
    assert lines[0].startswith("hospital,department,item,month,lookups")
    assert "pkuszh,*,2823-3,*,0,0,1,1,1,6,40,0.5000,emergency=1" in lines
    assert rows[0].as_json()["rmbSaved"] == str(rows[0].rmb_saved)


def test_lookup_from_an_assessment(world: World) -> None:
    results = [
        world.result("4548-4", hospital_id="szph"),
        world.result("2345-7", hospital_id="nsdh", status="preliminary"),
    ]
    codes = ["4548-4", "2345-7", "2324-2"]
    lookup = lookup_from(world.run(results, codes), "endocrinology")
    assert lookup.requested_items == ("4548-4", "2345-7")  # GGT is not on the list
    assert lookup.offered_items == ("4548-4",)
    assert lookup.hospital_id == "pkuszh"


REASONS = DeclineReasons.load(PROFILES / "CodeSystem-decline-reasons.json")


@pytest.mark.parametrize(
    ("changes", "expression"),
    [
        ({"item_code": "2324-2"}, "item"),
        ({"reason": "emergency"}, "reason"),  # an acceptance with a reason
        ({"action": "decline"}, "reason"),
        ({"action": "decline", "reason": "bored"}, "reason"),
        ({"action": "decline", "reason": "clinician-judgement"}, "reasonText"),
        ({"action": "decline", "reason": "clinician-judgement", "reason_text": "  "}, "reasonText"),
    ],
)
def test_bad_decisions_are_refused(
    catalogue: Catalogue, changes: dict[str, Any], expression: str
) -> None:
    with pytest.raises(Invalid) as caught:
        check_decision(replace(decision(), **changes), REASONS, catalogue)
    assert caught.value.expression == expression


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"action": "decline", "reason": "too-old"},
        {"action": "decline", "reason": "clinician-judgement", "reason_text": "新发胸痛，需复查"},
    ],
)
def test_good_decisions_pass(catalogue: Catalogue, changes: dict[str, Any]) -> None:
    check_decision(replace(decision(), **changes), REASONS, catalogue)


def test_naive_decision_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decision(at=datetime(2026, 11, 5, 9))
