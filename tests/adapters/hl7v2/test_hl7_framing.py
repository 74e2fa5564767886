"""Splitting payloads into messages, MSH-18 decoding, delimiters and escape sequences."""

from __future__ import annotations

import pytest

from adapters.hl7v2.charset import codec_for, decode
from adapters.hl7v2.escapes import Encoding, encoding_from_msh2, escape, unescape
from adapters.hl7v2.framing import split_messages
from adapters.hl7v2.message import MessageError, parse

MSH = b"MSH|^~\\&|LIS|H1|HIE|X|20261115083000||ORU^R01|C1|P|2.5.1"
PID = b"PID|1||SZ1^^^H1^MR||ZHANG^WEI||19800315|M"
OBR = b"OBR|1||F1|XCG^CBC^L|||20261115081500"


def msg(control: bytes = b"C1", *extra: bytes, sep: bytes = b"\r") -> bytes:
    return sep.join([MSH.replace(b"C1", control), PID, OBR, *extra]) + sep


@pytest.mark.parametrize("sep", [b"\r", b"\n", b"\r\n"])
def test_each_separator_gives_the_same_segments(sep: bytes) -> None:
    (one,) = split_messages(msg(sep=sep))
    assert one.segments == [MSH, PID, OBR]
    assert one.body == b"\r".join([MSH, PID, OBR]) + b"\r"


def test_many_messages_bom_and_stray_mllp_bytes() -> None:
    payload = b"\xef\xbb\xbf" + msg(b"C1") + b"\x1c\r\x0b" + msg(b"C2", sep=b"\n") + b"\x0b \n"
    got = split_messages(payload)
    assert [m.index for m in got] == [1, 2]
    assert [parse(m).control_id for m in got] == ["C1", "C2"]
    # raw is the exact slice of the payload, for dead letters and replay
    assert got[1].raw.startswith(b"MSH|") and got[1].raw.endswith(b"20261115081500")
    assert got[1].raw in payload and b"\n" in got[1].raw  # the sender's own separators


def test_batch_envelopes_are_dropped_and_empty_batches_give_nothing() -> None:
    payload = (
        b"\r".join(
            [b"FHS|^~\\&|LIS", b"BHS|^~\\&|LIS", msg(b"C1").rstrip(), msg(b"C2").rstrip(), b"BTS|2"]
        )
        + b"\rFTS|1\r"
    )
    assert [parse(m).control_id for m in split_messages(payload)] == ["C1", "C2"]
    assert split_messages(b"FHS|^~\\&|X\rBHS|^~\\&|X\rBTS|0\rFTS|1\n") == []
    assert split_messages(b"") == []


def test_line_break_inside_a_field_is_joined_and_empty_segments_dropped() -> None:
    payload = MSH + b"\r" + b"PID|1||SZ1^^^H1^MR||ZHANG^WEI||198003\n15|M\r||||\r" + OBR + b"\r"
    (one,) = split_messages(payload)
    assert one.segments[1] == PID
    assert len(one.segments) == 3
    assert any("empty segment" in n for n in one.notes)


def test_segments_before_any_msh_become_their_own_message() -> None:
    got = split_messages(PID + b"\r" + msg(b"C9"))
    assert not got[0].has_msh and got[1].has_msh
    with pytest.raises(MessageError) as err:
        parse(got[0])
    assert err.value.reject and "no MSH" in err.value.reason


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("UNICODE UTF-8", "utf-8"),
        ("GB 18030-2000", "gb18030"),
        ("GB18030", "gb18030"),
        ("GB 2312", "gb18030"),
        ("GBK", "gb18030"),
        ("8859/1", "latin-1"),
        ("ASCII", "ascii"),
        ("nonsense", None),
        ("", None),
    ],
)
def test_msh18_labels(label: str, codec: str | None) -> None:
    assert codec_for(label) == codec


def test_decoding_honours_msh18_and_says_when_it_falls_back() -> None:
    text = "张伟 µmol"
    assert decode(text.encode("gb18030"), "GB18030").text == text
    assert decode(text.encode("utf-8"), "UNICODE UTF-8").text == text
    assert decode(text.encode("gb18030"), "GB18030").note is None
    wrong = decode(text.encode("gb18030"), "UNICODE UTF-8")
    assert wrong.text == text and wrong.codec == "gb18030"
    assert "MSH-18 says 'UNICODE UTF-8'" in (wrong.note or "")
    unknown = decode(b"abc", "KLINGON")
    assert unknown.text == "abc" and "not a known character set" in (unknown.note or "")
    assert decode(text.encode("gb18030"), "", default="gb18030").note is None
    assert "MSH-18 is empty" in (decode("张".encode("gb18030"), "").note or "")


def test_gb18030_message_parses_with_chinese_text() -> None:
    raw = "\n".join(
        [
            "MSH|^~\\&|NSDH-LIS|NSDH|HIE|X|202611201030||ORU^R01|N1|P|2.3|||AL|NE||GB18030",
            "PID|1||NS3001^^^NSDH^PI||李^娜||19920708|F",
        ]
    ).encode("gb18030")
    m = parse(split_messages(raw)[0])
    assert m.codec == "gb18030" and m.first("PID") is not None
    pid = m.first("PID")
    assert pid is not None and pid.get(5, 1) + pid.get(5, 2) == "李娜"


@pytest.mark.parametrize(
    ("msh2", "expected"),
    [
        ("^~\\&", ("^", "~", "\\", "&")),
        ("^~\\&#", ("^", "~", "\\", "&")),  # v2.7 truncation character ignored
        ("^~\\\\&", ("^", "~", "\\", "&")),  # doubled escape character (LinuxForHealth sample)
        ("^~&", ("^", "~", "\x02", "&")),  # no escape character (HL7 ELR realm samples)
        ("^\\&", ("^", "\x01", "\\", "&")),  # no repetition character (ruby-hl7 adt_a01)
    ],
)
def test_encoding_characters(msh2: str, expected: tuple[str, str, str, str]) -> None:
    enc = encoding_from_msh2("|", msh2)
    assert (enc.component, enc.repetition, enc.escape, enc.subcomponent) == expected
    assert enc.msh2 == msh2


def test_unescape_every_sequence_hl7_defines() -> None:
    enc = Encoding()
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f", enc) == "a|b^c&d~e\\f"
    assert unescape(r"line1\.br\line2\.sp2\x", enc) == "line1\nline2\n\nx"
    assert unescape(r"\H\bold\N\ \Zlocal\\C2842\z", enc) == "bold z"
    assert unescape(r"\XE5BCA0\\XE4BC9F\ ", enc, "utf-8") == "张伟 "
    assert unescape("\\XD5C5\\", enc, "gb18030") == "张"
    assert unescape("no escapes", enc) == "no escapes"
    assert unescape(r"open \F", enc) == r"open \F"  # unterminated: kept as sent


def test_escape_round_trips_and_uses_the_message_delimiters() -> None:
    odd = Encoding("$", "%", "~", "\\", "&", "%~\\&")
    text = "a$b%c&d~e\\f\ng"
    assert unescape(escape(text, odd), odd) == "a$b%c&d~e\\f\ng"
    assert "$" not in escape(text, odd)


def test_non_standard_field_and_component_separators() -> None:
    raw = b"MSH$%~\\&$LIS$H1$HIE$X$20261115$$ORU%R01$C7$P$2.5.1\rPID$1$$SZ1%%%H1%MR$$ZHANG%WEI\r"
    m = parse(split_messages(raw)[0])
    assert m.message_type == ("ORU", "R01") and m.control_id == "C7"
    pid = m.first("PID")
    assert pid is not None and (pid.get(3, 1), pid.get(3, 5), pid.get(5, 2)) == ("SZ1", "MR", "WEI")


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"MSH|", "too short"),
        (b"MSH||LIS|H1\r", "MSH-2 (encoding characters) is empty"),
    ],
)
def test_unparseable_headers_are_rejected(payload: bytes, why: str) -> None:
    with pytest.raises(MessageError) as err:
        parse(split_messages(payload)[0])
    assert err.value.reject and why in err.value.reason
