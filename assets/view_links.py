"""Links from a month's Dagster metadata to its pages in the admin view (the reader follows these; the file
paths beside them are for data engineers on the host).

The view's public origin: the deployment's BATCH_ADMIN_ORIGIN (the origin its passkeys are made for),
else BATCH_ADMIN_VIEW_URL (`batch-admin ui` sets it for the Dagster processes it starts), else the
embedded default http://localhost:3000.
"""

from __future__ import annotations

from urllib.parse import quote

import dagster as dg

from resources.settings import view_origin


def month_url(month: str) -> str:
    return f"{view_origin()}/month/{quote(month)}"


def report_url(month: str, version: int) -> str:
    return f"{month_url(month)}/report/{int(version)}"


def view_links(month: str, version: int | None = None) -> dict[str, dg.MetadataValue]:
    """The month page in the admin view, and the version's report page when a version is named."""
    links: dict[str, dg.MetadataValue] = {"month page": dg.MetadataValue.url(month_url(month))}
    if version is not None:
        links["report"] = dg.MetadataValue.url(report_url(month, version))
    return links
