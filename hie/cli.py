"""The ``hie`` command: serve, demo, token (later issues add sync, import, dead-letters, ops...)."""

from __future__ import annotations

import os
import secrets
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hie.auth import ALL_SCOPES, mint
from hie.settings import Settings

app = typer.Typer(
    help="hie: a medical-results exchange.", no_args_is_help=True, pretty_exceptions_enable=False
)
console = Console(stderr=True)

HostOpt = Annotated[str, typer.Option(help="Interface to listen on")]
PortOpt = Annotated[int, typer.Option(help="HTTP port")]


def _settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def _base_url(host: str, port: int) -> str | None:
    """HIE_BASE_URL when set (the address clients use, behind a proxy or on 0.0.0.0);
    otherwise the address being served."""
    if os.environ.get("HIE_BASE_URL"):
        return None  # Settings reads it from the environment
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}/fhir"


def _warm_identity() -> None:
    from hie.identity import names

    names.warm()


def _run(settings: Settings, host: str, port: int) -> None:
    """Serve HTTP, with the configured MLLP listeners beside it, until stopped."""
    import uvicorn

    from hie.api.app import create_app
    from hie.hospitals import ConfigError
    from hie.services import build_exchange

    try:
        exchange = build_exchange(settings)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    listeners = []
    if exchange.hospitals is not None:
        from hie.listeners import start_mllp

        try:
            listeners = start_mllp(exchange, exchange.hospitals)
        except OSError as exc:
            console.print(f"[red]MLLP listener could not start:[/red] {exc}")
            raise typer.Exit(2) from None
        for running in listeners:
            console.print(f"MLLP listening on port {running.port}")
    application = create_app(settings, exchange)
    # Patient names need pypinyin's dictionaries; load them once the server is answering
    # (start-up stays short) rather than inside the first request that carries a patient.
    warming = threading.Timer(2.0, _warm_identity)
    warming.daemon = True
    warming.start()
    try:
        uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)
    finally:
        for running in listeners:
            running.stop()


@app.command()
def serve(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    config: Annotated[Path | None, typer.Option(help="Hospitals configuration (TOML)")] = None,
) -> None:
    """Serve the exchange (database from HIE_DATABASE_URL, default ./hie.db)."""
    settings = _settings(config_file=config, base_url=_base_url(host, port))
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

    settings = _settings(database_url=f"sqlite:///{database}", base_url=_base_url(host, port))
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
    role: Annotated[list[str] | None, typer.Option(help="Role, e.g. ops; repeat")] = None,
    lifetime: Annotated[int | None, typer.Option(help="Seconds (HIE_TOKEN_LIFETIME_S)")] = None,
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
            roles=tuple(role or ()),
            lifetime_s=lifetime or settings.token_lifetime_s,
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


@app.command("backfill-facts")
def backfill_facts(
    batch: Annotated[int, typer.Option(help="Results per transaction")] = 2000,
) -> None:
    """Store the recognition facts of results written before migration 0009.

    $prior-results works without them (it parses those results' bodies instead), only
    slower. Safe while the exchange serves; stop it at any time and run it again.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from hie import migrate as m
    from hie.index.store import Store, create_engine

    store = Store(create_engine(_settings().database_url, pool_size=1))
    m.upgrade(store.engine)  # like every command that opens the database: 0009 first
    done = 0
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as bar:
            task = bar.add_task("filling facts", total=None)
            for filled in store.backfill_facts(batch):
                done += filled
                bar.update(task, description=f"{done:,} results filled")
    finally:
        store.engine.dispose()
    console.print(f"{done:,} results given their facts")


def _exchange_and_config(config: Path | None) -> tuple[Any, Any]:
    import os

    from hie.hospitals import ConfigError, load_hospitals
    from hie.services import build_exchange

    settings = _settings()
    path = config or settings.config_file
    if path is None:
        console.print("[red]Name the hospitals file with --config or HIE_CONFIG_FILE.[/red]")
        raise typer.Exit(2)
    try:
        hospitals = load_hospitals(path, os.environ, check_paths=True)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    settings.config_file = path
    exchange = build_exchange(settings)
    return exchange, hospitals


ConfigOpt = Annotated[Path | None, typer.Option(help="Hospitals configuration (TOML)")]


@app.command()
def sync(
    hospital: Annotated[str, typer.Argument(help="Hospital id from the configuration")],
    adapter: Annotated[str | None, typer.Option(help="Only this adapter")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run one pull of a hospital's feeds now, with progress and a summary."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from hie.feeds import summary, sync_adapter

    exchange, hospitals = _exchange_and_config(config)
    try:
        h = hospitals.hospital(hospital)
        chosen = (
            [h.adapter(adapter)] if adapter else [a for a in h.adapters if a.is_pull and a.enabled]
        )
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from None
    failed = False
    for a in chosen:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as bar:
            task = bar.add_task(f"{h.id}/{a.name}: starting")

            def show(r: Any, task: Any = task, bar: Any = bar) -> None:
                bar.update(task, description=f"{r.hospital_id}/{r.adapter}: {r.received} received")

            result = sync_adapter(exchange, hospitals, h, a, progress=show)
        print(summary(result))
        failed = failed or result.error is not None
    raise typer.Exit(1 if failed else 0)


@app.command(name="import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="HL7 v2 or CSV file")],
    hospital: Annotated[str, typer.Option(help="Hospital the file comes from")],
    config: ConfigOpt = None,
) -> None:
    """Ingest one file once: HL7 v2 (one or many ORU^R01), or a LIS CSV export (*.csv, read
    with the column mapping of the hospital's lis-csv adapter)."""
    from adapters.base import Batch
    from hie.hospitals import LisCsvAdapter
    from hie.terminology import Terminology

    exchange, hospitals = _exchange_and_config(config)
    try:
        h = hospitals.hospital(hospital)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from None
    terminology = Terminology.load(exchange.settings.profiles_dir)
    if file.suffix.lower() == ".csv":
        from adapters.lis_csv.source import LisCsvSource

        adapter = next((a for a in h.adapters if isinstance(a, LisCsvAdapter)), None)
        if adapter is None:
            console.print(f"[red]{hospital} has no lis-csv adapter to read the columns from[/red]")
            raise typer.Exit(2)
        source = LisCsvSource.from_config(
            h.id, adapter, hospitals.exchange, lambda hid, code: terminology.map(hid, code)
        )
        units, dead = source.parse(file.read_bytes(), key=file.name)
        batch = Batch(h.id, "import", units=units, dead_letters=dead)
    else:
        from adapters.hl7v2.drop_folder import import_file

        batch = import_file(file, hospital, terminology=terminology)
    result = exchange.ingestor.ingest(batch)
    print(
        f"{file.name}: received {result.received}, indexed {result.created}, "
        f"unchanged {result.unchanged}, new versions {result.updated}, rejected {result.rejected}"
    )
    raise typer.Exit(1 if result.rejected else 0)


dead_app = typer.Typer(help="Payloads an adapter or ingest could not use.", no_args_is_help=True)
app.add_typer(dead_app, name="dead-letters")


@dead_app.command("list")
def dead_list(
    hospital: Annotated[str | None, typer.Option()] = None,
    status: Annotated[
        str, typer.Option(help="open (new or retried) | new | retried | resolved | all")
    ] = "open",
) -> None:
    """Dead letters, newest first."""
    from rich.table import Table

    from hie.dead_letters import DeadLetters
    from hie.services import build_exchange

    letters = DeadLetters(build_exchange(_settings()))
    table = Table("id", "received", "hospital/adapter", "key", "status", "reason")
    for d in letters.list(hospital=hospital, status=None if status == "all" else status):
        table.add_row(
            str(d.id),
            f"{d.received:%Y-%m-%d %H:%M}",
            f"{d.hospital_id}/{d.adapter}",
            d.key[:40],
            d.status,
            d.reason[:80],
        )
    Console().print(table)


@dead_app.command("show")
def dead_show(letter_id: int) -> None:
    """One dead letter: where it came from, why, and its raw payload."""
    from hie.dead_letters import DeadLetters
    from hie.services import build_exchange

    d = DeadLetters(build_exchange(_settings())).get(letter_id)
    print(f"id: {d.id}\nhospital: {d.hospital_id}\nadapter: {d.adapter}\nkey: {d.key}")
    print(f"received: {d.received}\nstatus: {d.status} (attempts {d.attempts})")
    print(f"reason: {d.reason}\nlocation: {d.location or '-'}\n--- raw ({len(d.raw)} bytes)")
    sys.stdout.write(d.raw.decode("utf-8", "replace").replace("\r", "\n") + "\n")


@dead_app.command("resolve")
def dead_resolve(
    letter_id: Annotated[int, typer.Argument(help="Dead letter id")],
) -> None:
    """Close a dead letter fixed at the source (resent there); it stays on record."""
    from hie.dead_letters import DeadLetters
    from hie.services import build_exchange

    DeadLetters(build_exchange(_settings())).resolve(letter_id)
    print(f"dead letter {letter_id}: resolved")


@dead_app.command("retry")
def dead_retry(
    letter_id: Annotated[int, typer.Argument(help="Dead letter id")],
    config: ConfigOpt = None,
) -> None:
    """Send a dead letter's raw payload through its adapter's mapping and ingest again."""
    from hie.dead_letters import DeadLetters

    exchange, _ = _exchange_and_config(config)
    outcome = DeadLetters(exchange).retry(letter_id)
    print(outcome)
    raise typer.Exit(0 if outcome.startswith("landed") else 1)


@app.command("unmapped-codes")
def unmapped_codes_cmd(
    hospital: Annotated[str | None, typer.Option(help="Only this hospital")] = None,
) -> None:
    """Local test codes stored without a LOINC mapping: add them to the hospital's ConceptMap."""
    from rich.table import Table

    from hie.services import build_exchange
    from hie.unmapped import unmapped_codes

    table = Table("hospital", "local code", "results")
    for u in unmapped_codes(build_exchange(_settings()).store, hospital):
        table.add_row(u.hospital_id, u.code, str(u.results))
    Console().print(table)


def _mount_bench() -> None:
    """``hie bench generate|run`` and ``hie import-bulk`` (hie/cli_bench.py)."""
    from hie.cli_bench import bench_app, import_bulk

    app.add_typer(bench_app, name="bench")
    app.command("import-bulk")(import_bulk)


_mount_bench()


def _mount_partitions() -> None:
    """``hie partitions ensure|list``: PostgreSQL's monthly partitions (hie/cli_partitions.py)."""
    from hie.cli_partitions import partitions_app

    app.add_typer(partitions_app, name="partitions")


_mount_partitions()


patients_app = typer.Typer(
    help="Patient identity: review queue, unlink, merge.", no_args_is_help=True
)
app.add_typer(patients_app, name="patients")


def _cli_principal(actor: str) -> Any:
    """Who acted, for the audit trail, when ops work from the command line."""
    from hie.auth import Principal

    return Principal(f"cli:{actor}", roles=frozenset({"ops"}), purpose="HOPERAT")


def _mpi() -> tuple[Any, Any]:
    from hie.services import build_exchange

    exchange = build_exchange(_settings())
    return exchange, exchange.registry.mpi


@patients_app.command("review")
def patients_review(
    accept: Annotated[int | None, typer.Option(help="Accept this review item")] = None,
    reject: Annotated[int | None, typer.Option(help="Reject this review item")] = None,
    actor: Annotated[str, typer.Option(help="Who decides (recorded)")] = "cli",
    status: Annotated[str, typer.Option(help="open | accepted | rejected | all")] = "open",
) -> None:
    """List candidate links waiting for a human, or accept / reject one."""
    from rich.table import Table

    from hie.fhirtime import now_utc

    exchange, mpi = _mpi()
    if accept is not None or reject is not None:
        with exchange.store.write() as conn:
            if accept is not None:
                item = mpi.accept(conn, exchange.registry, accept, actor, now_utc())
            else:
                item = mpi.reject(conn, reject, actor, now_utc())
            exchange.auditor.record(
                _cli_principal(actor),
                f"review-{item.status}",
                resource_type="Patient",
                resource_ids=[f"Patient/{item.record_id}"],
                patient_ids=[item.candidate_patient_id, item.current_patient_id],
                conn=conn,
            )
        print(f"review {item.id}: {item.status}")
        return
    with exchange.store.read() as conn:
        items = mpi.reviews(conn, None if status == "all" else status)
    table = Table("id", "created", "record", "candidate patient", "score", "status", "reasons")
    for i in items:
        table.add_row(
            str(i.id),
            f"{i.created:%Y-%m-%d %H:%M}",
            i.record_id,
            i.candidate_patient_id,
            f"{i.score:.1f}" if i.score is not None else "-",
            i.status,
            "; ".join(i.reasons),
        )
    Console().print(table)


@patients_app.command("unlink")
def patients_unlink(
    record: Annotated[str, typer.Argument(help="Hospital Patient record id")],
    actor: Annotated[str, typer.Option()] = "cli",
) -> None:
    """Undo a record's last link: it goes back where it came from, or to a new patient."""
    from hie.fhirtime import now_utc

    exchange, mpi = _mpi()
    with exchange.store.write() as conn:
        target = mpi.unlink(conn, exchange.registry, record, actor, now_utc())
        exchange.auditor.record(
            _cli_principal(actor),
            "unlink",
            resource_type="Patient",
            resource_ids=[f"Patient/{record}"],
            patient_ids=[target],
            conn=conn,
        )
    print(f"{record} → Patient/{target}")


@patients_app.command("merge")
def patients_merge(
    source: Annotated[str, typer.Argument(help="Exchange patient to retire")],
    target: Annotated[str, typer.Argument(help="Exchange patient that survives")],
    actor: Annotated[str, typer.Option()] = "cli",
) -> None:
    """Merge two exchange patients; every record and result follows."""
    from hie.fhirtime import now_utc

    exchange, mpi = _mpi()
    with exchange.store.write() as conn:
        mpi.merge(conn, exchange.registry, source, target, actor, now_utc())
        exchange.auditor.record(
            _cli_principal(actor),
            "merge",
            resource_type="Patient",
            resource_ids=[f"Patient/{source}", f"Patient/{target}"],
            patient_ids=[source, target],
            conn=conn,
        )
    print(f"Patient/{source} merged into Patient/{target}")


def main() -> None:  # pragma: no cover - the console script
    """``hie``: domain errors end the command with their message, not a traceback."""
    from hie.hospitals import ConfigError
    from hie.outcome import FhirError

    try:
        app(sys.argv[1:], standalone_mode=True)
    except FhirError as exc:
        console.print(f"[red]{exc.diagnostics}[/red]")
        sys.exit(1)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        sys.exit(2)
