"""The linker's only view of the exchange's patients: a two-method seam.

:class:`PatientDirectory` is what the index (SQL) implements; :class:`InMemoryDirectory` is
the cheap implementation for tests and the benchmark. Both must answer the same way:

* ``by_identifiers(pairs)``: for each ``(system, value)`` held by an exchange patient, that
  patient (one lookup for a record's identifiers: each was a round trip to the database);
* ``candidates(keys)``: every patient that holds at least one of the blocking keys, with its
  merged traits (each patient once, any order).

The directory stores, per patient, the union of the :func:`~hie.identity.blocking.blocking_keys`
of the records linked to it and the merge of their traits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from hie.identity.blocking import blocking_keys
from hie.identity.traits import Traits


@dataclass(frozen=True)
class Candidate:
    patient_id: str  # the exchange patient id (naming.EXCHANGE_PATIENT)
    traits: Traits


class PatientDirectory(Protocol):
    def by_identifiers(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]: ...

    def candidates(self, blocking_keys: list[str]) -> list[Candidate]: ...


class InMemoryDirectory:
    """Patients in dictionaries; first holder of an identifier keeps it."""

    def __init__(self) -> None:
        self._traits: dict[str, Traits] = {}
        self._identifiers: dict[tuple[str, str], str] = {}
        self._blocks: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._traits)

    def add(self, patient_id: str, traits: Traits) -> None:
        """Link a record's traits to ``patient_id`` (creating the patient if new)."""
        known = self._traits.get(patient_id)
        self._traits[patient_id] = known.merge(traits) if known else traits
        for ident in traits.identifiers:
            self._identifiers.setdefault(ident, patient_id)
        for key in blocking_keys(traits):
            self._blocks.setdefault(key, set()).add(patient_id)

    def traits(self, patient_id: str) -> Traits:
        return self._traits[patient_id]

    def patient_ids(self) -> Iterable[str]:
        return self._traits.keys()

    def by_identifiers(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return {pair: pid for pair in pairs if (pid := self._identifiers.get(pair)) is not None}

    def candidates(self, blocking_keys: list[str]) -> list[Candidate]:
        ids: dict[str, None] = {}
        for key in blocking_keys:
            for pid in sorted(self._blocks.get(key, ())):
                ids[pid] = None
        return [Candidate(pid, self._traits[pid]) for pid in ids]
