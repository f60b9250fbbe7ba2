"""Dagster resources: the control store, the home folder's stores and the alert sinks.

Each is configured with `dg.EnvVar` in pipelines/definitions.py, so the environment is read when a
run or a sensor tick starts, never at import; a setting left as None (its variable unset, as under a
plain `dagster dev`) is the default resources.settings.Settings derives, read at the same moment.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from resources.alert_delivery import AlertRaiser, build_dispatcher
from resources.control_store import ControlStore
from resources.settings import Settings, is_embedded
from resources.storage import ExportStore


class ControlStoreResource(dg.ConfigurableResource):
    """The control store: one engine per process, opened when execution starts and disposed after."""

    url: str | None = None
    roles_file: str | None = ""
    # The home folder (BATCH_ADMIN_HOME): a control store other than its SQLite one refuses demo keys.
    home: str | None = None
    _store: ControlStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        url, roles, home = self.url, self.roles_file, self.home
        if url is None or roles is None or home is None:
            settings = Settings.from_env()
            url = settings.control_url if url is None else url
            roles = str(settings.roles_file) if roles is None else roles
            home = str(settings.home) if home is None else home
        self._store = ControlStore(url, roles_file=roles or None, embedded=not home or is_embedded(url, home))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def store(self) -> ControlStore:
        if self._store is None:
            raise dg.DagsterInvariantViolationError("The control store is used outside an execution.")
        return self._store


class StorageResource(dg.ConfigurableResource):
    """The home folder holding landing inputs and versioned exports."""

    home: str | None = None

    def home_path(self) -> Path:
        return Settings.from_env().home if self.home is None else Path(self.home).expanduser().resolve()

    def exports(self) -> ExportStore:
        return ExportStore(self.home_path())


class AlertsResource(dg.ConfigurableResource):
    """Alert sinks: the alerts table always, the log, and a webhook when configured."""

    webhook_url: str = ""

    def dispatcher(self, store: ControlStore) -> AlertRaiser:
        return build_dispatcher(store, self.webhook_url or None, logging.getLogger("batch_admin.alerts"))
