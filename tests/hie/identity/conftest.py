"""Shared fixtures of the identity tests: the hand-written patients (see fixtures/README.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hie.identity import MatchSettings, Traits, from_patient

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def patients() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads((FIXTURES / "patients.json").read_text("utf-8"))
    return data


@pytest.fixture
def traits_of(patients: dict[str, dict[str, Any]]) -> Callable[[str], Traits]:
    return lambda name: from_patient(patients[name])


@pytest.fixture
def settings() -> MatchSettings:
    return MatchSettings()
