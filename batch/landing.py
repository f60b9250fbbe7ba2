"""Which input tables a month needs and where they land; the one sentence for a month without them.

Light on purpose (no pandas): `batch-admin run` and `plan` ask it before any Dagster run starts."""

from __future__ import annotations

import hashlib
from pathlib import Path

from batch.errors import ControlError
from batch.names import LANDING_DIR

TABLES = ["resources", "availability", "requests", "eligibility", "actuals"]
REQUIRED_TABLES = ["resources", "requests"]
EXTENSIONS = [".parquet", ".csv"]


def landing_folder(home: Path, month: str) -> Path:
    """Where a month's input files land."""
    return Path(home) / LANDING_DIR / month


def require_inputs(home: Path, month: str) -> None:
    """Refuse (ControlError) a month whose required tables have not landed, naming the folder looked in and
    how to put files there."""
    folder = landing_folder(home, month)
    landed = {p.stem for p in folder.iterdir() if p.is_file() and p.suffix in EXTENSIONS} if folder.is_dir() else set()
    missing = [t for t in REQUIRED_TABLES if t not in landed]
    if not missing:
        return
    what = (f"No inputs have landed for {month}" if not landed & set(TABLES)
            else f"The inputs of {month} lack {' and '.join(missing)}")
    where = f"{folder}" + ("" if folder.is_dir() else ", which does not exist")
    optional = [t for t in TABLES if t not in REQUIRED_TABLES]
    raise ControlError(f"{what}: looked in {where}. Put the month's tables there as Parquet or CSV files named "
                       f"{' and '.join(REQUIRED_TABLES)} (required), {', '.join(optional)} (optional; columns in "
                       f"docs/inputs.md), or make a demo month with `batch-admin demo-data {month}`.")


def fingerprint_files(paths: list[Path]) -> str:
    """sha256 over the files' names and bytes, sorted by name."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def landed_fingerprint(home: Path, month: str) -> str | None:
    """The fingerprint of the month's landed files as batch.inputs.load_landing gives it (InputTables.fingerprint),
    read without pandas; None without a landing folder. It covers every file with a table's extension, so a
    landing that load_landing would refuse (an unknown table, a table twice) never has the fingerprint of one
    it read."""
    folder = landing_folder(home, month)
    if not folder.is_dir():
        return None
    return fingerprint_files([path for path in folder.iterdir()
                              if not path.name.startswith(".") and path.suffix in EXTENSIONS and path.is_file()])
