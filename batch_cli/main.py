"""The `batch-admin` command line: the group, its commands (batch_cli/commands/) and the program's exit."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import click

from batch_cli.commands import exports, lifecycle, month, people, review, run, service
from batch_cli.context import close_stores
from batch_cli.failures import DEBUG_VAR, EXIT_FAILED, BatchAdmin

__all__ = ["close_stores", "entry", "main"]


@click.group(cls=BatchAdmin, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar=DEBUG_VAR,
              help=f"Show the traceback of a failure (also {DEBUG_VAR}=1); without it, one sentence.")
def main(debug: bool) -> None:
    """Control plane for the monthly allocation batch (state under BATCH_ADMIN_HOME).

    Exit codes: 0 done; 1 refused by the product's rules; 2 a malformed command line, or a failure
    the command could not get past (a full disk, permissions, a database out of reach, a bug)."""


for group in (month, run, review, lifecycle, people, exports, service):
    for command in group.COMMANDS:
        main.add_command(command)


def entry() -> NoReturn:
    """The `batch-admin` program: main(), then the control-store connections closed before exit."""
    try:
        main(prog_name="batch-admin")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILED)
    close_stores()
    if "batch_cli.local_runs" in sys.modules:
        # The command ran a job itself, so it holds the whole stack (Dagster, pandas, great-expectations): the
        # interpreter's teardown of it took 1.4-2 s at load 4, after the run had ended. Nothing is left to close
        # (the stores above; Dagster's storages keep no connection between statements; the run's worker is a
        # process of its own), so the output is flushed and the process ends at once.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
