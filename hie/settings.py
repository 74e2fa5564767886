"""Settings: the only place that reads the environment.

Built once at the edge (CLI or app factory) and passed inward, so library code and tests
never depend on ambient environment variables.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything the exchange needs to know about its surroundings."""

    model_config = SettingsConfigDict(env_prefix="HIE_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///hie.db",
        description="SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://user@host/db",
    )
    profiles_dir: Path = ROOT / "fhir_profiles"
    fixtures_dir: Path = ROOT / "fixtures"
    config_file: Path | None = None  # hospitals TOML
    base_url: str = "http://127.0.0.1:8000/fhir"
    timezone: str = "Asia/Shanghai"
    # HS256 secret for the exchange's own tokens. Empty: `hie serve` refuses to start,
    # `hie demo` makes a random one for the run and prints a token.
    jwt_secret: str = ""
    token_lifetime_s: int = 3600
    max_body_bytes: int = 20 * 1024 * 1024
    max_json_depth: int = 64
    default_count: int = 50
    max_count: int = 1000
    pool_size: int = 10
    # Patient matching thresholds (Fellegi–Sunter bits; bench/README-identity.md): at or
    # above auto_link a record links by itself; from review_floor up it waits for a human.
    identity_auto_link: float = 30.0
    identity_review_floor: float = 18.0

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
