"""The resources' settings: an EnvVar where the variable is set, else the default Settings derives.

`batch-admin ui` exports every setting before it starts Dagster (resources/settings.py), so there each
resource reads its EnvVar when a run or a sensor tick starts. A plain `dagster dev -w workspace.yaml`
from the repository root sets none: a resource then takes, when a run or tick starts, the value
Settings derives for the embedded home (./.batch_admin), the one `batch-admin ui` would export. A
deployment whose settings are incomplete (PostgreSQL without BATCH_ADMIN_HOME, Celery without a
broker) fails here, once, as the code location's load error, not at every sensor tick.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from resources.settings import Settings


def setting(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """dg.EnvVar(name) when the variable is set; None (the resource asks Settings at run time) when not."""
    env = os.environ if environ is None else environ
    Settings.from_env(env)  # SettingsError: the one clear error of an incomplete deployment
    return dg.EnvVar(name) if env.get(name) else None
