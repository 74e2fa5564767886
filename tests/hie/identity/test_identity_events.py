"""Link history and review items as pure data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hie.identity import Link, LinkEvent, Review, ReviewItem

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_link_event_from_a_decision_and_its_undo() -> None:
    event = LinkEvent.of_link(Link("P7", "deterministic:mrn", 40.0), "szph|0012345", T0)
    assert (event.action, event.from_patient, event.to_patient, event.actor) == (
        "link",
        None,
        "P7",
        "system",
    )
    undo = event.undone("dr.li", T1)
    assert (undo.action, undo.from_patient, undo.to_patient, undo.actor) == (
        "unlink",
        "P7",
        None,
        "dr.li",
    )
    assert undo.undone("dr.li", T1).action == "link"


def test_review_accept_merges_the_records_patient_into_the_candidate() -> None:
    item = ReviewItem.of_review(Review("P1", 25.0, ("grey",)), "pkuszh|P-1", T0, "P9")
    accepted, event = item.accept("ops.wang", T1)
    assert accepted.status == "accepted" and accepted.decided_by == "ops.wang"
    assert (event.action, event.from_patient, event.to_patient, event.rule) == (
        "merge",
        "P9",
        "P1",
        "review:accepted",
    )
    with pytest.raises(ValueError):
        accepted.reject("ops.wang", T1)


def test_review_accept_without_a_current_patient_is_a_link_and_reject_moves_nothing() -> None:
    item = ReviewItem.of_review(Review("P1", 25.0, ("grey",)), "pkuszh|P-1", T0)
    assert item.accept("ops.wang", T1)[1].action == "link"
    rejected = item.reject("ops.wang", T1)
    assert rejected.status == "rejected" and rejected.decided_at == T1
    assert item.status == "open"  # frozen: the original is unchanged
