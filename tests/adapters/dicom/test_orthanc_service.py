"""The test PACS helper: a missing Orthanc skips locally and fails where it is required."""

from __future__ import annotations

import pytest
from imaging_support import orthanc_service


def test_missing_orthanc_skips_unless_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(orthanc_service, "binary", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y -q orthanc"):
        orthanc_service.skip_or_fail_if_absent({})
    with pytest.raises(pytest.fail.Exception, match="HIE_REQUIRE_SERVICES=1 but Orthanc"):
        orthanc_service.skip_or_fail_if_absent({"HIE_REQUIRE_SERVICES": "1"})


def test_config_uses_private_ports_storage_and_utf8() -> None:
    pacs = orthanc_service.Orthanc()
    try:
        config = pacs.config()
        assert config["HttpPort"] != config["DicomPort"]
        assert all(1024 < int(config[k]) < 32768 for k in ("HttpPort", "DicomPort"))  # type: ignore[call-overload]
        assert config["DefaultEncoding"] == "Utf8"
        assert config["Plugins"] == [orthanc_service.DICOMWEB_PLUGIN]
        assert str(pacs.workdir) in str(config["StorageDirectory"])
    finally:
        pacs.stop()  # never started: only removes its folder
    assert not pacs.workdir.exists()
