"""Commands for the operator's upkeep: ``db upgrade``, ``check-config``."""

from __future__ import annotations

import click

from gateway.cli.base import (
    Context,
    cli,
    guarded,
    pass_context,
)


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


@cli.command("check-config")
@pass_context
def check_config(context: Context) -> None:
    """Validate the configuration and say where it came from."""
    config = context.config
    click.echo(f"configuration: {config.source}")
    click.echo(f"database: {config.database_url}")
