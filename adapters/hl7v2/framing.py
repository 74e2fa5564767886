"""Split a payload of HL7 v2 bytes into messages, whatever the sender did to it.

Real feeds deviate from HL7 v2.5.1 §2.7 (segments end with CR) and the batch protocol
(§2.10.3, FHS/BHS … BTS/FTS) in ways seen in the wild and in ``reference-data/hl7v2``:

* segment terminators CR, LF or CRLF, mixed within one file, or a final LF after CR;
* a UTF-8 byte-order mark before the first MSH;
* stray MLLP block bytes (0x0B start, 0x1C end) left in files copied from a listener's log;
* FHS/BHS/BTS/FTS envelopes around several messages (or around none);
* empty segments (a line of bare field separators) and a line break inside a field.

Splitting works on bytes, before decoding, because each message may declare its own
character set in MSH-18; CR (0x0D), LF (0x0A), 0x0B and 0x1C never occur inside a UTF-8 or
GB 18030 multi-byte sequence, so cutting on them is safe for both. Each message keeps the
exact slice of the payload it came from (``raw``) for dead letters and replay, and a cleaned
form (``body``: segments joined with CR) for parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BOM = b"\xef\xbb\xbf"
MLLP_BYTES = b"\x0b\x1c"
ENVELOPE = frozenset({b"FHS", b"FTS", b"BHS", b"BTS"})
_LINE = re.compile(rb"[^\r\n]+")
_SEGMENT_ID = re.compile(rb"[A-Z][A-Z0-9]{2}")
_STRIP = b" \t\v\f"


@dataclass
class Framed:
    """One message cut out of a payload.

    ``index`` counts messages in the payload from 1; ``notes`` says what was repaired.
    """

    index: int
    raw: bytes
    segments: list[bytes] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        """Segments joined with CR, the form HL7 v2.5.1 §2.7 requires (and message.parse splits)."""
        return b"\r".join(self.segments) + b"\r"

    @property
    def has_msh(self) -> bool:
        return bool(self.segments) and self.segments[0][:3] == b"MSH"


def _clean(line: bytes) -> bytes:
    if MLLP_BYTES[0:1] in line or MLLP_BYTES[1:2] in line:
        line = line.replace(b"\x0b", b"").replace(b"\x1c", b"")
    if line.startswith(BOM):
        line = line[len(BOM) :]
    return line.strip(_STRIP)


def _trim(line: bytes) -> tuple[int, int]:
    """How many bytes of MLLP framing, BOM and blanks a line has before and after its text."""
    lead = 0
    while True:
        if line.startswith(BOM, lead):
            lead += len(BOM)
        elif lead < len(line) and line[lead] in b"\x0b\x1c \t\v\f":
            lead += 1
        else:
            break
    tail = len(line)
    while tail > lead and line[tail - 1] in b"\x0b\x1c \t\v\f":
        tail -= 1
    return lead, len(line) - tail


def _is_segment_start(line: bytes, sep: bytes) -> bool:
    if not _SEGMENT_ID.match(line):
        return False
    return len(line) == 3 or line[3:4] == sep or line[:3] in (b"MSH", b"FHS", b"BHS")


def split_messages(payload: bytes) -> list[Framed]:
    """All messages in ``payload``, in order. Envelope segments are dropped.

    Segments found before any MSH (or after an envelope segment ends a message) are kept as
    a message of their own without MSH, so the caller can dead-letter them with their bytes
    rather than lose them silently.
    """
    out: list[Framed] = []
    current: Framed | None = None
    start = end = 0
    sep = b"|"

    def close() -> None:
        nonlocal current
        if current is not None:
            current.raw = payload[start:end]
            out.append(current)
            current = None

    for m in _LINE.finditer(payload):
        line = _clean(m.group())
        if not line:
            continue
        lead, trail = _trim(m.group())
        line_start, line_end = m.start() + lead, m.end() - trail
        head = line[:3]
        if head == b"MSH" or head in ENVELOPE:
            close()
            if head in ENVELOPE:
                continue
            sep = line[3:4] or b"|"
            current = Framed(index=len(out) + 1, raw=b"", segments=[line])
            start, end = line_start, line_end
            continue
        if _is_segment_start(line, sep):
            if current is None:
                current = Framed(index=len(out) + 1, raw=b"")
                start = line_start
            current.segments.append(line)
            end = line_end
        elif line[:1] == sep:
            # An empty segment (no segment ID): nothing to keep.
            if current is not None:
                current.notes.append(f"dropped an empty segment {line[:20]!r}")
                end = line_end
        elif current is not None and current.segments:
            # A line break inside a field: the line continues the previous segment.
            current.segments[-1] += line
            current.notes.append(f"joined a line break inside segment {current.segments[-1][:3]!r}")
            end = line_end
        else:
            current = Framed(index=len(out) + 1, raw=b"", segments=[line])
            start, end = line_start, line_end
    close()
    return out
