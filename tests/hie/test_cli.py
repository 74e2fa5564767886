"""The ``hie`` command as an operator uses it, on a copy of the demo fixtures (SQLite file).

Runs in process through typer's CliRunner with the environment a shell would give it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hie.cli import app
from tests.conftest import ROOT

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    work = tmp_path / "fixtures"
    shutil.copytree(ROOT / "fixtures", work)
    return {
        "HIE_DATABASE_URL": f"sqlite:///{tmp_path / 'hie.db'}",
        "HIE_JWT_SECRET": "cli-test-secret-" + "y" * 24,
        "HIE_CONFIG_FILE": str(work / "hospitals.toml"),
        "COLUMNS": "200",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_sync_then_replay_is_a_no_op(env: dict[str, str]) -> None:
    code, out = run(env, "sync", "szph")
    assert "szph/lis-folder: received 5, indexed 42" in out, out
    assert code == 0
    work = Path(env["HIE_CONFIG_FILE"]).parent
    assert not list((work / "hl7v2" / "szph").glob("*.hl7")), "read files move to done/"
    # the same files again, by hand: nothing new is indexed
    for f in sorted((work / "hl7v2" / "szph" / "done").glob("*.hl7")):
        code, out = run(env, "import", str(f), "--hospital", "szph")
        assert "indexed 0" in out and "new versions 0" in out, out


def test_dead_letters_list_show_and_retry(env: dict[str, str]) -> None:
    run(env, "sync", "szph")
    code, out = run(env, "dead-letters", "list")
    assert code == 0 and "szph/lis-folder" in out and "not a number" in out
    code, out = run(env, "dead-letters", "show", "1")
    assert "OBX[1]-5" in out and out.count("OBX|") >= 1  # reason and the raw message
    code, out = run(env, "dead-letters", "retry", "1")
    assert code == 1 and out.startswith("still failing"), out
    code, out = run(env, "dead-letters", "list", "--status", "retried")
    assert "retried" in out, out
    code, out = run(env, "dead-letters", "resolve", "1")
    assert code == 0
    code, out = run(env, "dead-letters", "list")
    assert "szph/lis-folder" not in out, out


def test_csv_import_and_unmapped_codes(env: dict[str, str]) -> None:
    work = Path(env["HIE_CONFIG_FILE"]).parent
    csv = next((work / "csv" / "nsdh").glob("*.csv"))
    code, out = run(env, "import", str(csv), "--hospital", "nsdh")
    assert "received 5" in out and "rejected 1" in out, out
    assert code == 1  # a rejected row makes the exit code say so
    code, out = run(env, "sync", "nsdh", "--adapter", "lis-folder")
    assert code == 0, out
    code, out = run(env, "unmapped-codes")
    assert code == 0 and "CO2" in out, out  # nsdh's HL7 feed sends CO2, not in its ConceptMap


def test_broken_config_names_the_key(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    text = (
        Path(env["HIE_CONFIG_FILE"]).read_text("utf-8").replace('level = "3A"', 'level = "9Z"', 1)
    )
    bad.write_text(text, "utf-8")
    code, out = run(env, "sync", "szph", "--config", str(bad))
    assert code == 2
    assert "level" in out and "hospital[0]" in out, out


def test_token_needs_the_secret(env: dict[str, str]) -> None:
    code, out = run({**env, "HIE_JWT_SECRET": ""}, "token", "--client", "x")
    assert code == 2 and "HIE_JWT_SECRET" in out
    code, out = run(env, "token", "--client", "lis", "--hospital", "szph", "--role", "ops")
    assert code == 0 and out.count(".") == 2  # a JWT


def test_patients_review_lists_an_empty_queue(env: dict[str, str]) -> None:
    run(env, "sync", "szph")
    code, out = run(env, "patients", "review")
    assert code == 0 and "candidate patient" in out
