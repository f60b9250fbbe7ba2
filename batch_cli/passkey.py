"""`batch-admin passkey enroll`: a one-time link, signed with the person's key, that registers a passkey."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from batch.enrolment import make_token
from batch.passkeys import ENROL_MINUTES
from resources.settings import DEFAULT_VIEW_URL


def passkey_command(signer: Callable[[str], Any], actor_from: Callable[[str | None], str | None],
                    emit: Callable[[Any, bool, Callable[[], None]], None], out: Console) -> click.Group:
    """The command group, given the CLI's key loading, actor and printing (batch_cli/main.py)."""

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

    return passkey
