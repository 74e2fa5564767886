"""The hospitals configuration: the demo file loads; every kind of mistake is named precisely."""

from __future__ import annotations

import textwrap
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from hie.hospitals import (
    ConfigError,
    FhirRestAdapter,
    HospitalsConfig,
    LisCsvAdapter,
    MllpAdapter,
    load_hospitals,
)

DEMO = Path(__file__).resolve().parents[2] / "fixtures" / "hospitals.toml"

HEAD = """\
[exchange]
province_prefix = "粤"

[[hospital]]
id = "szph"
name_zh = "深圳市人民医院"
name_en = "Shenzhen People's Hospital"
level = "3A"
"""


def write(tmp_path: Path, body: str, head: str = HEAD) -> Path:
    path = tmp_path / "hospitals.toml"
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


def error_of(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_hospitals(path, env or {})
    return caught.value


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, start=1) if needle in text)


# -- the demo file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> HospitalsConfig:
    return load_hospitals(DEMO, {})


def test_demo_has_the_three_hospitals(demo: HospitalsConfig) -> None:
    assert demo.exchange.province_prefix == "粤"
    assert demo.exchange.tz == ZoneInfo("Asia/Shanghai")
    got = [(h.id, h.name_zh, h.name_en, h.level) for h in demo.hospitals]
    assert got == [
        ("szph", "深圳市人民医院", "Shenzhen People's Hospital", "3A"),
        ("pkuszh", "北京大学深圳医院", "Peking University Shenzhen Hospital", "3A"),
        ("nsdh", "南山区人民医院", "Nanshan District People's Hospital", "3B"),
    ]


@pytest.mark.parametrize("hospital", ["szph", "pkuszh", "nsdh"])
@pytest.mark.parametrize(
    "discipline",
    ["chemistry", "haematology", "coagulation", "immunology", "urinalysis", "imaging"],
)
@pytest.mark.parametrize("day", [date(2025, 6, 1), date(2026, 11, 23)])
def test_demo_disciplines_held_both_years(
    demo: HospitalsConfig, hospital: str, discipline: str, day: date
) -> None:
    assert demo.hospital(hospital).holds(f"discipline:{discipline}", day) is not None


def test_demo_nsdh_lacks_hba1c_in_2026_only(demo: HospitalsConfig) -> None:
    nsdh = demo.hospital("nsdh")
    last_2025 = nsdh.holds("item:4548-4", date(2025, 12, 31))
    assert last_2025 is not None and last_2025.valid_to == date(2025, 12, 31)
    assert nsdh.holds("item:4548-4", date(2026, 1, 1)) is None
    assert nsdh.holds("item:4548-4", date(2026, 11, 23)) is None
    for other in ("szph", "pkuszh"):
        assert demo.hospital(other).holds("item:4548-4", date(2026, 11, 23)) is not None


def test_demo_adapters_and_paths_relative_to_the_file(demo: HospitalsConfig) -> None:
    fixtures = DEMO.parent
    kinds = {(h.id, a.name): (a.kind, a.enabled) for h in demo.hospitals for a in h.adapters}
    assert kinds[("szph", "lis-folder")] == ("hl7v2-folder", True)
    assert kinds[("szph", "lis-mllp")] == ("hl7v2-mllp", True)
    assert kinds[("pkuszh", "fhir")] == ("fhir-rest", False)
    assert kinds[("nsdh", "lis-csv")] == ("lis-csv", True)
    for h in ("szph", "pkuszh", "nsdh"):
        assert kinds[(h, "pacs-folder")] == ("dicom-folder", True)
        assert kinds[(h, "pacs")] == ("dicomweb", False)
        assert demo.hospital(h).adapter("pacs-folder").path == fixtures / "dicom" / h
        assert demo.hospital(h).adapter("lis-folder").path == fixtures / "hl7v2" / h
    csv = demo.hospital("nsdh").adapter("lis-csv")
    assert isinstance(csv, LisCsvAdapter)
    assert csv.path == fixtures / "csv" / "nsdh" and csv.encoding == "gb18030"
    assert csv.columns.order_number == "申请单号" and csv.columns.national_id == "身份证号"


def test_demo_mllp_listener_and_pull_list(demo: HospitalsConfig) -> None:
    listeners = demo.mllp_listeners()
    assert list(listeners) == [("127.0.0.1", 2575)]
    ((hospital, mllp),) = listeners[("127.0.0.1", 2575)]
    assert hospital.id == "szph" and mllp.facility == {"SZPH": "szph"}
    pulls = [(h.id, a.name) for h, a in demo.pull_adapters()]
    assert ("szph", "lis-mllp") not in pulls  # a push listener is not scheduled
    assert ("pkuszh", "fhir") not in pulls  # disabled
    assert ("nsdh", "lis-csv") in pulls and ("szph", "lis-folder") in pulls


def test_disabled_adapters_need_no_secret_enabled_ones_get_it(tmp_path: Path) -> None:
    text = DEMO.read_text(encoding="utf-8")
    text = text.replace(
        'name = "fhir"\nkind = "fhir-rest"\nenabled = false', 'name = "fhir"\nkind = "fhir-rest"'
    )
    path = tmp_path / "hospitals.toml"
    path.write_text(text, encoding="utf-8")
    err = error_of(path)
    assert "PKUSZH_FHIR_TOKEN" in str(err) and "hospital[1].adapter[1].auth.token_env" in str(err)
    config = load_hospitals(path, {"PKUSZH_FHIR_TOKEN": "t0ken"})
    fhir = config.hospital("pkuszh").adapter("fhir")
    assert isinstance(fhir, FhirRestAdapter) and fhir.auth is not None
    assert fhir.auth.secret == "t0ken"
    assert "t0ken" not in repr(config)  # a resolved secret never shows in logs of the config


# -- defaults -------------------------------------------------------------------------------


def test_mllp_defaults_to_localhost_2575(tmp_path: Path) -> None:
    path = write(tmp_path, '[[hospital.adapter]]\nname = "mllp"\nkind = "hl7v2-mllp"\n')
    config = load_hospitals(path, {})
    mllp = config.hospital("szph").adapter("mllp")
    assert isinstance(mllp, MllpAdapter)
    assert (mllp.host, mllp.port, mllp.facility) == ("127.0.0.1", 2575, {})
    assert config.exchange.timezone == "Asia/Shanghai"


def test_schedules_become_triggers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[hospital.adapter]]
        name = "a"
        kind = "hl7v2-folder"
        path = "in"
        schedule = { interval = "1h30m" }

        [[hospital.adapter]]
        name = "b"
        kind = "dicom-folder"
        path = "/abs/dicom"
        schedule = { cron = "*/5 * * * *" }
        """,
    )
    config = load_hospitals(path, {})
    a, b = config.hospital("szph").adapters
    tz = config.exchange.tz
    assert a.schedule is not None and a.schedule.every == timedelta(hours=1, minutes=30)
    assert isinstance(a.schedule.trigger(tz), IntervalTrigger)
    assert b.schedule is not None
    cron = b.schedule.trigger(tz)
    assert isinstance(cron, CronTrigger) and cron.timezone == tz
    assert a.path == tmp_path / "in"
    assert b.path == Path("/abs/dicom")


# -- errors name the file, the key path and the line -----------------------------------------


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[[hospital.adapter]]\nname = "x"\nkind = hl7v2-folder\n')
    err = error_of(path)
    assert str(path) in str(err)
    assert f"line {line_of(path, 'kind = hl7v2')}, column 8" in str(err)
    assert "invalid TOML" in str(err)


def test_bad_cron_names_key_path_and_line(tmp_path: Path) -> None:
    second = HEAD[HEAD.index("[[hospital]]") :].replace('"szph"', '"pkuszh"')
    two = second + textwrap.dedent(
        """
        [[hospital.adapter]]
        name = "lis"
        kind = "hl7v2-folder"
        path = "in"
        schedule = { cron = "*/5 * * *" }
        """
    )
    path = write(tmp_path, two, head=HEAD + "\n")
    err = error_of(path)
    assert f"line {line_of(path, 'cron = ')}: hospital[1].adapter[0].schedule.cron: " in str(err)
    assert "Wrong number of fields" in str(err)
    assert err.key == "hospital[1].adapter[0].schedule.cron" and err.file == path


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ('{ interval = "15" }', "not an interval"),
        ('{ interval = "0m" }', "not an interval"),
        ('{ interval = "5m", cron = "* * * * *" }', "exactly one"),
        ("{ }", "exactly one"),
        ('{ cron = "61 * * * *" }', "higher than the maximum"),
    ],
)
def test_bad_schedules(tmp_path: Path, schedule: str, message: str) -> None:
    path = write(
        tmp_path,
        f'[[hospital.adapter]]\nname = "a"\nkind = "hl7v2-folder"\npath = "x"\n'
        f"schedule = {schedule}\n",
    )
    err = str(error_of(path))
    assert "hospital[0].adapter[0].schedule" in err and message in err


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[hospital.adapter]]
        name = "pacs"
        kind = "dicomweb"
        base_url = "http://127.0.0.1:18042/dicom-web"
        page_sise = 50
        """,
    )
    err = str(error_of(path))
    line = line_of(path, "page_sise")
    assert (
        f"line {line}: hospital[0].adapter[0].page_sise: unknown key (did you mean 'page_size'?)"
        in err
    )


def test_unknown_top_level_and_hospital_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'nmae_en = "x"\n')
    err = str(error_of(path))
    assert "hospital[0].nmae_en: unknown key (did you mean 'name_en'?)" in err


def test_literal_password_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[hospital.adapter]]
        name = "pacs"
        kind = "dicomweb"
        base_url = "http://127.0.0.1:18042/dicom-web"
        auth = { username = "hie", password = "hie-secret" }
        """,
    )
    err = str(error_of(path))
    assert "hospital[0].adapter[0].auth" in err
    assert "literal 'password' is not allowed" in err and "password_env" in err
    assert "hie-secret" not in err


def test_missing_secret_names_the_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[hospital.adapter]]
        name = "pacs"
        kind = "dicomweb"
        base_url = "http://127.0.0.1:18042/dicom-web"
        auth = { username = "hie", password_env = "SZPH_PACS_PASSWORD" }
        """,
    )
    err = error_of(path, {"OTHER": "x"})
    assert "environment variable SZPH_PACS_PASSWORD is not set" in str(err)
    assert err.key == "hospital[0].adapter[0].auth.password_env"
    config = load_hospitals(path, {"SZPH_PACS_PASSWORD": "s3cret"})
    auth = config.hospital("szph").adapter("pacs").auth
    assert auth.secret == "s3cret" and auth.username == "hie"


def test_unknown_kind_names_the_kind_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[hospital.adapter]]\nname = "a"\nkind = "hl7v3"\n')
    err = str(error_of(path))
    assert f"line {line_of(path, 'hl7v3')}: hospital[0].adapter[0].kind: kind must be one of" in err


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[hospital.adapter]]\nname = "a"\nkind = "lis-csv"\npath = "x"\n')
    err = str(error_of(path))
    assert "hospital[0].adapter[0].columns: required key is missing" in err


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        (
            '[[hospital.credential]]\nscope = "discipline:hematology"\nscheme = "NCCL-EQA"\n'
            "valid_from = 2025-01-01\nvalid_to = 2025-12-31\n",
            "hospital[0].credential[0].scope",
            "unknown discipline 'hematology'",
        ),
        (
            '[[hospital.credential]]\nscope = "item:4548-4"\nscheme = "NCCL-EQA"\n'
            "valid_from = 2026-01-01\nvalid_to = 2025-12-31\n",
            "hospital[0].credential[0]",
            "is before valid_from",
        ),
        (
            '[[hospital.credential]]\nscope = "item:4548-4"\nscheme = "CAP"\n'
            "valid_from = 2026-01-01\nvalid_to = 2026-12-31\n",
            "hospital[0].credential[0].scheme",
            "'NCCL-EQA' or 'GD-EQA'",
        ),
        (
            '[[hospital.adapter]]\nname = "a"\nkind = "hl7v2-mllp"\n'
            'schedule = { interval = "1m" }\n',
            "hospital[0].adapter[0]",
            "takes no schedule",
        ),
        (
            '[[hospital.adapter]]\nname = "a"\nkind = "hl7v2-mllp"\nfacility = { X = "nowhere" }\n',
            "facility",
            "unknown hospital 'nowhere'",
        ),
        (
            '[[hospital.adapter]]\nname = "a"\nkind = "hl7v2-mllp"\nport = 70000\n',
            "hospital[0].adapter[0].port",
            "less than or equal to 65535",
        ),
        (
            '[[hospital.adapter]]\nname = "a"\nkind = "fhir-rest"\nbase_url = "ftp://x"\n',
            "hospital[0].adapter[0].base_url",
            "should match pattern",
        ),
        (
            '[[hospital.adapter]]\nname = "a"\nkind = "dicom-folder"\npath = "x"\n'
            '[[hospital.adapter]]\nname = "a"\nkind = "dicom-folder"\npath = "y"\n',
            "hospital[0].adapter",
            "two adapters named 'a'",
        ),
        (
            '[[hospital.adapter]]\nname = "a"\nkind = "lis-csv"\npath = "x"\nencoding = "big5"\n'
            '[hospital.adapter.columns]\nname = "n"\nsex = "s"\nbirth_date = "b"\n'
            'order_number = "o"\ntest_code = "c"\ntest_name = "t"\nvalue = "v"\n'
            'collected_at = "t0"\n',
            "hospital[0].adapter[0].encoding",
            "national_id or mrn",
        ),
    ],
)
def test_invalid_values(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = str(error_of(write(tmp_path, body)))
    assert key in err and message in err


def test_bad_level_slug_and_duplicate_ids(tmp_path: Path) -> None:
    bad = HEAD.replace('level = "3A"', 'level = "3C"').replace('"szph"', '"SZ PH"')
    err = str(error_of(write(tmp_path, "", head=bad)))
    assert "hospital[0].level" in err and "hospital[0].id" in err
    twice = HEAD + "\n" + HEAD.split("\n", 3)[3]
    assert "repeated: ['szph']" in str(error_of(write(tmp_path, "", head=twice)))


def test_check_paths_requires_enabled_folders(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[hospital.adapter]]\nname = "a"\nkind = "hl7v2-folder"\npath = "missing"\n'
        '[[hospital.adapter]]\nname = "b"\nkind = "dicom-folder"\npath = "gone"\n'
        "enabled = false\n",
    )
    load_hospitals(path, {})  # not checked unless asked
    err = error_of_checked(path)
    assert err.key == "hospital[0].adapter[0].path" and "does not exist" in str(err)
    (tmp_path / "missing").mkdir()
    load_hospitals(path, {}, check_paths=True)  # the disabled one's folder may be absent


def error_of_checked(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_hospitals(path, {}, check_paths=True)
    return caught.value


def test_unreadable_file(tmp_path: Path) -> None:
    err = error_of(tmp_path / "nope.toml")
    assert "nope.toml: cannot read" in str(err)
