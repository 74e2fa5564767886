"""HL7 v2 encoding characters and escape sequences (HL7 v2.5.1 §2.5.4 and §2.7).

MSH-2 normally holds four characters, component ``^``, repetition ``~``, escape ``\\`` and
subcomponent ``&`` (v2.7 adds truncation ``#``). Senders in the wild also send three
(``^~&`` with no escape character, ``^\\&`` with no repetition character) or a doubled
backslash (``^~\\\\&``); :func:`encoding_from_msh2` reads those by character rather than by
position. Escape sequences are resolved per leaf value after splitting, as §2.7 requires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Placeholders for roles MSH-2 leaves out: control characters no message text contains.
_NO_REPETITION = "\x01"
_NO_ESCAPE = "\x02"
_NO_SUBCOMPONENT = "\x03"


@dataclass(frozen=True)
class Encoding:
    """The delimiters of one message (MSH-1 and MSH-2), with ``msh2`` as the sender wrote it."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    msh2: str = "^~\\&"

    @property
    def canonical_msh2(self) -> str:
        """Four characters in standard order, placeholders included (MSH-2 as parse rewrites it)."""
        return self.component + self.repetition + self.escape + self.subcomponent


def encoding_from_msh2(field_sep: str, msh2: str) -> Encoding:
    """Read MSH-2 by character where it is not the standard four (see module docstring)."""
    chars = msh2
    if len(chars) >= 4 and chars[2:4] == "\\\\":
        chars = chars[:2] + chars[3:]  # "^~\\&": a doubled escape character
    if len(chars) >= 4:
        return Encoding(field_sep, chars[0], chars[1], chars[2], chars[3], msh2)
    component = chars[0] if chars else "^"
    rest = chars[1:]
    repetition = "~" if "~" in rest else _NO_REPETITION
    escape = "\\" if "\\" in rest else _NO_ESCAPE
    sub = "&" if "&" in rest else _NO_SUBCOMPONENT
    return Encoding(field_sep, component, repetition, escape, sub, msh2)


_FORMATTING = re.compile(r"\.(br|sp|fi|nf|in|ti|sk|ce)([+-]?\d*)$")


def unescape(value: str, enc: Encoding, codec: str = "utf-8") -> str:
    """Resolve escape sequences in one leaf value (component or subcomponent).

    Formatting commands become plain text (``\\.br\\`` a line break); highlighting, locally
    defined (``\\Z..\\``) and character-set switching sequences (``\\C..\\``, ``\\M..\\``) are
    dropped; ``\\Xhh..\\`` bytes are decoded with the message's own character set.
    """
    esc = enc.escape
    if esc not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c != esc:
            out.append(c)
            i += 1
            continue
        j = value.find(esc, i + 1)
        if j < 0:  # unterminated: keep the rest literally
            out.append(value[i:])
            break
        out.append(_sequence(value[i + 1 : j], enc, codec))
        i = j + 1
    return "".join(out)


def _sequence(seq: str, enc: Encoding, codec: str) -> str:
    simple = {
        "F": enc.field,
        "S": enc.component,
        "T": enc.subcomponent,
        "R": enc.repetition,
        "E": enc.escape,
        "H": "",
        "N": "",
    }
    if seq in simple:
        return simple[seq]
    if seq[:1] == "X" and len(seq) % 2 == 1:
        try:
            return bytes.fromhex(seq[1:]).decode(codec, errors="replace")
        except ValueError:
            return ""
    m = _FORMATTING.match(seq)
    if m:
        cmd, arg = m.groups()
        count = int(arg) if arg.lstrip("+-").isdigit() else 1
        if cmd in ("br", "ce"):
            return "\n"
        if cmd == "sp":
            return "\n" * max(count, 1)
        if cmd == "sk":
            return " " * max(count, 1)
        return ""
    return ""  # \Z..\, \C..\, \M..\ and unknown sequences carry nothing we can show


def escape(value: str, enc: Encoding) -> str:
    """Escape delimiters in text we write into a message (ACK ERR-8, MSA-3)."""
    esc = enc.escape if enc.escape != _NO_ESCAPE else "\\"
    table = {
        esc: f"{esc}E{esc}",
        enc.field: f"{esc}F{esc}",
        enc.component: f"{esc}S{esc}",
        enc.repetition: f"{esc}R{esc}",
        enc.subcomponent: f"{esc}T{esc}",
        "\r": f"{esc}.br{esc}",
        "\n": f"{esc}.br{esc}",
    }
    return "".join(table.get(c, c) for c in value)
