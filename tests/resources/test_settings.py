"""Settings: the embedded default needs nothing; production never falls back to a local folder."""

from __future__ import annotations

import pytest

from resources.settings import Settings, SettingsError


def test_the_embedded_default_derives_every_setting_from_the_home_folder(tmp_path):
    settings = Settings.from_env({"BATCH_ADMIN_HOME": str(tmp_path)})
    assert settings.control_url == f"sqlite:///{tmp_path / 'control.db'}"
    assert settings.io_base == str(tmp_path / "dagster" / "io")
    env = settings.environment()
    assert env["DAGSTER_HOME"] == str(tmp_path / "dagster") and env["BATCH_ADMIN_IO_BASE"] == settings.io_base


def test_production_without_a_home_folder_is_refused_with_the_variable_named():
    with pytest.raises(SettingsError, match="BATCH_ADMIN_HOME is not"):
        Settings.from_env({"BATCH_ADMIN_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/x"})


def test_production_uses_the_postgres_url_with_the_psycopg2_driver_for_dagster(tmp_path):
    settings = Settings.from_env({"BATCH_ADMIN_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/x",
                                  "BATCH_ADMIN_HOME": str(tmp_path), "BATCH_ADMIN_IO_BASE": "s3://bucket/io"})
    assert settings.control_url == "postgresql://postgres@127.0.0.1:5432/x"
    assert settings.io_base == "s3://bucket/io"
    assert settings.environment()["BATCH_ADMIN_POSTGRES_URL"].startswith("postgresql+psycopg2://")
