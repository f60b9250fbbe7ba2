"""A month without inputs launched in Dagster (issue 28 item 7): refused before a run exists, with the sentence
`batch-admin run` says, so no check of the month turns red; a backfill's run fails at its first step instead."""

from __future__ import annotations

import dagster as dg
import pytest

from assets.monthly import monthly_assets
from assets.partitions import monthly_partitions
from batch.errors import ControlError
from batch.landing import require_inputs
from batch_cli.instance import prepare
from engine.instance import BACKFILL_TAG, BatchInstance, check_inputs_landed
from pipelines.definitions import defs
from tests.signing import ticket_tags

MONTH = monthly_partitions.get_partition_keys()[-1]
CHAIN = [a for a in monthly_assets if a.key.to_user_string() != "final_allocation"]


def sentence(home) -> str:
    with pytest.raises(ControlError) as said:
        require_inputs(home, MONTH)
    return str(said.value)


def launch(instance: dg.DagsterInstance, **tags: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(CHAIN, partition_key=MONTH, instance=instance, resources=defs.resources,
                          tags={**ticket_tags("alice", "__ephemeral_asset_job__", MONTH), **tags},
                          raise_on_error=False)


def test_a_run_of_a_month_without_inputs_is_refused_before_it_exists_with_the_cli_sentence(home):
    prepare()
    expected = sentence(home)
    assert f"No inputs have landed for {MONTH}: looked in {home / 'landing' / MONTH}" in expected
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert isinstance(instance, BatchInstance)
        with pytest.raises(Exception) as refused:
            launch(instance)
        assert str(refused.value) == expected
        assert instance.get_runs() == []
        # Nothing was planned, so no check of the month reads "Execution failed" (or anything else).
        for check_key in defs.resolve_asset_graph().asset_check_keys:
            assert instance.event_log_storage.get_asset_check_execution_history(check_key, limit=5) == []


def test_a_backfill_run_of_a_month_without_inputs_fails_at_its_first_step_with_the_same_sentence(home):
    prepare()
    expected = sentence(home)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        result = launch(instance, **{BACKFILL_TAG: "b1"})
        assert not result.success
        failed = [e for e in result.all_events if e.is_step_failure]
        assert [e.step_key for e in failed] == ["landed_inputs"]
        assert failed[0].step_failure_data.error.message.strip().endswith(expected)
        assert {e.step_key for e in result.all_events if e.is_step_start} == {"landed_inputs"}  # no later step


def test_only_a_run_that_loads_one_months_inputs_needs_them(home):
    tags = {"dagster/partition": MONTH}
    with pytest.raises(ControlError, match=f"No inputs have landed for {MONTH}"):
        check_inputs_landed(tags, ["landed_inputs", "validated_inputs"])
    check_inputs_landed(tags, ["final_allocation"])  # finalize reads versions, not inputs
    check_inputs_landed(tags, ["allocation_export"])  # a re-execution of later steps reads stored outputs
    check_inputs_landed({**tags, BACKFILL_TAG: "b1"}, ["landed_inputs"])
    check_inputs_landed(None, ["landed_inputs"])  # not partitioned: the step refuses itself
    check_inputs_landed(tags, None)  # steps unknown (no plan): the first step says it
