"""Commands for the operator's upkeep: ``db upgrade``, ``check-config``, and ``demo``."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.base import (
    EX_USAGE,
    Context,
    Exit,
    cli,
    guarded,
    pass_context,
)
from gateway.adapters.clock import utcnow
from gateway.service import retention


@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_context
@guarded
def db_upgrade(context: Context) -> None:
    """Apply schema migrations."""
    context.database(prepare=False).upgrade()
    click.echo("database is up to date")


@db.command("prune")
@pass_context
@guarded
def db_prune(context: Context) -> None:
    """Forget now what [retention] no longer keeps (serve does it every hour)."""
    pruned = retention.prune(context.database(), utcnow(), context.config.retention)
    click.echo(f"forgot {pruned.raw_messages} raw messages, {pruned.inbox_lines} inbox lines, "
               f"{pruned.outbox_rows} outbox rows, {pruned.handoffs} handoff records")


@cli.command("check-config")
@pass_context
def check_config(context: Context) -> None:
    """Validate the configuration, the files it names and its policy files, and say where they came from."""
    config = context.check_files()
    click.echo(f"configuration: {config.source}")
    click.echo(f"database: {config.database_url}")
    click.echo(f"policy: {context.trust().summary}")


@cli.command("demo")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="Work in this directory and leave the database, configuration and log behind.")
def demo(keep: Path | None) -> None:
    """Run the five scenarios end to end on loopback, narrated (needs no configuration)."""
    from gateway.demo import run_demo

    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise Exit(EX_USAGE, f"--keep {keep}: the directory is not empty; give a new or an empty one")
    if not run_demo(click.echo, keep):
        raise Exit(1, "the demo failed")
