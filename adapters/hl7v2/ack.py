"""Original-mode acknowledgements (HL7 v2.5.1 §2.9.2): ACK with MSA and, on error, ERR.

One ACK per message: AA accepted; AE application error (understood but its content is wrong,
or ingest refused it); AR application reject (not understood: no MSH, wrong type or version,
or the exchange could not store it and the sender should send again). The ACK uses the
message's own delimiters, version and character set, and echoes MSH-10 in MSA-2.

ERR (v2.5 layout): ERR-2 error location (ERL ``SEG^seq^field^rep``), ERR-3 the HL7 table 0357
condition (``101^Required field missing^HL70357``), ERR-4 severity ``E``, ERR-8 a message for a
person naming what was wrong. Receivers on 2.3/2.4 only know ERR-1 (ELD), so it is filled too.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from adapters.hl7v2.escapes import Encoding, escape
from adapters.hl7v2.framing import Framed
from adapters.hl7v2.message import CONDITION_TEXT, V2Message

_LOCATION = re.compile(
    r"^(?P<seg>[A-Z][A-Z0-9]{2})(?:\[(?P<occ>\d+)\])?(?:-(?P<field>\d+)(?:\[(?P<rep>\d+)\])?)?"
)


@dataclass(frozen=True)
class Header:
    """What an ACK copies from the message it answers (from a parse, or peeked from bytes)."""

    enc: Encoding
    sending_app: str = ""
    sending_facility: str = ""
    receiving_app: str = ""
    receiving_facility: str = ""
    event: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"
    charset: str = ""

    @classmethod
    def of(cls, msg: V2Message) -> Header:
        msh = msg.msh
        return cls(
            msg.enc,
            msh.raw_field(3),
            msh.raw_field(4),
            msh.raw_field(5),
            msh.raw_field(6),
            msh.get(9, 2),
            msh.raw_field(10),
            msh.raw_field(11) or "P",
            msh.raw_field(12) or "2.5.1",
            msh.raw_field(18),
        )

    @classmethod
    def peek(cls, framed: Framed | None) -> Header:
        """Best effort from raw bytes when the message would not parse (for an AR)."""
        if framed is None or not framed.has_msh:
            return cls(Encoding())
        msh = framed.segments[0].decode("latin-1")
        sep = msh[3:4] or "|"
        parts = msh.split(sep)
        enc = Encoding(field=sep) if sep != "|" else Encoding()

        def part(i: int) -> str:
            return parts[i - 1] if len(parts) >= i else ""

        version = part(12).split(enc.component)[0] or "2.5.1"
        return cls(
            enc,
            part(3),
            part(4),
            part(5),
            part(6),
            "",
            part(10),
            part(11) or "P",
            version,
            part(18),
        )


def _erl(location: str | None, c: str) -> str:
    m = _LOCATION.match(location or "")
    if not m:
        return ""
    parts = [m["seg"], m["occ"] or "1", m["field"] or "", m["rep"] or ""]
    return c.join(parts).rstrip(c)


def _old_version(version: str) -> bool:
    nums = re.findall(r"\d+", version)
    return len(nums) >= 2 and (int(nums[0]), int(nums[1])) < (2, 5)


def build_ack(
    header: Header,
    code: str,
    *,
    now: datetime,
    reason: str | None = None,
    location: str | None = None,
    condition: str | None = None,
    control_id: str | None = None,
) -> str:
    """The ACK as text, segments ended by CR (encode it with :func:`charset.encode`)."""
    enc = header.enc
    f, c, s = enc.field, enc.component, enc.subcomponent
    esc = lambda text: escape(text, enc)  # noqa: E731
    version = header.version.split(c)[0]
    structure = "" if version in ("2.1", "2.2", "2.3") else "ACK"
    msg_type = c.join(p for p in ("ACK", header.event, structure) if p) if header.event else "ACK"
    stamp = now.strftime("%Y%m%d%H%M%S%z")
    msh = [
        "MSH",
        enc.msh2,
        header.receiving_app or "HIE",
        header.receiving_facility or "HIE",
        header.sending_app,
        header.sending_facility,
        stamp,
        "",
        msg_type,
        control_id or "A" + uuid.uuid4().hex[:19],
        header.processing_id,
        header.version,
    ]
    if header.charset:
        msh += [""] * 5 + [header.charset]
    msa = ["MSA", code, header.control_id]
    if reason:
        msa.append(esc(reason[:80]))
    segments = [f.join(msh), f.join(msa)]
    if code != "AA" and reason:
        cond = condition or "207"
        cwe = c.join((cond, CONDITION_TEXT.get(cond, "Application error"), "HL70357"))
        eld = ""
        if _old_version(version):
            m = _LOCATION.match(location or "")
            eld_code = s.join((cond, CONDITION_TEXT.get(cond, ""), "HL70357"))
            if m:
                eld = c.join([m["seg"], m["occ"] or "1", m["field"] or "", eld_code])
            else:
                eld = c.join(["", "", "", eld_code])
        err = ["ERR", eld, _erl(location, c), cwe, "E", "", "", "", esc(reason)]
        segments.append(f.join(err))
    return "\r".join(segments) + "\r"
