"""The resources' settings: EnvVars where set, the embedded default where not, one error when incomplete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipelines.environment import setting
from resources.dagster_resources import ControlStoreResource, StorageResource
from resources.io_manager import ParquetIOManagerResource
from resources.settings import CONTROL_VAR, HOME_VAR, IO_BASE_VAR, POSTGRES_VAR, ROLES_VAR, Settings, SettingsError
from tests.e2e.conftest import ENV_NAMES

VARS = (CONTROL_VAR, HOME_VAR, IO_BASE_VAR, ROLES_VAR)


def test_a_set_variable_is_an_env_var_and_an_unset_one_is_left_to_settings():
    assert all(setting(name, {}) is None for name in VARS)
    found = setting(CONTROL_VAR, {CONTROL_VAR: "sqlite:///x.db"})
    assert isinstance(found, dg.EnvVar) and found.env_var_name == CONTROL_VAR


def test_postgres_without_a_home_is_one_clear_error():
    with pytest.raises(SettingsError, match=f"{POSTGRES_VAR} is set .* but {HOME_VAR} is not"):
        setting(CONTROL_VAR, {POSTGRES_VAR: "postgresql://postgres@127.0.0.1:5432/x"})


def test_resources_without_settings_use_those_of_the_embedded_home(home):
    expected = Settings.from_env()
    control = ControlStoreResource(url=None, roles_file=None)
    control.setup_for_execution(dg.build_init_resource_context())
    try:
        assert control.store().url == expected.control_url
        assert control.store().roles_file == expected.roles_file
    finally:
        control.teardown_after_execution(dg.build_init_resource_context())
    assert StorageResource(home=None).home_path() == expected.home == Path(home).resolve()
    manager = ParquetIOManagerResource(base_url=None).create_io_manager(dg.build_init_resource_context())
    assert str(manager._base_path) == expected.io_base


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in ENV_NAMES}, **extra}


def test_the_code_location_of_an_incomplete_deployment_fails_to_load_with_one_clear_error(tmp_path):
    # (With nothing set it loads: tests/e2e/test_plain_dagster_dev.py serves it.)
    load = [sys.executable, "-c", "import pipelines.definitions"]
    done = subprocess.run(load, cwd=tmp_path, env=clean_env(**{POSTGRES_VAR: "postgresql://postgres@127.0.0.1/x"}),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.count(f"SettingsError: {POSTGRES_VAR} is set (production) but {HOME_VAR} is not") == 1
