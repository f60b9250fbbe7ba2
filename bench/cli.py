"""What the benchmarks' command lines share: the month they generate and solve, and the JSON they report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from batch.demo_data import generate_month

# The month `make demo` writes first, and its size and seed (docs/model.md's and docs/performance.md's demo month).
DEMO_MONTH = "2026-12"
DEMO_REQUESTS, DEMO_RESOURCES, DEMO_SEED = 2000, 120, 7


def month_options(parser: argparse.ArgumentParser, *, requests: int, resources: int, time_limit: float,
                  seed: int | None = 0, prefix: str = "") -> None:
    """--requests, --resources and --time-limit (and --seed unless None): the month a benchmark generates and
    solves, and the solver's limit; `prefix` names the month's options (`--scale-requests`)."""
    parser.add_argument(f"--{prefix}requests", type=int, default=requests)
    parser.add_argument(f"--{prefix}resources", type=int, default=resources)
    parser.add_argument("--time-limit", type=float, default=time_limit)
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed)


def demo_tables(month: str = DEMO_MONTH) -> dict[str, pd.DataFrame]:
    """The demo month's landing tables (`batch-admin demo-data` with the demo size and seed)."""
    return generate_month(month, requests=DEMO_REQUESTS, resources=DEMO_RESOURCES, seed=DEMO_SEED)


def emit_json(result: Any, path: Path | None, indent: int = 2) -> None:
    """Print the result as JSON, and write the same text to `path` when one is given."""
    text = json.dumps(result, indent=indent, default=str)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
