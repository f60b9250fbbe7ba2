"""Dagster resources: the control store, the export storage and the alert sinks."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from resources.control_store import ControlStore
from resources.settings import Settings


class ControlStoreResource(dg.ConfigurableResource):
    """The control store; its URL comes from the environment at run time unless set here."""

    url: str = ""

    def settings(self) -> Settings:
        return Settings.from_env()

    def store(self) -> ControlStore:
        return ControlStore(self.url or self.settings().control_url)


class StorageResource(dg.ConfigurableResource):
    """The home folder holding landing inputs and versioned exports."""

    home: str = ""

    def home_path(self) -> Path:
        return Path(self.home).resolve() if self.home else Settings.from_env().home

    def exports(self):
        from resources.storage import ExportStore

        return ExportStore(self.home_path())


class AlertsResource(dg.ConfigurableResource):
    """Alert sinks: the alerts table always, the log, and a webhook when configured."""

    webhook_url: str = ""

    def dispatcher(self, store: ControlStore):
        from resources.alert_delivery import build_dispatcher

        return build_dispatcher(store, self.webhook_url or None, logging.getLogger("batch_admin.alerts"))
