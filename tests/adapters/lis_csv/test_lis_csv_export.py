"""Reading LIS exports: encodings, BOMs, line ends, quoting, and rows that cannot be read."""

from __future__ import annotations

import pytest

from adapters.lis_csv.export import read_export

COLUMNS = {"order_number": "申请单号", "test_code": "项目代码", "value": "结果"}
HEADER = "申请单号,姓名,项目代码,结果"


def read(data: bytes, encoding: str = "utf-8"):  # type: ignore[no-untyped-def]
    return read_export(data, encoding=encoding, delimiter=",", columns=COLUMNS, key="f.csv")


@pytest.mark.parametrize(
    ("encoding", "prefix", "newline"),
    [
        ("utf-8", b"", "\n"),
        ("utf-8", b"\xef\xbb\xbf", "\r\n"),  # Excel's "CSV UTF-8" writes a BOM
        ("gb18030", b"", "\r\n"),
        ("gb18030", b"\x84\x31\x95\x33", "\n"),  # GB18030's own BOM
    ],
)
def test_encodings_boms_and_line_ends(encoding: str, prefix: bytes, newline: str) -> None:
    text = newline.join([HEADER, "A1,李娜,K,4.12", "A1,李娜,NA,139.6"]) + newline
    export = read(prefix + text.encode(encoding), encoding)
    assert export.dead_letters == []
    assert [(r.line, dict(r.values)) for r in export.rows] == [
        (2, {"order_number": "A1", "test_code": "K", "value": "4.12"}),
        (3, {"order_number": "A1", "test_code": "NA", "value": "139.6"}),
    ]
    assert export.rows[0].raw == f"A1,李娜,K,4.12{newline}".encode(encoding)
    assert export.header_raw == f"{HEADER}{newline}".encode(encoding)


def test_quoted_cells_with_commas_and_newlines_keep_their_line_numbers() -> None:
    data = f'{HEADER}\nA1,"李,娜",K,"4.12"\nA1,"王\n芳",NA,139\n\nA2,张伟,CL,101\n'.encode()
    export = read(data)
    assert [r.line for r in export.rows] == [2, 3, 6]
    assert export.rows[1].raw == 'A1,"王\n芳",NA,139\n'.encode()
    assert export.rows[2].values["test_code"] == "CL"


def test_undecodable_line_is_one_dead_letter_and_the_rest_lands() -> None:
    good = [HEADER, "A1,李娜,K,4.12"]
    bad = "A1,王芳,NA,139".encode("gb18030")  # GB18030 bytes inside a UTF-8 export
    data = ("\n".join(good) + "\n").encode() + bad + b"\nA1,x,CL,101\n"
    export = read(data)
    assert [r.line for r in export.rows] == [2, 4]
    (dead,) = export.dead_letters
    assert dead.key == "f.csv:row 3" and dead.location == "row 3"
    assert dead.reason.startswith("row 3: not valid utf-8 at byte 3")
    assert dead.raw == bad + b"\n"


def test_wrong_cell_count_is_a_dead_letter() -> None:
    export = read(f"{HEADER}\nA1,李娜,K\nA1,李娜,NA,139\n".encode())
    assert [r.line for r in export.rows] == [3]
    assert export.dead_letters[0].reason == "row 2: 3 cells, the header has 4"


def test_missing_configured_column_dead_letters_the_file() -> None:
    data = "申请单号,姓名,项目,结果\nA1,李娜,K,4.12\n".encode()
    export = read(data)
    assert export.rows == []
    (dead,) = export.dead_letters
    assert dead.key == "f.csv" and dead.raw == data
    assert "header lacks the configured column(s) test_code='项目代码'" in dead.reason


def test_empty_file() -> None:
    export = read(b"")
    assert export.rows == [] and export.dead_letters == []
