"""MSH-18 character sets → Python codecs, and decoding a message with an honest fallback.

HL7 v2.5.1 §2.15.9.18 (table 0211) names the character set of a message; an empty MSH-18
means ASCII (§2.7.1). Chinese hospital systems send ``UNICODE UTF-8`` or ``GB 18030-2000``
(often misspelt ``GB18030``, ``GBK`` or ``GB2312``); some send GB18030 bytes with MSH-18 left
empty. Decoding therefore tries the declared set, then the hospital's configured default, then
UTF-8, GB18030 and finally ISO 8859-1 (which never fails), and says which one it used so ops
can fix the sender instead of reading mojibake.

GB 2312 and GBK are subsets of GB 18030, so every alias of those decodes with ``gb18030``.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

# Keys are upper-case with spaces, dashes and underscores removed.
_CODECS: dict[str, str] = {
    "ASCII": "ascii",
    "USASCII": "ascii",
    "UNICODEUTF8": "utf-8",
    "UTF8": "utf-8",
    "UNICODE": "utf-8",  # 2.5 table 0211 "UNICODE" is ambiguous; UTF-8 in practice
    "UNICODEUTF16": "utf-16",
    "UTF16": "utf-16",
    "UNICODEUTF32": "utf-32",
    "GB180302000": "gb18030",
    "GB18030": "gb18030",
    "GB2312": "gb18030",
    "GB23121980": "gb18030",
    "ISOIR58": "gb18030",  # GB 2312 registered as ISO-IR 58
    "GBK": "gb18030",
    "CP936": "gb18030",
    "BIG5": "big5",
    "BIG5HKSCS": "big5hkscs",
    "ISOIR87": "iso2022_jp",
    "ISOIR149": "euc_kr",
    "KSC5601": "euc_kr",
    "ISOIR6": "ascii",
    "ISOIR100": "latin-1",
    "WINDOWS1252": "cp1252",
    "CP1252": "cp1252",
}
for _n in range(1, 16):
    _CODECS[f"8859{_n}"] = f"iso8859_{_n}" if _n != 12 else "latin-1"
_CODECS["88591"] = "latin-1"


def codec_for(label: str) -> str | None:
    """The Python codec for an MSH-18 value (HL7 table 0211 or a common alias), else None."""
    key = label.upper().replace(" ", "").replace("-", "").replace("_", "").replace("/", "")
    if not key:
        return None
    name = _CODECS.get(key)
    if name is None:
        try:
            name = codecs.lookup(label.strip()).name
        except LookupError:
            return None
    return name


@dataclass(frozen=True)
class Decoded:
    """A message as text, with the codec used and a note when it is not what MSH-18 said."""

    text: str
    codec: str
    note: str | None = None


def decode(raw: bytes, declared: str, default: str = "utf-8") -> Decoded:
    """Decode ``raw`` honouring the MSH-18 label ``declared`` (may be empty).

    ``default`` is the hospital's configured charset for messages with an empty MSH-18.
    """
    wanted = codec_for(declared) if declared else None
    first = wanted or codec_for(default) or "utf-8"
    if declared and not wanted:
        unknown = f"MSH-18 {declared!r} is not a known character set"
    else:
        unknown = None
    try:
        text = raw.decode(first)
    except UnicodeDecodeError:
        pass
    else:
        return Decoded(text, first, f"{unknown}; decoded as {first}" if unknown else None)
    for fallback in ("utf-8", "gb18030", "latin-1"):
        if fallback == first:
            continue
        try:
            text = raw.decode(fallback)
        except UnicodeDecodeError:
            continue
        if unknown:
            why = unknown
        elif declared:
            why = f"MSH-18 says {declared!r} but the bytes are not valid {first}"
        else:
            why = f"MSH-18 is empty and the bytes are not valid {first}"
        return Decoded(text, fallback, f"{why}; decoded as {fallback}")
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def encode(text: str, declared: str, default: str = "utf-8") -> bytes:
    """Encode a reply (an ACK) in the character set the sender used; unknown → ``default``."""
    name = (codec_for(declared) if declared else None) or codec_for(default) or "utf-8"
    return text.encode(name, errors="replace")
