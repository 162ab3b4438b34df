"""The ``reefknot`` command: argument parsing and output only; the work is in ``gateway.service``.

Each module registers one family of subcommands on the group in ``base``.
"""

from __future__ import annotations

import click

from gateway.cli import admin_commands, calendar_commands, dkim_commands, files_commands, mail_commands  # noqa: F401  (registers the subcommands)
from gateway.cli.base import EX_USAGE, Exit, cli


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its sysexits code."""
    try:
        cli.main(args=argv, prog_name="reefknot", standalone_mode=False)
    except Exit as error:
        click.echo(error.line(), err=True)
        return error.code
    except click.exceptions.Abort:
        return 1
    except click.UsageError as error:
        error.show()
        return EX_USAGE
    except click.ClickException as error:
        error.show()
        return error.exit_code
    return 0
