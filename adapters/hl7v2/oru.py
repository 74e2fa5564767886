"""ORU^R01 → one :class:`adapters.base.Unit` of FHIR R4 resources (pure: no I/O, no clock).

Message structure (HL7 v2.5.1 §7.3.1, ORU^R01; 2.3-2.6 share it for what hie reads)::

    MSH  [PID [PD1] [NTE…] [PV1]]  { [ORC] OBR [NTE…] [TQ1…] {[OBX [NTE…]]} [SPM [OBX…]] }

Each PID opens a patient group (an ORU may carry several patients); each OBR opens an order
group, which becomes a DiagnosticReport (+ a Specimen when SPM-4 or OBR-15 names one); each
OBX becomes an Observation of that report. Entries reference each other by ``urn:uuid:``
full URLs derived from the hospital, the message control id and the position in the message,
so mapping the same bytes twice gives identical output (golden tests, idempotent replay).

Identifiers are what ingest upserts on: DiagnosticReport ``naming.filler_order(hospital)`` |
OBR-3 (else OBR-2, else ORC-3); Observation ``naming.result_id(hospital)`` |
``{filler}.{OBX-3}[.{OBX-4}]`` (an identifier repeated within one message, as newborn
screening does for multi-valued answers, gets ``#2``, ``#3`` … in order); Specimen: the filler
order, as ``accessionIdentifier`` (FHIR R4: "the identifier assigned by the lab when
accessioning specimen(s)") and as ``identifier``, which ingest upserts on.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from adapters.base import Entry, Unit
from adapters.hl7v2.coding import Context, concept, fhir_code, system_uri
from adapters.hl7v2.framing import Framed
from adapters.hl7v2.message import (
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_EVENT,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_VERSION,
    MessageError,
    Segment,
    V2Message,
    parse,
)
from adapters.hl7v2.observation import Order, observation
from adapters.hl7v2.patient import patient
from adapters.hl7v2.timestamp import to_datetime, to_instant
from hie import naming

JSON = dict[str, Any]

CONTENT_TYPE = "x-application/hl7-v2+er7"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_NAMESPACE = uuid.UUID("5b0c7d1e-6f0a-4f43-9a57-3f1d8a0c2b11")  # hie's HL7 v2 entries
_NAMESPACE_BYTES = _NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))`` without the UUID object (RFC 4122 §4.3: SHA-1 of
    namespace and name, version 5, variant 10); a message makes one per entry."""
    sha1 = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False)
    digest = bytearray(sha1.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# HL7 table 0123 (OBR-25) → FHIR DiagnosticReportStatus.
OBR_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "R": "partial",
    "C": "corrected",
    "F": "final",
    "X": "cancelled",
    "Y": "unknown",
    "Z": "unknown",
}
_REPORT_TO_OBS = {
    "registered": "registered",
    "partial": "preliminary",
    "preliminary": "preliminary",
    "corrected": "corrected",
    "final": "final",
    "cancelled": "cancelled",
}


@dataclass
class _Group:
    """One OBR with the segments that belong to it."""

    obr: Segment
    orc: Segment | None
    patient_ref: str
    obx: list[tuple[Segment, list[str]]] = field(default_factory=list)
    spm: list[Segment] = field(default_factory=list)


def _version_ok(version: str) -> bool:
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return False
    return (major, minor) >= (2, 3) and major == 2


def check_header(msg: V2Message) -> None:
    """ORU^R01, version 2.3 or later; else an AR-worthy MessageError."""
    kind, event = msg.message_type
    if not kind:
        raise MessageError(
            "MSH-9 (message type) is empty",
            location="MSH-9",
            condition=REQUIRED_FIELD_MISSING,
            reject=True,
        )
    if kind != "ORU":
        raise MessageError(
            f"message type {kind}^{event} is not a lab result (only ORU^R01 is accepted)",
            location="MSH-9",
            condition=UNSUPPORTED_MESSAGE_TYPE,
            reject=True,
        )
    if event not in ("R01", ""):
        raise MessageError(
            f"ORU event {event} is not supported (only R01, unsolicited observation results)",
            location="MSH-9",
            condition=UNSUPPORTED_EVENT,
            reject=True,
        )
    version = msg.version
    if not version:
        raise MessageError(
            "MSH-12 (version) is empty",
            location="MSH-12",
            condition=REQUIRED_FIELD_MISSING,
            reject=True,
        )
    if not _version_ok(version):
        raise MessageError(
            f"HL7 version {version} is not supported (2.3 to 2.6 and later 2.x)",
            location="MSH-12",
            condition=UNSUPPORTED_VERSION,
            reject=True,
        )


def _groups(msg: V2Message) -> list[_Group]:
    groups: list[_Group] = []
    patient_ref: str | None = None
    orc: Segment | None = None
    last_notes: list[str] | None = None
    for seg in msg.segments[1:]:
        if seg.id == "PID":
            patient_ref = f"PID{seg.occurrence}"
            last_notes, orc = None, None
        elif seg.id == "ORC":
            orc = seg
        elif seg.id == "OBR":
            if patient_ref is None:
                raise MessageError(
                    "OBR before any PID: results must belong to a patient",
                    location=seg.loc(),
                    condition=SEGMENT_SEQUENCE,
                )
            groups.append(_Group(seg, orc, patient_ref))
            orc, last_notes = None, None
        elif seg.id == "OBX":
            if not groups:
                # Patient-level OBX (v2.7+ PATIENT_OBSERVATION, ELR's age/pregnancy answers):
                # facts about the patient, not results of an order. Not indexed.
                msg.notes.append(f"{seg.loc()} before any OBR is not a lab result; left out")
                last_notes = None
                continue
            last_notes = []
            groups[-1].obx.append((seg, last_notes))
        elif seg.id == "SPM" and groups:
            groups[-1].spm.append(seg)
            last_notes = None
        elif seg.id == "NTE" and last_notes is not None:
            text = "\n".join(seg.get(3, rep=r) for r in range(1, len(seg.reps(3)) + 1)).strip()
            if text:
                last_notes.append(text)
    return groups


def _filler(group: _Group) -> str:
    obr = group.obr
    for seg, f in ((obr, 3), (obr, 2), (group.orc, 3), (group.orc, 2)):
        if seg is not None and seg.get(f, 1):
            return seg.get(f, 1)
    raise MessageError(
        "OBR has no filler order number (OBR-3), placer order number (OBR-2) or ORC-3",
        location=obr.loc(3),
        condition=REQUIRED_FIELD_MISSING,
    )


def _specimen(
    group: _Group, ctx: Context, filler: str, patient_ref: str, collected: str | None
) -> JSON | None:
    kind: JSON | None = None
    when = collected
    for spm in group.spm:
        kind = concept(spm.coded(4), ctx)
        if spm.get(17, 1):
            when = to_datetime(spm.get(17, 1), spm.loc(17), ctx.tz)
        if kind:
            break
    if kind is None:
        obr = group.obr
        code, text, system = obr.get(15, 1, 1), obr.get(15, 1, 2), obr.get(15, 1, 3)
        if code and not text and not system and not code.isascii():
            code, text = "", code  # 2.3 senders put the specimen name, e.g. 血清, in OBR-15.1
        if code or text:
            coding: JSON = {}
            if code:
                coding = {
                    "system": system_uri(system or "HL70070", ctx.hospital_id),
                    "code": fhir_code(code),
                }
                if text:
                    coding["display"] = text
            kind = {"coding": [coding]} if coding else {}
            if text:
                kind["text"] = text
    if not kind:
        return None
    accession = {"system": naming.filler_order(ctx.hospital_id), "value": filler}
    spec: JSON = {
        "resourceType": "Specimen",
        "identifier": [dict(accession)],
        "accessionIdentifier": accession,
        "type": kind,
        "subject": {"reference": patient_ref},
    }
    if when:
        spec["collection"] = {"collectedDateTime": when}
    return spec


def _collected(group: _Group, ctx: Context) -> str | None:
    """When the specimen was taken (the clinically relevant time of a lab result).

    OBR-7 (observation date/time, "the specimen collection date/time" for lab, HL7 v2.5.1
    §4.5.3.7), else OBR-8 (its end), SPM-17 (specimen collection date/time), OBR-14 (specimen
    received, deprecated in 2.5).
    """
    obr = group.obr
    candidates = [(obr, 7), (obr, 8)] + [(spm, 17) for spm in group.spm] + [(obr, 14)]
    for seg, f in candidates:
        value = seg.get(f, 1)
        if value:
            return to_datetime(value, seg.loc(f), ctx.tz)
    return None


def _report_status(obr: Segment, obs_statuses: list[str]) -> str:
    code = obr.get(25).upper()
    if code:
        found = OBR_STATUS.get(code)
        if found is None:
            raise MessageError(
                f"result status {code!r} is not in HL7 table 0123",
                location=obr.loc(25),
                condition=TABLE_VALUE_NOT_FOUND,
            )
        return found
    if obs_statuses and all(s in ("final", "corrected", "amended") for s in obs_statuses):
        return "corrected" if "corrected" in obs_statuses else "final"
    if any(s == "preliminary" for s in obs_statuses):
        return "preliminary"
    return "unknown"


def map_oru(msg: V2Message, ctx: Context, raw: bytes = b"", key: str | None = None) -> Unit:
    """Map one parsed ORU^R01 to a Unit; MessageError (a BadMessage) if it cannot be mapped."""
    check_header(msg)
    control = msg.control_id or "sha256:" + hashlib.sha256(raw).hexdigest()[:16]
    unit_key = key or control

    def urn(role: str) -> str:
        return "urn:uuid:" + _uuid5(f"{ctx.hospital_id}|{control}|{role}")

    pids = list(msg.all("PID"))
    if not pids:
        raise MessageError(
            "no PID segment: results must belong to a patient",
            location="PID",
            condition=SEGMENT_SEQUENCE,
        )
    groups = _groups(msg)
    if not groups:
        raise MessageError(
            "no OBR segment: the message carries no order to report on",
            location="OBR",
            condition=SEGMENT_SEQUENCE,
        )
    entries: list[Entry] = []
    for pid in pids:
        entries.append(Entry(patient(pid, ctx), urn(f"PID{pid.occurrence}")))
    seen: dict[str, int] = {}
    for group in groups:
        entries.extend(_report(group, ctx, urn, seen))
    return Unit(
        key=unit_key, entries=tuple(entries), raw=raw, content_type=CONTENT_TYPE, trusted=True
    )


def _report(group: _Group, ctx: Context, urn: Any, seen: dict[str, int]) -> list[Entry]:
    obr = group.obr
    n = obr.occurrence
    filler = _filler(group)
    patient_ref = urn(group.patient_ref)
    code = concept(obr.coded(4), ctx, map_local=True, location=obr.loc(4))
    if code is None:
        raise MessageError(
            "OBR-4 (universal service identifier) is empty: the report has no test code",
            location=obr.loc(4),
            condition=REQUIRED_FIELD_MISSING,
        )
    if not code.get("coding"):
        raise MessageError(
            f"OBR-4 names the test only as text ({code.get('text')!r}); a code is required",
            location=obr.loc(4),
            condition=REQUIRED_FIELD_MISSING,
        )
    collected = _collected(group, ctx)
    if collected is None:
        first = next((o.get(14, 1) for o, _ in group.obx if o.get(14, 1)), "")
        if not first:
            raise MessageError(
                "no observation time: OBR-7, OBR-8, SPM-17, OBR-14 and every OBX-14 are empty",
                location=obr.loc(7),
                condition=REQUIRED_FIELD_MISSING,
            )
        collected = to_datetime(first, "OBX-14", ctx.tz)
    issued = to_instant(obr.get(22, 1), obr.loc(22), ctx.tz) if obr.get(22, 1) else None
    out: list[Entry] = []
    specimen = _specimen(group, ctx, filler, patient_ref, collected)
    specimen_ref = urn(f"SPM{n}") if specimen else None
    if specimen is not None:
        out.append(Entry(specimen, specimen_ref))
    obr_code = obr.get(25).upper()
    default = _REPORT_TO_OBS.get(OBR_STATUS.get(obr_code, ""))
    order = Order(filler, patient_ref, collected, issued, specimen_ref, default)
    results: list[JSON] = []
    statuses: list[str] = []
    for obx, notes in group.obx:
        obs = observation(obx, ctx, order, notes)
        ident = obs["identifier"][0]
        count = seen.get(ident["value"], 0) + 1
        seen[ident["value"]] = count
        if count > 1:
            # The same OBX-3 (and OBX-4) again, as newborn-screening messages do for
            # multi-valued answers: number them in order so each keeps its own identity.
            ident["value"] += f"#{count}"
        full_url = urn(f"OBX{obx.occurrence}")
        out.append(Entry(obs, full_url))
        results.append({"reference": full_url})
        statuses.append(obs["status"])
    report: JSON = {
        "resourceType": "DiagnosticReport",
        "identifier": [
            {
                "type": {"coding": [{"system": V2_0203, "code": "FILL"}]},
                "system": naming.filler_order(ctx.hospital_id),
                "value": filler,
            }
        ],
        "status": _report_status(obr, statuses),
        "category": [{"coding": [{"system": V2_0074, "code": "LAB", "display": "Laboratory"}]}],
        "code": code,
        "subject": {"reference": patient_ref},
    }
    if collected:
        report["effectiveDateTime"] = collected
    if issued:
        report["issued"] = issued
    report["performer"] = [{"reference": f"Organization/{ctx.hospital_id}"}]
    if specimen_ref:
        report["specimen"] = [{"reference": specimen_ref}]
    if results:
        report["result"] = results
    out.append(Entry(report, urn(f"OBR{n}")))
    return out


def map_framed(
    framed: Framed, ctx: Context, default_charset: str = "utf-8", key: str | None = None
) -> Unit:
    """Parse and map one framed message (raises MessageError for anything unmappable)."""
    msg = parse(framed, default_charset)
    return map_oru(msg, ctx, framed.raw, key)
