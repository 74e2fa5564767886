"""Blocking keys: which patients are worth scoring against a new record.

Scoring every patient is quadratic; a key shared by a record and a patient makes the patient
a candidate. Recall matters more than block size here (a true match never looked at becomes
a duplicate patient), so each kind of error the generator and real registration data show is
survived by at least one key:

=========================== ===============================================================
``id:{system}|{value}``     every identifier (also lets the linker read the traits of the
                            patient a deterministic identifier points to)
``ph:{digits}``             each phone: survives name typos and wrong birth dates
``bd:{y}{m|d}{d|m}{X}``     birth year, then month and day *sorted* (so a transposed
                            day/month lands in the same block), then the initial of the
                            family or the given name (either order, so swapped names and a
                            typo in one part still meet)
``nm:{fuzzy pinyin}:{y}``   soundex-like pinyin of the whole name (zh/z, ch/c, sh/s, -ng/-n,
                            l/n merged, both orders) and birth year: survives a wrong day
                            or month and homophones
=========================== ===============================================================

A directory stores, for each patient, the keys of every record linked to it; the keys are
plain strings so that an SQL table ``(key, patient_id)`` with an index on ``key`` serves them.
"""

from __future__ import annotations

from hie.identity.names import fuzzy
from hie.identity.traits import Traits


def blocking_keys(traits: Traits) -> list[str]:
    keys: dict[str, None] = {}
    for system, value in sorted(traits.identifiers):
        keys[f"id:{system}|{value}"] = None
    for phone in sorted(traits.phones):
        keys[f"ph:{phone}"] = None
    dates = sorted(traits.effective_birth_dates)
    initials = sorted({part[0] for n in traits.names for part in (n.family, n.given) if part})
    for d in dates:
        low, high = sorted((d.month, d.day))
        for initial in initials:
            keys[f"bd:{d.year:04d}{low:02d}{high:02d}{initial}"] = None
    years = sorted({d.year for d in dates})
    for n in traits.names:
        if n.placeholder is not None:
            continue
        for spelled in {fuzzy(n.full), fuzzy(n.reversed)}:
            for year in years:
                keys[f"nm:{spelled}:{year}"] = None
    return list(keys)
