"""The Dagster instance of the product (dagster.yaml `instance_class`): runs of a month that is not
a monthly partition, or that would load a month whose inputs have not landed, are refused before
anything is written.

Dagster checks a run's partition key only when it creates the run: a malformed key (`2026-13`,
`../x`) raised a ValueError deep in the instance, which the webserver answers with HTTP 500, and an
out-of-range month (`2099-01`) made a run, and a month, that can never be planned. Here every run's
partition tags are checked against the monthly partitions first (batch.months), whoever creates it:
a GraphQL `launchRun`, a re-execution, a backfill's runs, the CLI, an in-process run (`dg.materialize`).

A run that executes `landed_inputs` for a month without its required inputs is refused too, with the
sentence `batch-admin run` says (batch.landing): Dagster 1.13 marks every check a run planned
"Execution failed" once that run fails (AssetCheckExecutionRecord.resolve_status, and per partition
asset_check_state: a planned check of a FAILURE run is EXECUTION_FAILED, of any other finished run
SKIPPED), so a run created for such a month would paint the month's blocking checks red although no
check ever ran. Refused before it exists, the launch answers with the sentence and nothing turns red.
A backfill's run is the exception: one month without inputs must not stop the backfill's other months
(the backfill daemon fails a whole backfill on a refusal), so it is created and fails at its first step
with the same sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import yaml

from batch.errors import ControlError
from batch.landing import require_inputs
from batch.months import MonthError, check_planned_month, planned_months
from batch.names import BACKFILL_TAG, PARTITION_TAG
from engine.event_log import KeptSqliteEventLogStorage, KeptSqliteStorage, event_log_dir
from engine.internals import ConfigurableClassData, InstanceRef
from resources.settings import Settings, SettingsError

# Dagster's tags for a run's partition, or for the range of partitions a run covers.
PARTITION_TAGS = (PARTITION_TAG, "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
# The step that loads a month's input files (assets/monthly.py landed_inputs).
LOADING_STEP = "landed_inputs"


class PartitionKeyError(MonthError):
    """A run's partition key that is not one of the monthly partitions."""


def check_partition_tags(tags: Mapping[str, Any] | None) -> None:
    """Every partition tag of a run names a planned month (YYYY-MM, FIRST_MONTH .. next month)."""
    for name in PARTITION_TAGS:
        key = (tags or {}).get(name)
        if key is None:
            continue
        try:
            check_planned_month(key)
        except MonthError as exc:
            months = planned_months()
            raise PartitionKeyError(f"Partition key {key!r} (tag {name}) is refused: {exc} A run's partition "
                                    f"key is a month YYYY-MM from {months[0]} to {months[-1]}; no run was "
                                    "created.") from None


def check_inputs_landed(tags: Mapping[str, Any] | None, step_keys: Sequence[str] | None) -> None:
    """A run of one month that executes the loading step needs that month's inputs (batch.landing's
    ControlError otherwise). A backfill's run, a run that does not load inputs (finalize, unlock, a
    re-execution of later steps) and a run whose steps are not known yet pass; so does a process
    that cannot tell the home (its settings are incomplete: the run's first step says so)."""
    month = (tags or {}).get(PARTITION_TAG)
    if month is None or BACKFILL_TAG in (tags or {}) or step_keys is None or LOADING_STEP not in step_keys:
        return
    try:
        home = Settings.from_env().home
    except SettingsError:
        return
    require_inputs(home, str(month))


def graphql_refusal(exc: Exception) -> Exception:
    """The refusal as the webserver's GraphQL layer answers a user's error: a PythonError result
    naming the key and the rule, HTTP 200 (any other exception makes its answer HTTP 500)."""
    # Imported here, on a refusal only: dagster_graphql takes seconds to import, and only the
    # webserver (which has it loaded already) answers GraphQL; CLI and daemon get the same sentence.
    from dagster_graphql.implementation.utils import UserFacingGraphQLError
    from dagster_graphql.schema.errors import GraphenePythonError
    from dagster_shared.error import SerializableErrorInfo

    refusal = UserFacingGraphQLError(GraphenePythonError(SerializableErrorInfo(str(exc), [], type(exc).__name__)))
    refusal.args = (str(exc),)
    return refusal


class BatchInstance(dg.DagsterInstance):
    """DagsterInstance whose new runs must carry valid monthly partition keys."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """No settings of its own (Dagster asks a custom instance class for them)."""
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> dict[str, Any]:
        """Dagster's defaults for everything dagster.yaml leaves out, except that the default SQLite storage's
        event log keeps a connection per shard (engine/event_log.py; the same files under base_dir)."""
        defaults = dict(InstanceRef.config_defaults(base_dir))
        defaults["storage"] = ConfigurableClassData(KeptSqliteStorage.__module__, KeptSqliteStorage.__name__,
                                                    yaml.dump({"base_dir": base_dir}, default_flow_style=False))
        defaults["event_log_storage"] = ConfigurableClassData(
            KeptSqliteEventLogStorage.__module__, KeptSqliteEventLogStorage.__name__,
            yaml.dump({"base_dir": event_log_dir(base_dir)}, default_flow_style=False))
        return defaults

    def create_run(self, **kwargs: Any) -> dg.DagsterRun:
        """Dagster's create_run, after the partition tags are checked and a run that loads a month's
        inputs has them."""
        try:
            check_partition_tags(kwargs.get("tags"))
            check_inputs_landed(kwargs.get("tags"), executed_steps(kwargs))
        except (PartitionKeyError, ControlError) as exc:
            raise graphql_refusal(exc) from None
        return super().create_run(**kwargs)

    def create_run_for_job(self, job_def: Any, *args: Any, **kwargs: Any) -> dg.DagsterRun:
        """The same checks for a run created in-process (`dg.materialize`, `execute_in_process`, `dagster job
        execute`): Dagster creates those runs without calling create_run on the instance."""
        plan = args[0] if args else kwargs.get("execution_plan")
        steps = list(plan.step_keys_to_execute) if plan is not None else [node.name for node in job_def.nodes]
        try:
            check_partition_tags(kwargs.get("tags"))
            check_inputs_landed(kwargs.get("tags"), steps)
        except (PartitionKeyError, ControlError) as exc:
            raise graphql_refusal(exc) from None
        return super().create_run_for_job(job_def, *args, **kwargs)


def executed_steps(create_run_kwargs: Mapping[str, Any]) -> Sequence[str] | None:
    """The step keys a run to be created will execute: its execution plan's (every caller that creates a
    run to execute passes one), else the explicit selection; None when neither is given."""
    plan = create_run_kwargs.get("execution_plan_snapshot")
    if plan is not None:
        return list(plan.step_keys_to_execute)
    return create_run_kwargs.get("step_keys_to_execute")
