"""People and their keys: keygen, accept-roles (a changed roles file), passkey enroll."""

from __future__ import annotations

import re
from pathlib import Path

import click

from batch import actions
from batch.enrolment import make_token
from batch.identity import default_key_path, generate_key, write_private_key
from batch.passkeys import ENROL_MINUTES
from batch.roles import Roles, actor_from
from batch_cli.context import settings, sign_as, signer, store
from batch_cli.failures import CliError, friendly
from batch_cli.output import emit, err, out, print_filed
from resources.settings import DEFAULT_VIEW_URL, view_origin


@click.command()
@click.argument("name")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the private key (default: ~/.config/batch-admin/NAME.key).")
@friendly
def keygen(name: str, out_path: Path | None) -> None:
    """Make an Ed25519 key pair for NAME; prints the line to add under keys: in the roles file."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise CliError(f"A name is 1 to 64 letters, digits, '.', '_' or '-', not {name!r}.")
    path = (out_path or default_key_path(name)).expanduser()
    pem, public = generate_key()
    try:
        write_private_key(path, pem)
    except FileExistsError:
        raise CliError(f"{path} exists already; a key is never overwritten (move it away first).") from None
    except OSError as exc:
        raise CliError(f"Cannot write {path}: {exc.strerror}.") from None
    err.print(f"Private key written to {path} (readable by you only; keep it secret).")
    err.print("Add this line under `keys:` in the roles file, then have the change accepted "
              "(`batch-admin accept-roles`, approved by an approver):")
    out.print(f"  {name}: {public}", markup=False)


@click.command("accept-roles")
@click.option("--actor", help="The admin who files the request (else BATCH_ADMIN_ACTOR).")
@click.option("--note", required=True, help="What changed in the roles file, and why.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def accept_roles(actor: str | None, note: str, as_json: bool) -> None:
    """File a request to accept the changed roles file (BATCH_ADMIN_ROLES); an approver approves it."""
    who = actions.may(store(), "roles", actor_from(actor), None, gate=False)
    details = actions.roles_details(Roles.load(settings().roles_file), note)
    print_filed(actions.file_request(store(), sign_as(who, "request", None, details), view_origin()), as_json)


@click.group("passkey")
def passkey() -> None:
    """Passkeys (WebAuthn) that sign actions in the admin view."""


@passkey.command("enroll")
@click.option("--actor", help="The person the passkey is for (else BATCH_ADMIN_ACTOR); signs with their key.")
@click.option("--url", default=DEFAULT_VIEW_URL, show_default=True,
              help="The admin view's public origin (its host is the passkey's RP id: a domain, never an IP).")
@click.option("--json", "as_json", is_flag=True)
def enroll(actor: str | None, url: str, as_json: bool) -> None:
    """Print a link, valid 10 minutes and once, that registers a passkey for ACTOR in the admin view."""
    who = actor_from(actor)
    if not who:
        raise click.UsageError("Whose passkey? Give --actor or BATCH_ADMIN_ACTOR.")
    token = make_token(signer(who), who)
    link = f"{url.rstrip('/')}/passkey/enroll?token={token.encode()}"
    result = {"actor": who, "link": link, "expires_at": token.details["expires_at"]}
    emit(result, as_json, lambda: out.print(
        f"Open this link within {ENROL_MINUTES} minutes, signed in to the admin view, to register a passkey "
        f"for {who} (it works once):\n{link}", markup=False, soft_wrap=True))


COMMANDS = (keygen, accept_roles, passkey)
