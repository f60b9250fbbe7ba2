"""The Dagster entry point: `defs`, the one Definitions object (`dagster dev -m pipelines`, workspace.yaml)."""

from pipelines.definitions import defs

__all__ = ["defs"]
