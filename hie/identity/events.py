"""The pure records of identity changes, for the index to persist.

Every change to which patient a source record belongs is a :class:`LinkEvent`, appended,
never updated: ``unlink`` restores what the matching ``link`` changed, ``merge`` moves all
records of ``from_patient`` into ``to_patient`` (IHE PIX "patient identity merge"). A
:class:`ReviewItem` is a grey-zone or conflicting pair waiting for a human; accepting it
yields the link event, rejecting it leaves the record where it was.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from hie.identity.linker import Link, Review

Action = Literal["link", "unlink", "merge"]
ReviewStatus = Literal["open", "accepted", "rejected"]


@dataclass(frozen=True)
class LinkEvent:
    """One change of patient identity.

    ``source_record`` names the hospital record (e.g. its MRN identifier ``system|value`` or
    the stored Patient's id); ``rule`` is the linker rule, ``review:accepted``, ``manual`` or
    ``merge``; ``actor`` is ``system`` for the linker or the user who decided.
    """

    action: Action
    source_record: str
    from_patient: str | None
    to_patient: str | None
    rule: str
    score: float | None
    actor: str
    at: datetime

    @classmethod
    def of_link(cls, decision: Link, source_record: str, at: datetime) -> LinkEvent:
        return cls(
            "link",
            source_record,
            None,
            decision.patient_id,
            decision.rule,
            decision.score,
            "system",
            at,
        )

    def undone(self, actor: str, at: datetime) -> LinkEvent:
        """The event that reverses this one: the record goes back where it came from."""
        action: Action = "link" if self.action == "unlink" else "unlink"
        return LinkEvent(
            action,
            self.source_record,
            self.to_patient,
            self.from_patient,
            "manual",
            None,
            actor,
            at,
        )


@dataclass(frozen=True)
class ReviewItem:
    """A candidate link waiting for a human (``hie patients review``)."""

    source_record: str
    candidate_patient_id: str
    score: float | None
    reasons: tuple[str, ...]
    created_at: datetime
    current_patient_id: str | None = None  # where the record lives meanwhile, if anywhere
    status: ReviewStatus = "open"
    decided_by: str | None = None
    decided_at: datetime | None = None

    @classmethod
    def of_review(
        cls,
        decision: Review,
        source_record: str,
        at: datetime,
        current_patient_id: str | None = None,
    ) -> ReviewItem:
        return cls(
            source_record,
            decision.candidate_patient_id,
            decision.score,
            decision.reasons,
            at,
            current_patient_id,
        )

    def accept(self, actor: str, at: datetime) -> tuple[ReviewItem, LinkEvent]:
        """Accepted: the record joins the candidate (a merge if it had its own patient)."""
        self._must_be_open()
        event = LinkEvent(
            "merge" if self.current_patient_id else "link",
            self.source_record,
            self.current_patient_id,
            self.candidate_patient_id,
            "review:accepted",
            self.score,
            actor,
            at,
        )
        return replace(self, status="accepted", decided_by=actor, decided_at=at), event

    def reject(self, actor: str, at: datetime) -> ReviewItem:
        """Rejected: nothing moves; the pair is remembered as different people."""
        self._must_be_open()
        return replace(self, status="rejected", decided_by=actor, decided_at=at)

    def _must_be_open(self) -> None:
        if self.status != "open":
            raise ValueError(f"review item already {self.status}")
