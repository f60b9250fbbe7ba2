"""A month whose required tables have not landed is refused with the folder and how to fill it."""

from __future__ import annotations

import pytest

from batch.errors import ControlError
from batch.landing import require_inputs


def test_a_month_without_a_landing_folder_names_the_folder_and_how_to_put_files_there(tmp_path):
    with pytest.raises(ControlError) as caught:
        require_inputs(tmp_path, "2027-01")

    message = str(caught.value)
    assert message.startswith(f"No inputs have landed for 2027-01: looked in {tmp_path / 'landing' / '2027-01'}, "
                              f"which does not exist.")
    assert "resources and requests (required)" in message and "`batch-admin demo-data 2027-01`" in message


def test_a_month_missing_one_required_table_names_it(tmp_path):
    folder = tmp_path / "landing" / "2027-01"
    folder.mkdir(parents=True)
    (folder / "resources.csv").write_text("resource_id\n")
    (folder / "requests.txt").write_text("not an input table")

    with pytest.raises(ControlError, match="The inputs of 2027-01 lack requests: looked in "):
        require_inputs(tmp_path, "2027-01")
    (folder / "requests.parquet").write_bytes(b"")
    require_inputs(tmp_path, "2027-01")  # both required tables are there: their contents are load_landing's
