"""The Dagster instance of the product (dagster.yaml `instance_class`): runs of a month that is not
a monthly partition are refused before anything is written.

Dagster checks a run's partition key only when it creates the run: a malformed key (`2026-13`,
`../x`) raised a ValueError deep in the instance, which the webserver answers with HTTP 500, and an
out-of-range month (`2099-01`) made a run, and a month, that can never be planned. Here every run's
partition tags are checked against the monthly partitions first (batch.months), whoever creates it:
a GraphQL `launchRun`, a re-execution, a backfill's runs, the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from batch.months import MonthError, check_planned_month, planned_months
from resources.dagster_internals import InstanceRef

# Dagster's tags for a run's partition, or for the range of partitions a run covers.
PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


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


def graphql_refusal(exc: PartitionKeyError) -> Exception:
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
        """Dagster's defaults for everything dagster.yaml leaves out."""
        return dict(InstanceRef.config_defaults(base_dir))

    def create_run(self, **kwargs: Any) -> dg.DagsterRun:
        """Dagster's create_run, after the partition tags are checked."""
        try:
            check_partition_tags(kwargs.get("tags"))
        except PartitionKeyError as exc:
            raise graphql_refusal(exc) from None
        return super().create_run(**kwargs)
