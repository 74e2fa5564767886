"""``hie partitions ensure|list``: the time partitions of a PostgreSQL index.

Mount in ``hie.cli``::

    from hie.cli_partitions import partitions_app
    app.add_typer(partitions_app, name="partitions")

``hie migrate`` already makes the partitions due; ``ensure`` is the same step on its own, for
cron or an operator, and ``list`` shows what holds what. On SQLite both say so and do nothing.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

partitions_app = typer.Typer(
    help="Monthly time partitions (PostgreSQL): make the ones due, list them.",
    no_args_is_help=True,
)
console = Console(stderr=True)


def _engine() -> Engine:
    from hie.index.store import create_engine
    from hie.settings import Settings

    return create_engine(Settings().database_url, pool_size=1)


@partitions_app.command("ensure")
def ensure(
    months_ahead: Annotated[int, typer.Option(help="Months after this one to make now")] = 3,
    since: Annotated[
        str | None, typer.Option(help="First month to cover, YYYY-MM (default: this month)")
    ] = None,
) -> None:
    """Make the missing monthly partitions; rows waiting in DEFAULT move to their month."""
    from hie.index.partitions import ensure_partitions

    first = None
    if since:
        try:
            first = date.fromisoformat(f"{since}-01")
        except ValueError:
            raise typer.BadParameter("use YYYY-MM", param_hint="--since") from None
    engine = _engine()
    try:
        if engine.dialect.name != "postgresql":
            console.print("Only PostgreSQL is partitioned; nothing to do.")
            return
        made = ensure_partitions(engine, months_ahead=months_ahead, since=first)
    finally:
        engine.dispose()
    console.print(f"made {len(made)} partition(s)" + (f": {', '.join(made)}" if made else ""))


@partitions_app.command("list")
def list_(
    exact: Annotated[
        bool, typer.Option(help="Count rows (scans each partition) instead of estimating")
    ] = False,
) -> None:
    """Each partition with its range, rows and size on disk."""
    from hie.index.partitions import list_partitions

    engine = _engine()
    try:
        if engine.dialect.name != "postgresql":
            console.print("Only PostgreSQL is partitioned; nothing to list.")
            return
        found = list_partitions(engine, exact=exact)
    finally:
        engine.dispose()
    table = Table("table", "partition", "from (UTC)", "to (UTC)", "rows", "size")
    for p in found:
        table.add_row(
            p.table,
            p.name,
            p.start.strftime("%Y-%m-%d") if p.start else "DEFAULT",
            p.end.strftime("%Y-%m-%d") if p.end else "",
            f"{p.rows:,}" if exact else f"~{p.rows:,}",
            f"{p.bytes / 1048576:,.1f} MiB",
        )
    Console().print(table)
