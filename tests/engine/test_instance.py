"""The product's Dagster instance refuses runs whose partition key is not a monthly partition."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from batch.months import planned_months
from engine.instance import BatchInstance, PartitionKeyError, check_partition_tags

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("config", ["dagster.yaml", "deploy/postgres/dagster.yaml"])
def test_both_instances_refuse_a_run_of_a_bad_month_before_writing_it(config, tmp_path):
    settings = yaml.safe_load((ROOT / config).read_text())
    settings.pop("storage", None)  # the PostgreSQL one's: the instance class is what is tested here
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance, BatchInstance)
        for key in ("2026-13", "../x", "2099-01"):
            with pytest.raises(Exception) as refused:
                instance.create_run(tags={"dagster/partition": key})  # type: ignore[call-arg]
            assert str(refused.value).startswith(f"Partition key {key!r} (tag dagster/partition) is refused")
        assert instance.get_runs() == []


def test_every_partition_tag_must_name_a_planned_month():
    months = planned_months()
    check_partition_tags({"dagster/partition": months[-1], "batch_admin/month": months[-1]})
    check_partition_tags({"dagster/asset_partition_range_start": months[0],
                          "dagster/asset_partition_range_end": months[-1]})
    check_partition_tags(None)  # unpartitioned runs (finalize, unlock)
    with pytest.raises(PartitionKeyError, match=rf"'2026-1' .*YYYY-MM from {months[0]} to {months[-1]}"):
        check_partition_tags({"dagster/asset_partition_range_start": months[0],
                              "dagster/asset_partition_range_end": "2026-1"})
