"""Child process for the drop-folder kill test: one pull of a folder into a SQLite exchange.

Usage: ``python hl7_sync_child.py DATABASE_URL FOLDER HOSPITAL``. Prints the SyncResult.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from adapters.hl7v2.drop_folder import Hl7Folder  # noqa: E402
from hie.services import build_exchange  # noqa: E402
from hie.settings import Settings  # noqa: E402
from hie.terminology import Terminology  # noqa: E402


def main(url: str, folder: str, hospital: str) -> None:
    settings = Settings(database_url=url, jwt_secret="k" * 40, base_url="http://t/fhir")
    exchange = build_exchange(settings, run_migrations=False)
    source = Hl7Folder(
        hospital, "lis-folder", Path(folder), Terminology.load(ROOT / "fhir_profiles")
    )
    print(source.run(exchange.ingestor), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
