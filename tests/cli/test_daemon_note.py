"""The no-daemon note is said once per home, not on every run."""

from __future__ import annotations

from click.testing import CliRunner

from assets.partitions import monthly_partitions
from batch_cli.main import main

MONTH = monthly_partitions.get_partition_keys()[-1]


def test_the_no_daemon_note_is_said_on_the_first_run_of_a_home_only(home):
    runner = CliRunner()
    assert runner.invoke(main, ["demo-data", MONTH, "--requests", "40", "--resources", "6"]).exit_code == 0

    first = runner.invoke(main, ["plan", MONTH, "--actor", "alice"], catch_exceptions=False)
    second = runner.invoke(main, ["plan", MONTH, "--actor", "alice"], catch_exceptions=False)

    assert first.exit_code == 0 and second.exit_code == 0, first.stderr + second.stderr
    assert first.stderr.count("no Dagster daemon serves this instance") == 1
    assert "daemon" not in second.stderr
