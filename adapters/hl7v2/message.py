"""A parsed HL7 v2 message: segments and fields split on the message's own delimiters, behind
typed, escape-aware accessors.

A segment is split into fields when parsed and a field into repetitions, components and
subcomponents only when read: :class:`Segment` hides that and the escape sequences, so
``seg.get(3, 1)`` is PID-3.1 of the first repetition, unescaped with the message's own
encoding characters and charset. This used python-hl7's tree (``hl7.parse``), which builds
every component of every field up front: that was more than half the CPU of mapping an
ORU^R01 (0.283 → 0.117 ms a result on the MLLP path, with byte-identical FHIR output for the
13,920 messages of city-small, the fixtures and the shared reference data). python-hl7
remains the benchmark's parse floor and the tests' MLLP client.

Errors raised here and by the mappers are :class:`MessageError`, a :class:`BadMessage` that
also carries the HL7 table 0357 condition code and whether the ACK is AE or AR.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from adapters.base import BadMessage
from adapters.hl7v2 import charset
from adapters.hl7v2.escapes import Encoding, encoding_from_msh2, unescape
from adapters.hl7v2.framing import Framed

# HL7 table 0357, message error condition codes (the ones hie reports).
SEGMENT_SEQUENCE = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT = "201"
UNSUPPORTED_VERSION = "203"
UNKNOWN_KEY = "204"
INTERNAL_ERROR = "207"

CONDITION_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "207": "Application internal error",
}


class MessageError(BadMessage):
    """A message hie cannot map. ``reject`` → ACK AR (not processed at all), else AE.

    HL7 v2.5.1 §2.9.2: AR when the message type, event, version or structure is unacceptable;
    AE when it was understood but its content is in error.
    """

    def __init__(
        self,
        reason: str,
        *,
        location: str | None = None,
        condition: str = DATA_TYPE_ERROR,
        reject: bool = False,
    ) -> None:
        super().__init__(reason, location=location)
        self.condition = condition
        self.reject = reject

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}" if self.location else self.reason


@dataclass(frozen=True)
class Coded:
    """A CE/CWE/CNE value: primary triplet and the alternate triplet (components 4-6)."""

    code: str = ""
    text: str = ""
    system: str = ""
    alt_code: str = ""
    alt_text: str = ""
    alt_system: str = ""

    def __bool__(self) -> bool:
        return bool(self.code or self.text or self.alt_code)


Rep = list[list[str]]  # components → subcomponents


def _reps(text: str, enc: Encoding) -> list[Rep]:
    """One field's text as repetitions → components → subcomponents (still escaped)."""
    rep_sep, comp_sep, sub_sep = enc.repetition, enc.component, enc.subcomponent
    return [[comp.split(sub_sep) for comp in rep.split(comp_sep)] for rep in text.split(rep_sep)]


class Segment:
    """One segment; field numbers are HL7's (MSH-9 is ``msh.get(9)``)."""

    __slots__ = ("_cache", "_raw", "codec", "enc", "id", "occurrence")

    def __init__(self, raw: list[str], occurrence: int, enc: Encoding, codec: str) -> None:
        self._raw = raw  # the fields' text; MSH's field separator is its field 1, as in HL7
        self._cache: dict[int, list[Rep]] = {}
        self.id = raw[0] if raw else ""
        self.occurrence = occurrence
        self.enc = enc
        self.codec = codec

    def loc(self, field: int | None = None, rep: int | None = None) -> str:
        """Where in the message, e.g. ``OBX[3]-5`` or ``PID-3[2]`` (for errors and ERR-2)."""
        name = self.id if self.id in ("MSH", "PID") else f"{self.id}[{self.occurrence}]"
        if field is None:
            return name
        return f"{name}-{field}" + (f"[{rep}]" if rep else "")

    def reps(self, field: int) -> list[Rep]:
        """All repetitions of a field (still escaped); [] when the field is absent or empty."""
        cached = self._cache.get(field)
        if cached is None:
            if field >= len(self._raw) or (self.id == "MSH" and field <= 2):
                cached = []
            else:
                cached = [r for r in _reps(self._raw[field], self.enc) if any(any(c) for c in r)]
            self._cache[field] = cached
        return cached

    def text(self, value: str) -> str:
        """Unescape one leaf; HL7's explicit null ``""`` reads as empty."""
        if value == '""':
            return ""
        return unescape(value, self.enc, self.codec)

    def get(self, field: int, comp: int = 1, sub: int = 1, rep: int = 1) -> str:
        """One leaf value, unescaped and stripped; "" when absent."""
        # the mappers call this ~30 times per OBX: reps() and text() are inlined
        reps = self._cache.get(field)
        if reps is None:
            reps = self.reps(field)
        if len(reps) < rep:
            return ""
        comps = reps[rep - 1]
        if len(comps) < comp or len(comps[comp - 1]) < sub:
            return ""
        value = comps[comp - 1][sub - 1]
        if value == '""':
            return ""
        return unescape(value, self.enc, self.codec).strip()

    def raw_field(self, field: int) -> str:
        """The field's text as sent (for MSH-1/2 and messages in reasons)."""
        if field >= len(self._raw):
            return ""
        return self._raw[field]

    def coded(self, field: int, rep: int = 1) -> Coded:
        """Components 1-6 of one repetition, each as ``get(field, n, rep=rep)`` reads it."""
        reps = self.reps(field)
        if len(reps) < rep:
            return Coded()
        comps = reps[rep - 1]
        enc, codec = self.enc, self.codec
        parts = ["", "", "", "", "", ""]
        for n, subs in enumerate(comps[:6]):
            if subs:
                value = subs[0]
                if value != '""':
                    parts[n] = unescape(value, enc, codec).strip()
        return Coded(*parts)

    def components(self, field: int, rep: int = 1) -> list[str]:
        """All components of one repetition, unescaped (subcomponents joined by ``&``)."""
        reps = self.reps(field)
        if len(reps) < rep:
            return []
        return ["&".join(self.text(s) for s in comp).strip() for comp in reps[rep - 1]]


@dataclass
class V2Message:
    """A parsed message with its header facts read once."""

    segments: list[Segment]
    enc: Encoding
    codec: str
    notes: list[str]

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def control_id(self) -> str:
        return self.msh.get(10)

    @property
    def message_type(self) -> tuple[str, str]:
        return self.msh.get(9, 1).upper(), self.msh.get(9, 2).upper()

    @property
    def version(self) -> str:
        return self.msh.get(12, 1)

    @property
    def charset_label(self) -> str:
        return self.msh.get(18, 1)

    @property
    def sending_facility(self) -> str:
        return self.msh.get(4, 1)

    def all(self, seg_id: str) -> Iterator[Segment]:
        return (s for s in self.segments if s.id == seg_id)

    def first(self, seg_id: str) -> Segment | None:
        return next(self.all(seg_id), None)


def _msh18(msh: bytes, sep: bytes, enc: Encoding) -> str:
    parts = msh.split(sep)
    if len(parts) < 18:
        return ""
    value = parts[17].decode("ascii", errors="replace")
    return value.split(enc.repetition)[0].split(enc.component)[0].strip()


def parse(framed: Framed, default_charset: str = "utf-8") -> V2Message:
    """Decode (MSH-18) and parse one framed message; MessageError(reject=True) if impossible."""
    if not framed.has_msh:
        first = framed.segments[0][:3].decode("ascii", "replace") if framed.segments else ""
        raise MessageError(
            f"no MSH segment: the data starts with {first!r}",
            location="MSH",
            condition=SEGMENT_SEQUENCE,
            reject=True,
        )
    msh = framed.segments[0]
    sep = msh[3:4]
    if len(msh) < 8 or not sep or sep.isalnum() or sep.isspace():
        raise MessageError(
            "MSH is too short to hold the field separator and encoding characters",
            location="MSH-2",
            condition=REQUIRED_FIELD_MISSING,
            reject=True,
        )
    end = msh.find(sep, 4)
    msh2 = msh[4 : end if end > 0 else len(msh)].decode("ascii", errors="replace")
    if not msh2:
        raise MessageError(
            "MSH-2 (encoding characters) is empty",
            location="MSH-2",
            condition=REQUIRED_FIELD_MISSING,
            reject=True,
        )
    field_sep = sep.decode("ascii", errors="replace")
    enc = encoding_from_msh2(field_sep, msh2)
    decoded = charset.decode(framed.body, _msh18(msh, sep, enc), default_charset)
    notes = list(framed.notes)
    if decoded.note:
        notes.append(decoded.note)
    text = decoded.text
    if enc.canonical_msh2 != msh2:
        text = f"MSH{field_sep}{enc.canonical_msh2}{text[4 + len(msh2) :]}"
    # Fields are split here and each field only when read (Segment.reps): python-hl7's parse
    # built every component and subcomponent of the message up front, half the CPU of
    # mapping an ORU^R01 (0.14 of 0.29 ms a result on the MLLP path), most of it never read.
    counts: dict[str, int] = {}
    segments: list[Segment] = []
    for line in text.strip().split("\r"):
        fields = line.split(enc.field)
        seg_id = fields[0]
        if seg_id == "MSH":
            fields.insert(1, enc.field)  # MSH-1 is the field separator itself
        counts[seg_id] = counts.get(seg_id, 0) + 1
        segments.append(Segment(fields, counts[seg_id], enc, decoded.codec))
    return V2Message(segments, enc, decoded.codec, notes)
