"""The audit anchors kept in a Dagster instance's event log: the chain's head that each materialization of
the monthly assets wrote into its metadata. `batch-admin audit --verify` and the admin view's "Verify the
chain" both check the audit chain against them."""

from __future__ import annotations

from typing import Any

import dagster as dg

from batch.audit import ANCHOR_METADATA, ANCHORED_ASSETS, parse_anchor_text

LIMIT = 10_000


def event_log_anchors(instance: dg.DagsterInstance, limit: int = LIMIT) -> list[dict[str, Any]]:
    """Every anchor the instance's materializations of the anchored assets carry, newest first per asset."""
    found = []
    for asset in ANCHORED_ASSETS:
        for record in instance.fetch_materializations(dg.AssetKey(asset), limit=limit).records:
            materialization = record.asset_materialization
            if materialization is None:
                continue
            text = getattr(materialization.metadata.get(ANCHOR_METADATA), "text", None)
            if text:
                where = f"the Dagster event log ({asset} {materialization.partition or ''}, run {record.run_id[:8]})"
                anchor = parse_anchor_text(text, where)
                if anchor is not None:
                    found.append(anchor)
    return found
