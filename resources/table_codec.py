"""Values to folders and back: every DataFrame as its own Parquet file, everything else as tagged JSON.

One value is one folder:

    value.json                        the value, each DataFrame replaced by {"$table": "<file>"}
    000_instance.requests.parquet     one file per DataFrame, named by its field path

JSON keeps what plain JSON would lose through explicit tags: {"$dataclass": "module:qualname",
"fields": {...}}, {"$set": [...]}, {"$frozenset": [...]}, {"$tuple": [...]}, {"$dict": {...}} (string
keys), {"$pairs": [[key, value], ...]} (any other keys, so dict[int, int] keeps int keys),
{"$float": "nan"}, {"$date": ...}, {"$datetime": ..., "zone": ...}, {"$timestamp": ..., "zone": ...}.
Anything else is refused with a TypeError naming its type and field path; nothing is ever pickled.
Dataclasses are rebuilt only from modules under an allowed prefix, so a stored name can never import
arbitrary code. Parquet has one null, so object columns also record whether theirs was pd.NA or NaN.

A local folder is written beside its target and renamed into place; other fsspec filesystems
(object stores have no atomic rename) get the tables first and value.json last, and a folder without
value.json reads as missing. This module imports nothing from Dagster.

A table is written once: given TableOrigins, a DataFrame equal to one the step loaded (handed on unchanged, or a
copy: equal as Arrow, with the same pandas metadata) is a hard link to the file that one was read from (a copy
on an object store), not a second encoding of it; a table file is never changed once written, so the link
keeps the content when the upstream folder is replaced.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
import math
import os
import re
import shutil
import uuid
import weakref
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from upath import UPath

VALUE_FILE = "value.json"
# Parquet has one null; which marker (None, NaN, pd.NA) an object column used is kept here.
MISSING_KEY = b"batch_admin.object_missing"
MISSING_MARKERS = {"NA": pd.NA, "nan": np.nan}
ROOT = "value"
DEFAULT_ALLOWED_PREFIXES = ("batch.", "solvers.", "assets.", "resources.", "checks.")
# Held as package names: "batch." allows batch and batch.plan, never batchfoo.
_allowed_packages: set[str] = {prefix.rstrip(".") for prefix in DEFAULT_ALLOWED_PREFIXES}


def allow_module_prefix(prefix: str) -> None:
    """Let dataclasses from the module or package `prefix` (e.g. "tests.resources.") be stored and loaded."""
    _allowed_packages.add(prefix.rstrip("."))


class TableOrigins:
    """The DataFrames loaded by load_value (while they live), each with the file it was read from and its Arrow
    encoding when loaded: what dump_value links instead of writing again."""

    def __init__(self) -> None:
        self._loaded: dict[int, tuple[weakref.ref, UPath, pa.Table]] = {}

    def remember(self, frame: pd.DataFrame, file: UPath, table: pa.Table) -> None:
        key = id(frame)
        self._loaded[key] = (weakref.ref(frame, lambda _gone: self._loaded.pop(key, None)), file, table)

    def source(self, table: pa.Table) -> UPath | None:
        """The file of a loaded DataFrame whose encoding then was `table` (a DataFrame's encoding now), else None:
        the frame handed on unchanged, or a copy of it (the capacity plan's requests are the landed ones)."""
        for _, file, loaded in list(self._loaded.values()):
            if loaded.num_rows == table.num_rows and table.equals(loaded, check_metadata=True):
                return file
        return None


def dump_value(value: Any, folder: UPath, origins: TableOrigins | None = None) -> list[str]:
    """Write `value` as the folder `folder` (replacing it); return the Parquet file names of the value, written or
    (with `origins`) linked to the file an unchanged loaded table came from."""
    encoder = _Encoder(origins, folder)
    # Everything is encoded before anything is written, so a refused value leaves no trace.
    document = json.dumps(encoder.encode(value, ROOT), allow_nan=False, ensure_ascii=False, indent=1)
    if isinstance(folder.fs, LocalFileSystem):
        _replace_local_folder(Path(folder.path), encoder.tables, encoder.links, document)
    else:
        _rewrite_remote_folder(folder, encoder.tables, encoder.links, document)
    return sorted([*encoder.tables, *encoder.links])


def load_value(folder: UPath, origins: TableOrigins | None = None) -> Any:
    """Read the value written by dump_value; FileNotFoundError when the folder holds none. `origins` remembers
    the DataFrames read and their files."""
    try:
        document = json.loads((folder / VALUE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"No stored value at {folder}: {VALUE_FILE} is missing.") from None
    return _Decoder(folder, origins).decode(document)


def _module_allowed(module: str) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in _allowed_packages)


def _class_name(cls: type, path: str) -> str:
    """`module:qualname` of a dataclass that may be stored; TypeError for any other."""
    if "<locals>" in cls.__qualname__ or not _module_allowed(cls.__module__):
        raise TypeError(f"Cannot store {cls.__module__}.{cls.__qualname__} at {path}: only dataclasses defined at "
                        f"module level under {sorted(_allowed_packages)} are allowed (see allow_module_prefix).")
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_class(name: str) -> type:
    """The dataclass called `module:qualname`, imported only when its module is allowed."""
    module, _, qualname = name.partition(":")
    if not module or not qualname or not _module_allowed(module):
        raise TypeError(f"Refusing to load class {name!r}: its module is not under {sorted(_allowed_packages)} "
                        f"(see allow_module_prefix).")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise TypeError(f"Cannot load class {name!r}: {exc} (was the class moved since the value was stored?)") from exc
    for attribute in qualname.split("."):
        obj = getattr(obj, attribute, None)
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise TypeError(f"Refusing to load class {name!r}: there is no dataclass of that name.")
    return obj


def _table_file(index: int, path: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.removeprefix(ROOT)).strip("._")[:80]
    return f"{index:03d}_{slug or ROOT}.parquet"


class _Encoder:
    """Turns a value into a JSON document, collecting its DataFrames as Arrow tables."""

    def __init__(self, origins: TableOrigins | None = None, folder: UPath | None = None) -> None:
        self.tables: dict[str, pa.Table] = {}
        self.links: dict[str, UPath] = {}  # file name -> the file it is a link to
        self.origins, self.folder = origins, folder

    def encode(self, value: Any, path: str) -> Any:
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, (np.bool_, np.integer, np.floating, np.str_)):
            return self.encode(value.item(), path)
        if isinstance(value, pd.DataFrame):
            return {"$table": self._add_table(value, path)}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {"$dataclass": _class_name(kind, path),
                    "fields": {f.name: self.encode(getattr(value, f.name), f"{path}.{f.name}")
                               for f in dataclasses.fields(value)}}
        if kind is list:
            return [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if kind is tuple:
            return {"$tuple": [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]}
        if kind in (set, frozenset):
            # Sorted by their JSON so the same set always writes the same file.
            items = sorted((self.encode(item, f"{path}{{}}") for item in value), key=_sort_key)
            return {"$set" if kind is set else "$frozenset": items}
        if kind is dict:
            if all(type(key) is str for key in value):
                return {"$dict": {key: self.encode(item, f"{path}[{key!r}]") for key, item in value.items()}}
            return {"$pairs": [[self.encode(key, f"{path}.<key {key!r}>"), self.encode(item, f"{path}[{key!r}]")]
                               for key, item in value.items()]}
        if kind in (pd.Timestamp, dt.datetime):
            tag = "$timestamp" if kind is pd.Timestamp else "$datetime"
            # An ISO string keeps only the UTC offset; a named zone (Europe/Paris) is kept beside it.
            zone = value.tzinfo if isinstance(value.tzinfo, ZoneInfo) else None
            return {tag: value.isoformat(), **({"zone": zone.key} if zone else {})}
        if kind is dt.date:
            return {"$date": value.isoformat()}
        raise TypeError(f"Cannot store {kind.__module__}.{kind.__qualname__} at {path}: only DataFrames, "
                        f"dataclasses, lists, tuples, sets, dicts, str, int, float, bool, None and dates are stored.")

    def _add_table(self, frame: pd.DataFrame, path: str) -> str:
        table = _arrow_table(frame, path)
        name = _table_file(len(self.tables) + len(self.links), path)
        source = self.origins.source(table) if self.origins is not None else None
        # A table of the folder being replaced is written again: that folder goes before the new one is written.
        if source is not None and self.folder is not None and source.parent.path != self.folder.path:
            self.links[name] = source
        else:
            self.tables[name] = table
        return name


def _arrow_table(frame: pd.DataFrame, path: str) -> pa.Table:
    """The Arrow table a DataFrame is stored as (with its missing markers)."""
    # Without columns Parquet keeps no row count, so the index is kept as a column then.
    preserve_index = None if len(frame.columns) else True
    try:
        table = pa.Table.from_pandas(frame, preserve_index=preserve_index)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise TypeError(f"Cannot store the DataFrame at {path} as Parquet: {exc}") from exc
    if markers := _missing_markers(frame):
        table = table.replace_schema_metadata({**table.schema.metadata, MISSING_KEY: json.dumps(markers).encode()})
    return table


def _missing_markers(frame: pd.DataFrame) -> dict[str, str]:
    """Position -> "NA" or "nan" for object columns whose missing values are all pd.NA or all NaN."""
    markers = {}
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        if column.dtype == object and (missing := column[column.isna()].tolist()):
            if all(value is pd.NA for value in missing):
                markers[str(position)] = "NA"
            elif all(isinstance(value, float) for value in missing):
                markers[str(position)] = "nan"
    return markers


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True, ensure_ascii=False)


class _Decoder:
    """Turns a JSON document back into the value, reading its Parquet files from `folder`."""

    def __init__(self, folder: UPath, origins: TableOrigins | None = None) -> None:
        self.folder, self.origins = folder, origins

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(item) for item in node]
        tag = next(iter(node), None)
        body = node.get(tag)
        match tag:
            case "$table":
                return self._read_table(body)
            case "$dataclass":
                return self._dataclass(body, node["fields"])
            case "$tuple":
                return tuple(self.decode(item) for item in body)
            case "$set":
                return {self.decode(item) for item in body}
            case "$frozenset":
                return frozenset(self.decode(item) for item in body)
            case "$dict":
                return {key: self.decode(item) for key, item in body.items()}
            case "$pairs":
                return {self.decode(key): self.decode(item) for key, item in body}
            case "$float":
                return float(body)
            case "$timestamp":
                stamp = pd.Timestamp(body)
                return stamp.tz_convert(ZoneInfo(node["zone"])) if "zone" in node else stamp
            case "$datetime":
                moment = dt.datetime.fromisoformat(body)
                return moment.astimezone(ZoneInfo(node["zone"])) if "zone" in node else moment
            case "$date":
                return dt.date.fromisoformat(body)
        raise ValueError(f"Unknown tag {tag!r} in {self.folder / VALUE_FILE}.")

    def _dataclass(self, name: str, stored: dict[str, Any]) -> Any:
        cls = _resolve_class(name)
        values = {key: self.decode(item) for key, item in stored.items()}
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = values.keys() - {f.name for f in dataclasses.fields(cls)}
        try:
            if unknown:
                raise TypeError(f"no fields {sorted(unknown)}")
            obj = cls(**{key: item for key, item in values.items() if key in init})
        except TypeError as exc:
            raise TypeError(f"Cannot rebuild {name} from {self.folder / VALUE_FILE} "
                            f"(has the class changed?): {exc}") from exc
        for key in values.keys() - init:
            # Fields outside __init__ are restored as stored; object.__setattr__ also works on frozen classes.
            object.__setattr__(obj, key, values[key])
        return obj

    def _read_table(self, name: str) -> pd.DataFrame:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"Refusing table file {name!r} in {self.folder / VALUE_FILE}: not a plain file name.")
        with (self.folder / name).open("rb") as handle:
            frame = _to_frame(pq.read_table(handle))
        if self.origins is not None:
            # Encoded as dump_value would encode it now (a dictionary's index width may differ from the file's),
            # from a copy: Arrow shares numeric buffers with the frame, which a step may change in place.
            self.origins.remember(frame, self.folder / name, _arrow_table(frame.copy(deep=True), name))
        return frame


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """The DataFrame of `table`, with columns and index levels that held Python objects given them back."""
    frame = table.to_pandas()
    meta = table.schema.pandas_metadata or {}
    columns = meta.get("columns", [])
    markers = json.loads((table.schema.metadata or {}).get(MISSING_KEY, b"{}"))
    # pandas 3 reads object columns of strings as str, and of ints with None as float64;
    # their values are rebuilt as the Python objects that were written, with their missing marker.
    for position, column in enumerate(columns[: frame.shape[1]]):
        if column["numpy_type"] == "object":
            marker = MISSING_MARKERS.get(markers.get(str(position)))
            values = [marker if value is None else value for value in table.column(column["field_name"]).to_pylist()]
            frame.isetitem(position, pd.Series(values, index=frame.index, dtype=object))
    by_field = {column["field_name"]: column for column in columns}
    for level, field_name in enumerate(meta.get("index_columns", [])):
        if not isinstance(field_name, str) or by_field[field_name]["numpy_type"] != "object":
            continue
        levels = [frame.index.get_level_values(i) for i in range(frame.index.nlevels)]
        if levels[level].dtype != object:
            levels[level] = pd.Index(table.column(field_name).to_pylist(), dtype=object, name=levels[level].name)
            frame.index = levels[0] if len(levels) == 1 else pd.MultiIndex.from_arrays(levels)
    return frame


def _write_files(folder: UPath | Path, tables: dict[str, pa.Table], links: dict[str, UPath], document: str) -> None:
    """Tables first, value.json last: value.json marks a complete folder."""
    for name, table in tables.items():
        with (folder / name).open("wb") as handle:
            pq.write_table(table, handle)
    for name, source in links.items():
        if isinstance(folder, Path):
            try:
                os.link(source.path, folder / name)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(source.path, folder / name)
        else:
            folder.fs.copy(source.path, (folder / name).path)  # server-side on an object store
    (folder / VALUE_FILE).write_text(document, encoding="utf-8")


def _replace_local_folder(folder: Path, tables: dict[str, pa.Table], links: dict[str, UPath], document: str) -> None:
    """Write a sibling folder and rename it into place, so readers see the old value or the new one."""
    token = uuid.uuid4().hex
    staging = folder.parent / f".{folder.name}.tmp-{token}"
    retired = folder.parent / f".{folder.name}.old-{token}"
    staging.mkdir(parents=True)
    try:
        _write_files(staging, tables, links, document)
        if folder.exists():
            # POSIX cannot swap two folders in one rename; the old one moves aside for an instant.
            os.replace(folder, retired)
        os.replace(staging, folder)
    except BaseException:
        if retired.exists() and not folder.exists():
            os.replace(retired, folder)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _rewrite_remote_folder(folder: UPath, tables: dict[str, pa.Table], links: dict[str, UPath], document: str) -> None:
    """Uncommit (drop value.json), clear, write tables, commit (value.json last)."""
    fs = folder.fs
    if fs.exists((folder / VALUE_FILE).path):
        fs.rm((folder / VALUE_FILE).path)
    if fs.exists(folder.path):
        fs.rm(folder.path, recursive=True)
    folder.mkdir(parents=True, exist_ok=True)
    _write_files(folder, tables, links, document)
