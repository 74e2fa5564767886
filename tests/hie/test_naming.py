"""Ids the exchange mints."""

from __future__ import annotations

import re
import time

from hie import naming


def test_new_ids_are_fhir_ids_ordered_by_time_and_unique() -> None:
    made = []
    for _ in range(3):
        made += [naming.new_id() for _ in range(1000)]
        time.sleep(0.002)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == len(made)
    # the millisecond prefix never goes back: ids made later sort after earlier ones
    prefixes = [i[:12] for i in made]
    assert prefixes == sorted(prefixes) and prefixes[0] < prefixes[-1]
    assert abs(int(made[-1][:12], 16) / 1000 - time.time()) < 60
