"""Patient identity: identifier rules, traits, match scoring and the link decision.

Pure domain code (no SQL, no HTTP). The index implements :class:`PatientDirectory` and
persists :class:`LinkEvent`/:class:`ReviewItem`; ingest calls :func:`from_patient` then
:func:`decide`.
"""

from hie.identity.directory import Candidate, InMemoryDirectory, PatientDirectory
from hie.identity.errors import InvalidIdentifier
from hie.identity.events import LinkEvent, ReviewItem
from hie.identity.linker import Link, LinkDecision, MatchSettings, NewPatient, Review, decide
from hie.identity.traits import Traits, from_patient

__all__ = [
    "Candidate",
    "InMemoryDirectory",
    "InvalidIdentifier",
    "Link",
    "LinkDecision",
    "LinkEvent",
    "MatchSettings",
    "NewPatient",
    "PatientDirectory",
    "Review",
    "ReviewItem",
    "Traits",
    "decide",
    "from_patient",
]
