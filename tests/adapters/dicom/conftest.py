"""Fixtures for the imaging adapter tests: a recording sink and a real Orthanc."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from imaging_support import RecordingSink, orthanc_service


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture(scope="session")
def orthanc() -> Iterator[orthanc_service.Orthanc]:
    """A fresh Orthanc + DICOMweb for the session; skipped only when absent and not required."""
    orthanc_service.skip_or_fail_if_absent()
    with orthanc_service.Orthanc() as pacs:
        yield pacs
