"""Mutation fuzzing: damaged messages end as BadMessage or as valid FHIR, never anything else.

Units from the HL7 v2 mapper are marked ``trusted`` (ingest skips the second pydantic pass),
so whatever the mapper emits must already be valid FHIR R4: checked here on hypothesis-made
mutations of the demo fixtures (delimiters inserted, characters dropped or replaced).
"""

from __future__ import annotations

from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import BadMessage
from adapters.hl7v2.coding import Context
from adapters.hl7v2.framing import split_messages
from adapters.hl7v2.oru import map_framed

ROOT = Path(__file__).resolve().parents[3]
SEEDS = [
    m.body.decode("utf-8")
    for p in sorted((ROOT / "fixtures" / "hl7v2").glob("s*/*.hl7"))
    for m in split_messages(p.read_bytes())
]
ALPHABET = "|^~\\&\r\n 0123456789.-<>+:/#ABCXYZ张\x0b\x1c"

edit = st.tuples(
    st.sampled_from(["insert", "delete", "replace"]),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.sampled_from(ALPHABET),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), edits=st.lists(edit, min_size=1, max_size=6))
def test_mutated_messages_map_to_valid_fhir_or_bad_message(
    seed: str, edits: list[tuple[str, float, str]]
) -> None:
    text = seed
    for kind, where, ch in edits:
        i = int(where * len(text))
        if kind == "insert":
            text = text[:i] + ch + text[i:]
        elif kind == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + ch + text[i + 1 :]
    for framed in split_messages(text.encode("utf-8")):
        try:
            unit = map_framed(framed, Context("szph"))
        except BadMessage as exc:
            assert exc.reason
            continue
        for entry in unit.entries:
            res = entry.resource
            get_fhir_model_class(res["resourceType"]).model_validate(res)


def test_codes_with_odd_whitespace_are_normalised() -> None:
    raw = SEEDS[0].replace("XC001^白细胞计数^L", "XC  001^白细胞计数^L").encode()
    unit = map_framed(split_messages(raw)[0], Context("szph"))
    for entry in unit.entries:
        res = entry.resource
        get_fhir_model_class(res["resourceType"]).model_validate(res)
    codes = [
        c["code"]
        for e in unit.entries
        if e.resource["resourceType"] == "Observation"
        for c in e.resource["code"]["coding"]
    ]
    assert "XC 001" in codes
