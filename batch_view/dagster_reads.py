"""What the view reads from the Dagster instance: the latest input validation of a month (its asset check)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from assets.monthly import INPUTS_MEET_EXPECTATIONS
from batch_view.sources import PARTITION_TAG

INPUTS_CHECK = dg.AssetCheckKey(dg.AssetKey("validated_inputs"), INPUTS_MEET_EXPECTATIONS)
# Check executions looked through for a month's latest (newest first): every run validates once.
HISTORY_LIMIT = 200


def latest_input_validation(instance: dg.DagsterInstance, month: str) -> dict[str, Any] | None:
    """The report of the month's latest inputs_meet_expectations evaluation (passed, rules, failures with
    table, column, rule and sample rows), with its run id and time; None when no run validated it."""
    records = instance.event_log_storage.get_asset_check_execution_history(INPUTS_CHECK, limit=HISTORY_LIMIT)
    partitions: dict[str, str | None] = {}
    for record in records:
        event = record.event
        evaluation = event.asset_check_evaluation if event is not None else None
        if event is None or evaluation is None:
            continue  # planned, not evaluated
        # The evaluation event itself may carry no partition: its run's partition tag says the month.
        if record.run_id not in partitions:
            run = instance.get_run_by_id(record.run_id)
            partitions[record.run_id] = record.partition or (run.tags.get(PARTITION_TAG) if run else None)
        if partitions[record.run_id] != month:
            continue
        report = evaluation.metadata.get("report")
        found: dict[str, Any] = report.value if report is not None and isinstance(report.value, dict) else {}
        return {"passed": evaluation.passed, "run_id": record.run_id, "at": event.timestamp, **found}
    return None


def run_status(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The Dagster status of a run (QUEUED, STARTED, ...), None when the instance does not know it."""
    run = instance.get_run_by_id(run_id)
    return run.status.value if run is not None else None
