"""Exports of a month: the whole month or a filtered part of it, as Parquet, CSV or XLSX."""

from __future__ import annotations

from pathlib import Path

import click

from batch import actions
from batch.identity import IdentityError, sign
from batch.months import check_month
from batch.roles import RoleError, actor_from
from batch_cli.context import exports, signer, store
from batch_cli.failures import CliError, friendly
from batch_cli.output import emit, out


@click.command()
@click.argument("month")
@click.option("--version", "version", type=int, help="A given version (default: the latest).")
@click.option("--final", is_flag=True, help="The official allocation of a finalized month.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "xlsx"]), default="csv", show_default=True)
@click.option("--service")
@click.option("--region")
@click.option("--resource")
@click.option("--status", "status_")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="The file to write (outside BATCH_ADMIN_HOME).")
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
@click.option("--actor", help="Who exports (anyone in the roles file; else BATCH_ADMIN_ACTOR).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def export(month: str, version: int | None, final: bool, fmt: str, service: str | None, region: str | None,
           resource: str | None, status_: str | None, out_path: Path, force: bool, actor: str | None,
           as_json: bool) -> None:
    """Export a whole month, or a filtered part of it, as Parquet, CSV or XLSX."""
    check_month(month)
    who = actions.may(store(), "export", actor_from(actor), month)
    if final and version is not None:
        raise CliError("Give --version N or --final, not both.")
    key = signer(who)  # before writing anything: no key, no export
    from batch.report import standing_of  # deferred: start-up speed (pandas, charts)

    result = exports().export(month, fmt=fmt, out=out_path, version=version, final=final,
                              service=service, region=region, resource=resource, status=status_, force=force,
                              standing=standing_of(store(), exports(), month, version, final))
    try:
        actions.record_export(store(), sign(key, who, "export", month, {k: str(v) for k, v in result.items()} | {
            "filters": {"service": service, "region": region, "resource": resource, "status": status_}}))
    except (IdentityError, RoleError):
        Path(result["path"]).unlink(missing_ok=True)  # an export nobody can be held to is not left behind
        raise
    emit(result, as_json, lambda: out.print(f"Wrote {result['rows']} rows to {result['path']}"
                                            + (f". {result['empty']}" if result.get("empty") else ""), markup=False))


COMMANDS = (export,)
