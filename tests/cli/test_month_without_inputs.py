"""`run` and `plan` refuse a month without inputs before any Dagster run; a launched run fails at its first step."""

from __future__ import annotations

import dagster as dg
import pytest
from click.testing import CliRunner

from assets.monthly import monthly_assets
from assets.partitions import monthly_partitions
from batch_cli.instance import instance, prepare
from batch_cli.main import main
from pipelines.definitions import defs
from tests.signing import ticket_tags

MONTH = monthly_partitions.get_partition_keys()[-1]


@pytest.mark.parametrize("command", ["run", "plan"])
def test_run_and_plan_refuse_a_month_without_inputs_before_any_dagster_run(home, command):
    result = CliRunner().invoke(main, [command, MONTH, "--actor", "alice"], catch_exceptions=False)

    assert result.exit_code == 1
    assert f"No inputs have landed for {MONTH}: looked in {home / 'landing' / MONTH}" in result.stderr
    assert f"batch-admin demo-data {MONTH}" in result.stderr and "Traceback" not in result.output
    assert not list(home.glob("*.db"))  # refused before even the control store was opened
    prepare()
    assert instance().get_runs_count() == 0


def test_a_run_launched_for_a_month_without_inputs_fails_at_its_first_step_with_the_same_sentence(home):
    refused = CliRunner().invoke(main, ["run", MONTH, "--actor", "alice"]).stderr
    prepare()
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as test_instance:
        result = dg.materialize(
            [a for a in monthly_assets if a.key.to_user_string() != "final_allocation"], partition_key=MONTH,
            instance=test_instance, tags=ticket_tags("alice", "__ephemeral_asset_job__", MONTH),
            resources=defs.resources, raise_on_error=False)

    assert not result.success
    started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    failure, = (e for e in result.all_events if e.is_step_failure)
    assert started == ["landed_inputs"] and failure.step_key == "landed_inputs"
    assert failure.step_failure_data.error.cause is None
    assert f"Failure: {refused.removeprefix('error: ').strip()}" in failure.step_failure_data.error.message
