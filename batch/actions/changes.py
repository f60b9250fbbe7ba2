"""Change what the next run of a month uses: its parameters, its pins and exclusions.

Imported on its own (not by `batch.actions`): it loads the solver's parameter schema and, for a pin
or exclusion, the month's landed inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batch.actions.checks import expect, may
from batch.actions.outcome import Outcome
from batch.adjustment_log import describe
from batch.adjustments import check_adjustment
from batch.errors import ControlError
from batch.identity import Signed
from batch.params import ParamError, check_key, validate
from batch.ports import ControlPort

ADJUST_KINDS = ("pin", "exclude", "unpin", "include", "clear")


def params_details(assignments: dict[str, Any], unsets: list[str]) -> dict[str, Any]:
    """What a parameter change signs: each key set to its validated value, or None to unset it."""
    if not assignments and not unsets:
        raise ControlError("Give at least one --set KEY=VALUE or --unset KEY (`batch-admin params --help` lists them).")
    changes = {key: validate(key, raw) for key, raw in assignments.items()}
    for key in unsets:
        if check_key(key) in changes:
            raise ParamError(f"Parameter {key!r} is both set and unset; give one of them.")
        changes[key] = None
    return {"changes": changes}


def set_params(store: ControlPort, signed: Signed) -> Outcome:
    """Set or unset parameters of a month (details: changes, from params_details), signed by an admin."""
    month = expect(signed, "params")
    changes = signed.details.get("changes")
    if not isinstance(changes, dict) or not changes:
        raise ControlError("A parameter change names at least one parameter (details: changes).")
    for key, value in changes.items():  # what is stored is valid, whoever signed it
        check_key(key) if value is None else validate(key, value)
    who = may(store, "params", signed.actor, month)
    store.guard_write(month, who, "change parameters of")
    current = store.set_params(signed)
    return Outcome("params", who, month, f"Parameters of {month} changed.", params=current)


def adjust_details(kind: str, value: str | None, note: str) -> dict[str, Any]:
    """What an adjustment signs, from one of pin REQ=RES, exclude REQ, unpin REQ, include REQ or clear."""
    if kind not in ADJUST_KINDS:
        raise ControlError(f"An adjustment is one of {', '.join(ADJUST_KINDS)}, not {kind!r}.")
    if kind == "pin" and "=" not in str(value):
        raise ControlError(f"--pin {value!r} must look like REQUEST_ID=RESOURCE_ID.")
    if kind == "pin":
        request_id, _, resource_id = (part.strip() for part in str(value).partition("="))
    else:
        request_id, resource_id = str(value or "").strip(), ""
    return {"kind": kind, "request_id": None if kind == "clear" else request_id, "resource_id": resource_id or None,
            "note": note}


def adjust(store: ControlPort, signed: Signed, *, home: Path) -> Outcome:
    """Pin, exclude, unpin, include or clear (details from adjust_details), signed by an admin; a pin or an
    exclusion names a request (and resource) landed under `home` for the month."""
    month = expect(signed, "adjust")
    d = signed.details
    who = may(store, "adjust", signed.actor, month)
    store.guard_write(month, who, "adjust")
    if d.get("kind") in ("pin", "exclude"):  # undoing names what is in force, not what landed
        check_adjustment(home, month, str(d.get("kind")), str(d.get("request_id")), d.get("resource_id") or None)
    store.add_adjustment(signed)
    return Outcome("adjust", who, month, f"{month}: {describe({**d, 'note': None})}; the next run honours it.")
