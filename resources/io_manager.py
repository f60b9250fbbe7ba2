"""The IO manager: every value passed between steps is a folder of Parquet tables plus value.json.

Set it as the "io_manager" resource with ``ParquetIOManagerResource(base_url=dg.EnvVar("BATCH_ADMIN_IO_BASE"))``.
The base is a local folder in the embedded default and any fsspec URL (``s3://bucket/prefix``) in
production. Layout under the base (folders, see resources/table_codec.py for their content):

    <asset key path>/<partition key>/       a partitioned asset, one folder per partition
    <asset key path>/                       an unpartitioned asset
    <run id>/<step key>/<output>[/<mapping key>]   an op's output inside a graph asset or job
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from resources.settings import IO_BASE_VAR, Settings
from resources.table_codec import TableOrigins, dump_value, load_value


class ParquetIOManager(dg.UPathIOManager):
    """Stores each output as a value folder under a UPath base; never pickles."""

    # Each value is a folder, not a file: no suffix is added to its path.
    extension = ""

    @property
    def storage_options(self) -> dict[str, Any]:
        # Dagster's version reads UPath._kwargs, which universal_pathlib 0.3 no longer has.
        return dict(self._base_path.storage_options)

    @cached_property
    def origins(self) -> TableOrigins:
        """The tables this step loaded: an output that hands one on unchanged links its file (written once per run)."""
        return TableOrigins()

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        tables = dump_value(obj, path, self.origins)
        context.add_output_metadata({"parquet_tables": len(tables)})

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        # Fan-in inputs (a .collect() of dynamic outputs) need nothing here: Dagster loads each
        # upstream output through this method and hands the step the list.
        return load_value(path, self.origins)


class ParquetIOManagerResource(dg.ConfigurableIOManagerFactory):
    """The Parquet IO manager rooted at base_url, a folder or an fsspec URL."""

    base_url: str | None = Field(default=None, description=f"Folder or fsspec URL of step outputs; set with "
                                                        f"dg.EnvVar({IO_BASE_VAR!r}); None: Settings' default.")
    storage_options: dict[str, Any] = Field(default_factory=dict,
                                            description="Passed to the fsspec filesystem (credentials, endpoint).")

    def create_io_manager(self, context: dg.InitResourceContext) -> ParquetIOManager:
        base_url = Settings.from_env().io_base if self.base_url is None else self.base_url
        if not base_url.strip():
            # No local fallback: a production run writing to a worker's own disk would lose its outputs.
            raise dg.Failure(description=f"{IO_BASE_VAR} is not set: point it at the folder or fsspec URL "
                                         f"(e.g. s3://bucket/batch-admin/io) where runs keep the tables they pass on.")
        return ParquetIOManager(base_path=UPath(base_url.strip(), **self.storage_options))
