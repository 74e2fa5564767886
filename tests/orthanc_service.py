"""A throw-away Orthanc PACS with the DICOMweb plugin, for tests that need a real PACS.

Debian packages ``orthanc`` and ``orthanc-dicomweb`` (CI installs them; locally
``DEBIAN_FRONTEND=noninteractive apt-get install -y -q orthanc orthanc-dicomweb``). Each
instance gets its own storage folder, free ports below 32768 (client ports start at 32768
and can sit in TIME-WAIT) and basic auth, and is stopped with SIGTERM by its PID. See
/work/shared/SERVICES.md for the traps.

Availability rule for tests (:func:`availability`): if the binary or the plugin is missing the
tests are skipped with the install command as the reason, unless ``HIE_REQUIRE_SERVICES=1``
(as in CI), where a missing Orthanc is a failure, never a silent skip.

Also a tiny CLI for demos: ``python tests/orthanc_service.py [--port 18042] FILE_OR_DIR...``
starts one, loads the DICOM files and prints the DICOMweb URL until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import httpx

ORTHANC_BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
INSTALL_HINT = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q orthanc orthanc-dicomweb"
USERNAME = "hie"
PASSWORD = "hie-secret"


def binary() -> str | None:
    found = shutil.which("Orthanc") or (ORTHANC_BINARY if Path(ORTHANC_BINARY).exists() else None)
    return found if found and Path(DICOMWEB_PLUGIN).exists() else None


def availability() -> tuple[bool, str]:
    """(usable, reason). Missing with HIE_REQUIRE_SERVICES=1 is for the caller to fail on."""
    if binary() is not None:
        return True, "Orthanc and its DICOMweb plugin are installed"
    reason = (
        f"Orthanc ({ORTHANC_BINARY}) or its DICOMweb plugin ({DICOMWEB_PLUGIN}) is not "
        f"installed; install with: {INSTALL_HINT}"
    )
    return False, reason


def required(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("HIE_REQUIRE_SERVICES") == "1"


def skip_or_fail_if_absent(env: Mapping[str, str] | None = None) -> None:
    """For pytest fixtures: return if Orthanc can run; else skip, or fail when it is required."""
    import pytest

    usable, reason = availability()
    if usable:
        return
    if required(env):
        pytest.fail(f"HIE_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def free_port(low: int = 20000, high: int = 32000) -> int:
    """A port below the client range that nothing listens on right now."""
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


class Orthanc:
    """One Orthanc process; use as a context manager or call start()/stop()."""

    def __init__(self, workdir: Path | None = None, http_port: int | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="hie-orthanc-")) if workdir is None else workdir
        self.http_port = http_port or free_port()
        self.dicom_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return USERNAME, PASSWORD

    def config(self) -> dict[str, object]:
        storage = str(self.workdir / "storage")
        return {
            "Name": "hie-test-pacs",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "HIETEST",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USERNAME: PASSWORD},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1,
            # QIDO-RS answers are written in this encoding; Orthanc's default (Latin1) drops
            # every Chinese character from names and descriptions.
            "DefaultEncoding": "Utf8",
        }

    def start(self, timeout: float = 20.0) -> Orthanc:
        program = binary()
        if program is None:
            raise RuntimeError(availability()[1])
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [program, str(config_path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/system", auth=self.auth, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout} s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def upload(self, paths: Iterable[Path]) -> list[str]:
        """POST /instances for each file; the Orthanc ids of what was stored."""
        ids = []
        with httpx.Client(auth=self.auth, timeout=30) as client:
            for path in paths:
                response = client.post(f"{self.url}/instances", content=path.read_bytes())
                response.raise_for_status()
                ids.append(response.json()["ID"])
        return ids

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _files(args: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        found.extend(sorted(p for p in path.rglob("*.dcm")) if path.is_dir() else [path])
    return found


def main(argv: list[str]) -> int:
    port = None
    if argv[:1] == ["--port"]:
        port, argv = int(argv[1]), argv[2:]
    # Stop cleanly on SIGTERM too (a background job ignores SIGINT): __exit__ stops Orthanc.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with Orthanc(http_port=port) as pacs:
        stored = pacs.upload(_files(argv))
        print(f"Orthanc at {pacs.dicomweb_url} (user {USERNAME}), {len(stored)} instance(s)")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
