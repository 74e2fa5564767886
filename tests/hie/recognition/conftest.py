"""Fixtures for the recognition tests; the world they build is in recognition_world.py."""

from __future__ import annotations

import pytest
from recognition_world import PROFILES, World

from hie.recognition.catalogue import Catalogue
from hie.recognition.model import RecognitionPolicy
from hie.recognition.scope import ScopeRules


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue.load(PROFILES / "CodeSystem-recognition-catalogue.json")


@pytest.fixture(scope="session")
def policy() -> RecognitionPolicy:
    return RecognitionPolicy("粤", ScopeRules.load(PROFILES / "CodeSystem-recognition-scope.json"))


@pytest.fixture
def world(catalogue: Catalogue, policy: RecognitionPolicy) -> World:
    return World(catalogue, policy)
