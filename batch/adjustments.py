"""Admins' pins and exclusions are checked against the month's landed inputs before they are recorded."""

from __future__ import annotations

from pathlib import Path

from batch.errors import ControlError
from batch.inputs import InputError, load_landing

KIND_PIN = "pin"
KIND_EXCLUDE = "exclude"


def check_adjustment(home: Path, month: str, kind: str, request_id: str, resource_id: str | None = None) -> None:
    """Refuse (ControlError) a pin or exclusion whose request or resource did not land for the month,
    and a pin to a resource the request may not use (another service or region, or no eligible pair)."""
    try:
        tables = load_landing(home, month)
    except InputError as exc:
        raise ControlError(f"The inputs of {month} cannot be read, so the adjustment cannot be checked: "
                           f"{str(exc).splitlines()[0]}") from None
    if tables.requests is None or tables.resources is None:
        raise ControlError(f"No inputs have landed for {month}; pins and exclusions name landed requests "
                           f"and resources.")
    requests = tables.requests.set_index("request_id")
    if request_id not in requests.index:
        raise ControlError(f"Request {request_id} is not among the {len(requests):,} requests landed for {month}; "
                           f"pins and exclusions must name an existing request_id.")
    if kind != KIND_PIN:
        return
    resources = tables.resources.set_index("resource_id")
    if resource_id not in resources.index:
        raise ControlError(f"Resource {resource_id} is not among the {len(resources):,} resources landed for "
                           f"{month}; a pin must name an existing resource_id.")
    request, resource = requests.loc[request_id], resources.loc[resource_id]
    if tables.eligibility is not None:
        pairs = tables.eligibility
        if not ((pairs["request_id"] == request_id) & (pairs["resource_id"] == resource_id)).any():
            raise ControlError(f"Request {request_id} may not use resource {resource_id}: the pair is not in "
                               f"the eligibility table of {month}.")
    elif (request["service"], request["region"]) != (resource["service"], resource["region"]):
        raise ControlError(f"Request {request_id} ({request['service']}, {request['region']}) may not use resource "
                           f"{resource_id} ({resource['service']}, {resource['region']}): a request goes to a "
                           f"resource of its own service and region.")
