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
``nd:{fuzzy pinyin}:{mmdd}`` the same name and month-day: survives a wrong year
``nn:{fuzzy pinyin}``       the name alone; *queried* only for a record without a birth date
                            (it is large for common names)
=========================== ===============================================================

A directory stores, for each patient, the :func:`blocking_keys` of every record linked to it;
the linker asks with :func:`query_keys` (a subset). The keys are plain strings so that an SQL
table ``(key, patient_id)`` with an index on ``key`` serves them.
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
    month_days = sorted({f"{d:%m%d}" for d in dates})
    for n in traits.names:
        if n.placeholder is not None:
            continue
        for spelled in sorted({fuzzy(n.full), fuzzy(n.reversed)}):
            for year in years:
                keys[f"nm:{spelled}:{year}"] = None
            for md in month_days:
                keys[f"nd:{spelled}:{md}"] = None
            keys[f"nn:{spelled}"] = None
    return list(keys)


def query_keys(traits: Traits) -> list[str]:
    """The keys to look candidates up by: name-only keys just when there is no birth date."""
    keys = blocking_keys(traits)
    if traits.effective_birth_dates:
        return [k for k in keys if not k.startswith("nn:")]
    return keys
