"""docs/recognition.md stays true: its catalogue table matches the catalogue file, its
credentials example is a valid hospitals-configuration block, and the demo it describes (nsdh
without an HbA1c pass in 2026) comes out as documented; the demo fixture's own credentials too."""

from __future__ import annotations

import re
from typing import Any

import pytest
from recognition_world import PROFILES, World, at, demo_world

from hie.recognition.catalogue import Catalogue

ROOT = PROFILES.parent
DOC = (ROOT / "docs" / "recognition.md").read_text("utf-8")


def test_catalogue_table_matches_the_file(catalogue: Catalogue) -> None:
    rows = {
        m[1]: m[2]
        for m in re.finditer(r"^\| `([^`]+)`[^|]*\|(?:[^|]*\|){4} (P\w+) \|", DOC, re.MULTILINE)
    }
    assert rows == {code: item.window.text for code, item in catalogue.items.items()}


def _snippet() -> str:
    (block,) = re.findall(r"```toml\n(.*?)```", DOC, re.DOTALL)
    return str(block)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(_snippet, id="docs example"),
        pytest.param(
            lambda: (ROOT / "fixtures" / "hospitals.toml").read_text("utf-8"), id="demo fixture"
        ),
    ],
)
def test_demo_credentials_give_the_documented_verdicts(world: World, source: Any) -> None:
    demo = demo_world(world, source())
    assert {h.id: h.level for h in demo.hospitals} == {"szph": "3A", "pkuszh": "3A", "nsdh": "3B"}
    when = "2026-11-25T09:00:00"
    a1c_nsdh = demo.result("4548-4", hospital_id="nsdh", effective=at("2026-11-20T08:00"))
    a1c_szph = demo.result("4548-4", hospital_id="szph", effective=at("2026-11-20T08:00"))
    glucose_nsdh = demo.result("2345-7", hospital_id="nsdh", effective=at("2026-11-20T08:00"))
    verdicts = {
        r.ref: a.verdict
        for r in (a1c_nsdh, a1c_szph, glucose_nsdh)
        for a in demo.run([r], [r.codes[0][1]], when).results
    }
    assert verdicts[a1c_nsdh.ref].reason == "no-credential-at-time"
    assert verdicts[a1c_szph.ref].kind == "recognised"
    assert verdicts[glucose_nsdh.ref].kind == "recognised"
    # nsdh's 2025 HbA1c pass still counts for a 2025 result.
    old = demo.result("4548-4", hospital_id="nsdh", effective=at("2025-12-20T08:00"))
    assert demo.one(old, when="2026-01-10T09:00").verdict.kind == "recognised"
