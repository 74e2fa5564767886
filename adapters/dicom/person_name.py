"""DICOM Person Names (PN, PS3.5 §6.2.1) to FHIR HumanName.

A PN value has up to three component groups, written ``alphabetic=ideographic=phonetic``
(e.g. ``Zhang^Wei=张^伟``), each with five ``^``-separated components: family, given,
middle, prefix, suffix. Chinese PACS send the pinyin and the characters side by side; both
matter to the people reading the record and to patient matching, so each group becomes its
own HumanName, marked with the ISO 21090 ``EN.representation`` extension (ABC / IDE / SYL)
that FHIR R4 defines for exactly this.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
# PS3.18 §F.2.2 group names → ISO 21090 EntityNameRepresentation codes
GROUPS = (("Alphabetic", "ABC"), ("Ideographic", "IDE"), ("Phonetic", "SYL"))


def _components(group: str) -> list[str]:
    parts = [p.strip() for p in group.split("^")]
    return (parts + [""] * 5)[:5]


def _text(components: list[str], ideographic: bool) -> str:
    family, given, middle = components[0], components[1], components[2]
    names = [n for n in (family, given, middle) if n]
    # Chinese, Japanese and Korean names in characters are written without spaces.
    return ("" if ideographic else " ").join(names)


def human_names(pn: JSON) -> list[JSON]:
    """One HumanName per non-empty component group, in DICOM's order (alphabetic first)."""
    out: list[JSON] = []
    for group_name, code in GROUPS:
        raw = pn.get(group_name)
        if not isinstance(raw, str) or not raw.replace("^", "").strip():
            continue
        family, given, middle, prefix, suffix = _components(raw)
        name: JSON = {
            "extension": [{"url": REPRESENTATION, "valueCode": code}],
            "use": "official",
            "text": _text([family, given, middle], ideographic=code == "IDE"),
        }
        if family:
            name["family"] = family
        given_names = [g for g in (given, middle) if g]
        if given_names:
            name["given"] = given_names
        if prefix:
            name["prefix"] = [prefix]
        if suffix:
            name["suffix"] = [suffix]
        out.append(name)
    return out


def display(pn: JSON) -> str | None:
    """A one-line rendering for Reference.display: characters first, pinyin in brackets."""
    texts = {n["extension"][0]["valueCode"]: n["text"] for n in human_names(pn)}
    ideographic, alphabetic = texts.get("IDE"), texts.get("ABC")
    if ideographic and alphabetic:
        return f"{ideographic} ({alphabetic})"
    return ideographic or alphabetic or texts.get("SYL")
