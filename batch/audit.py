"""Audit anchors: the hash chain's head as it is written outside the control store.

Every version manifest, final manifest and Dagster materialization carries the head of the audit
chain at that moment. A log rewritten with recomputed hashes, truncated or wiped no longer holds
the entries those anchors name, which `batch-admin audit --verify` reports.
"""

from __future__ import annotations

import re
from typing import Any

# Where the anchor is in Dagster: this metadata entry of these assets' materializations.
ANCHOR_METADATA = "audit anchor"
ANCHORED_ASSETS = ("allocation_export", "final_allocation")
_ANCHOR = re.compile(r"^entry (\d+) of (\d+): ([0-9a-f]{64})$")


def anchor_text(anchor: dict[str, Any]) -> str:
    """One line for Dagster metadata: 'entry 41 of 41: <sha256>'."""
    return f"entry {anchor['last_id']} of {anchor['entries']}: {anchor['last_hash']}"


def parse_anchor_text(text: str, where: str) -> dict[str, Any] | None:
    """The anchor of anchor_text(), None when `text` is not one."""
    match = _ANCHOR.match(text.strip())
    if match is None:
        return None
    return {"last_id": int(match.group(1)), "entries": int(match.group(2)), "last_hash": match.group(3),
            "where": where}
