"""The ``hie`` command: serve, demo, token (later issues add sync, import, dead-letters, ops...)."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hie.auth import ALL_SCOPES, mint
from hie.settings import Settings

app = typer.Typer(help="hie: a medical-results exchange.", no_args_is_help=True)
console = Console(stderr=True)

HostOpt = Annotated[str, typer.Option(help="Interface to listen on")]
PortOpt = Annotated[int, typer.Option(help="HTTP port")]


def _settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def _run(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from hie.api.app import create_app

    application = create_app(settings)
    uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)


@app.command()
def serve(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    config: Annotated[Path | None, typer.Option(help="Hospitals configuration (TOML)")] = None,
) -> None:
    """Serve the exchange (database from HIE_DATABASE_URL, default ./hie.db)."""
    settings = _settings(config_file=config, base_url=f"http://{host}:{port}/fhir")
    if not settings.jwt_secret:
        console.print(
            "[red]HIE_JWT_SECRET is not set.[/red] Set it to a long random string "
            "(e.g. `export HIE_JWT_SECRET=$(openssl rand -hex 32)`); tokens are signed with it."
        )
        raise typer.Exit(2)
    _run(settings, host, port)


@app.command()
def demo(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    database: Annotated[Path, typer.Option(help="SQLite file for the demo")] = Path("hie-demo.db"),
) -> None:
    """Load the demo hospitals from fixtures/ into a fresh database, then serve."""
    from hie.demo import load_demo

    settings = _settings(
        database_url=f"sqlite:///{database}", base_url=f"http://{host}:{port}/fhir"
    )
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    if not settings.jwt_secret:
        settings.jwt_secret = secrets.token_hex(32)
    summary, _ = load_demo(settings, Path(f"{database}.fixtures"))
    settings.config_file = Path(f"{database}.fixtures") / "hospitals.toml"
    token = mint(settings.jwt_secret, "demo", scopes=ALL_SCOPES, lifetime_s=24 * 3600)
    console.print(summary)
    console.print(f"\n[bold]hie demo[/bold] at http://{host}:{port}/fhir  (database {database})")
    console.print("A token for the demo client (valid 24 h):")
    print(token, flush=True)
    console.print(
        f'Try: curl -H "Authorization: Bearer $TOKEN" http://{host}:{port}/fhir/Patient\n'
    )
    _run(settings, host, port)


@app.command()
def token(
    client: Annotated[str, typer.Option(help="Client id the token is issued to")],
    hospital: Annotated[str | None, typer.Option(help="Hospital the client acts for")] = None,
    scope: Annotated[list[str] | None, typer.Option(help="SMART v2 scope; repeat")] = None,
    lifetime: Annotated[int, typer.Option(help="Seconds")] = 3600,
) -> None:
    """Mint a token for local use (signed with HIE_JWT_SECRET)."""
    settings = _settings()
    if not settings.jwt_secret:
        console.print("[red]HIE_JWT_SECRET is not set.[/red]")
        raise typer.Exit(2)
    print(
        mint(
            settings.jwt_secret,
            client,
            hospital_id=hospital,
            scopes=tuple(scope or ALL_SCOPES),
            lifetime_s=lifetime,
        )
    )


@app.command()
def migrate() -> None:
    """Upgrade the database at HIE_DATABASE_URL to this release's schema."""
    from hie import migrate as m
    from hie.index.store import create_engine

    settings = _settings()
    engine = create_engine(settings.database_url)
    before = m.current(engine)
    m.upgrade(engine)
    console.print(f"schema {before or 'empty'} → {m.current(engine)}")


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
