"""Great Expectations suites for the landing contract (SPEC §2) and the report they produce."""

from __future__ import annotations

import datetime
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from batch.inputs import (
    BOOLEAN_COLUMNS,
    COLUMNS,
    DATE_COLUMNS,
    INTEGER_COLUMNS,
    NULLABLE_INTEGER,
    TABLES,
    InputError,
    InputTables,
    row_label,
    sample_rows,
)

# No usage analytics from a batch job; must be set before great_expectations is imported.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from checks.data_docs import DOCS_SITE, DOCS_SITE_NAME, index_page, site_config  # noqa: E402

# Largest units, capacity or cost the solver accepts: weight (<= ~1e3..1e6) * units summed
# over 100,000 requests must stay far inside CP-SAT's int64 objective.
MAX_UNITS = 2**31 - 1
MAX_COST = 2**31 - 1
SAMPLE_SIZE = 10
DATASOURCE = "landing"
SUITE_PREFIX = "inputs"
# Helper columns computed in pandas for cross-table rules; GE evaluates them.
HELPER_PREFIX = "__"

# GE type names per contract kind (GE reports nullable Int64 as int64).
GE_TYPES = {
    "text": "str",
    "integer": "int64",
    "nullable integer": "int64",
    "boolean": "bool",
    "date": "datetime64[ns]",
}


@dataclass
class RuleFailure:
    """One contract rule that some rows (or the table itself) break."""

    table: str
    column: str
    rule: str
    count: int
    sample_rows: list[dict] = field(default_factory=list)

    def sentence(self) -> str:
        """One sentence naming table, rule, column and the first offending rows."""
        where = f" on column {self.column}" if self.column else ""
        if self.count <= 0:
            return f"Input table {self.table} failed rule '{self.rule}'{where}."
        labels = ", ".join(row_label(self.table, row) for row in self.sample_rows[:3])
        more = ", ..." if self.count > 3 else ""
        first = f" (first: {labels}{more})" if labels else ""
        noun = "row" if self.count == 1 else "rows"
        return f"Input table {self.table} failed rule '{self.rule}'{where} in {self.count} {noun}{first}."


@dataclass
class ValidationReport:
    """Outcome of validating one month's inputs against the contract suites."""

    month: str
    success: bool
    failures: list[RuleFailure]
    checked_rules: int
    data_docs_path: str | None = None

    def summary(self) -> str:
        """One clear sentence first, then one line per failed rule."""
        if self.success:
            return f"Inputs for {self.month} pass all {self.checked_rules} contract rules."
        head = self.failures[0].sentence()
        lines = [head, f"{len(self.failures)} of {self.checked_rules} rules failed for {self.month}:"]
        lines += [f"- {failure.sentence()}" for failure in self.failures]
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise InputError for the first failure (details: the whole summary) unless all passed."""
        if self.success:
            return
        first = self.failures[0]
        raise InputError(
            first.sentence(),
            table=first.table,
            column=first.column or None,
            rule=first.rule,
            count=first.count,
            rows=first.sample_rows,
            details=self.summary(),
        )

    def as_metadata(self) -> dict:
        """Plain JSON-able dict for Dagster metadata."""
        return {
            "month": self.month,
            "success": self.success,
            "checked_rules": self.checked_rules,
            "failed_rules": len(self.failures),
            "failures": [asdict(failure) for failure in self.failures],
            "data_docs_path": self.data_docs_path,
        }


@dataclass
class _Rule:
    """An expectation and the contract words (table, column, rule) it reports under."""

    column: str
    rule: str
    expectation: gxe.Expectation


def _meta(table: str, column: str, rule: str) -> dict[str, str]:
    return {"table": table, "column": column, "rule": rule}


def _kind(table: str, column: str) -> str:
    """The contract type of a column: text, integer, nullable integer, boolean or date."""
    if column in INTEGER_COLUMNS:
        return "nullable integer" if (table, column) in NULLABLE_INTEGER else "integer"
    if column in BOOLEAN_COLUMNS:
        return "boolean"
    if column in DATE_COLUMNS:
        return "date"
    return "text"


def _has_type(series: pd.Series, kind: str) -> bool:
    """Whether the value rules of this kind can run on the column."""
    checks = {
        "text": pd.api.types.is_string_dtype,
        "integer": pd.api.types.is_integer_dtype,
        "nullable integer": pd.api.types.is_integer_dtype,
        "boolean": pd.api.types.is_bool_dtype,
        "date": pd.api.types.is_datetime64_any_dtype,
    }
    return bool(checks[kind](series.dtype)) and series.dtype != object


def month_bounds(month: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day of the month (midnight)."""
    start = pd.Timestamp(f"{month}-01")
    return start, start + pd.offsets.MonthEnd(0)


class _SuiteBuilder:
    """Collects the rules of one table; columns that are absent or mistyped get only those rules."""

    def __init__(self, table: str, frame: pd.DataFrame) -> None:
        self.table = table
        self.frame = frame
        self.rules: list[_Rule] = []
        self.usable: set[str] = set()

    def add(self, reported_column: str, rule: str, expectation_cls: type, **kwargs: Any) -> None:
        """Add one expectation reported as `rule` on `reported_column` of this table."""
        meta = _meta(self.table, reported_column, rule)
        expectation = expectation_cls(meta=meta, description=f"{self.table}: {rule}", **kwargs)
        self.rules.append(_Rule(reported_column, rule, expectation))

    def columns(self) -> None:
        """Every contract column exists and has its contract type."""
        for column in COLUMNS[self.table]:
            self.add(column, "column exists", gxe.ExpectColumnToExist, column=column)
            if column not in self.frame.columns:
                continue
            kind = _kind(self.table, column)
            self.add(column, f"type {kind}", gxe.ExpectColumnValuesToBeOfType,
                     column=column, type_=GE_TYPES[kind])
            if _has_type(self.frame[column], kind):
                self.usable.add(column)

    def ok(self, *columns: str) -> bool:
        return all(column in self.usable for column in columns)

    def not_null(self, *columns: str) -> None:
        for column in columns:
            if self.ok(column):
                self.add(column, f"{column} not null", gxe.ExpectColumnValuesToNotBeNull, column=column)

    def unique(self, column: str) -> None:
        if self.ok(column):
            self.add(column, f"{column} unique", gxe.ExpectColumnValuesToBeUnique, column=column)

    def compound_unique(self, *columns: str) -> None:
        if self.ok(*columns):
            self.add(", ".join(columns), f"one row per {' and '.join(columns)}",
                     gxe.ExpectCompoundColumnsToBeUnique, column_list=list(columns))

    def at_least(self, column: str, minimum: int, strict: bool = False) -> None:
        if self.ok(column):
            rule = f"{column} > {minimum}" if strict else f"{column} >= {minimum}"
            self.add(column, rule, gxe.ExpectColumnValuesToBeBetween,
                     column=column, min_value=minimum, strict_min=strict)

    def at_most(self, column: str, maximum: int) -> None:
        if self.ok(column):
            self.add(column, f"{column} <= {maximum} (solver limit)", gxe.ExpectColumnValuesToBeBetween,
                     column=column, max_value=maximum)

    def between(self, column: str, low: int, high: int) -> None:
        if self.ok(column):
            self.add(column, f"{column} {low}..{high}", gxe.ExpectColumnValuesToBeBetween,
                     column=column, min_value=low, max_value=high)

    def inside_month(self, column: str, month: str) -> None:
        if self.ok(column):
            start, end = month_bounds(month)
            self.add(column, f"{column} inside month {month}", gxe.ExpectColumnValuesToBeBetween,
                     column=column, min_value=start.to_pydatetime(),
                     max_value=(end + pd.Timedelta(days=1) - pd.Timedelta(1, "us")).to_pydatetime())

    def resolves(self, column: str, target: str, known: pd.Series | None) -> None:
        """Every non-null value of `column` is an id of table `target` (a computed flag)."""
        if not self.ok(column):
            return
        flag = f"{HELPER_PREFIX}{column}_in_{target}"
        values = self.frame[column]
        resolved = values.isna() if known is None else values.isna() | values.isin(known)
        self.frame[flag] = resolved.to_numpy(dtype=bool)
        self.add(column, f"{column} exists in {target}", gxe.ExpectColumnValuesToBeInSet,
                 column=flag, value_set=[True])

    def row_count(self) -> None:
        self.add("", "at least one row", gxe.ExpectTableRowCountToBeBetween, min_value=1)


def _known(tables: dict[str, pd.DataFrame], table: str, column: str) -> pd.Series | None:
    """The distinct ids of `table.column` when usable for reference checks."""
    frame = tables.get(table)
    if frame is None or column not in frame.columns:
        return None
    return frame[column].dropna().drop_duplicates()


def build_rules(tables: InputTables) -> dict[str, tuple[pd.DataFrame, list[_Rule]]]:
    """Per landed table: the frame to validate (with helper columns) and its contract rules."""
    present = tables.present()
    month = tables.month
    out: dict[str, tuple[pd.DataFrame, list[_Rule]]] = {}
    resource_ids = _known(present, "resources", "resource_id")
    request_ids = _known(present, "requests", "request_id")
    for table, df in present.items():
        s = _SuiteBuilder(table, df.copy())
        if table in ("resources", "requests"):
            s.row_count()
        s.columns()
        if table == "resources":
            s.not_null("resource_id", "name", "service", "region")
            s.unique("resource_id")
            s.at_least("capacity_units", 0)
            s.at_most("capacity_units", MAX_UNITS)
        elif table == "availability":
            s.not_null("resource_id", "date")
            s.resolves("resource_id", "resources", resource_ids)
            s.inside_month("date", month)
            s.compound_unique("resource_id", "date")
            s.at_least("available_units", 0)
            s.at_most("available_units", MAX_UNITS)
        elif table == "requests":
            s.not_null("request_id", "customer_id", "service", "region")
            s.unique("request_id")
            s.at_least("units", 0, strict=True)
            s.at_most("units", MAX_UNITS)
            s.between("priority", 1, 5)
            s.not_null("must_allocate")
            s.resolves("preferred_resource_id", "resources", resource_ids)
            s.inside_month("earliest_date", month)
            s.inside_month("latest_date", month)
            if s.ok("earliest_date", "latest_date"):
                s.add("earliest_date, latest_date", "earliest_date <= latest_date",
                      gxe.ExpectColumnPairValuesAToBeGreaterThanB,
                      column_A="latest_date", column_B="earliest_date", or_equal=True,
                      ignore_row_if="either_value_is_missing")
            services = _known(present, "resources", "service")
            if s.ok("service") and services is not None:
                s.add("service", "service exists in resources", gxe.ExpectColumnValuesToBeInSet,
                      column="service", value_set=sorted(services.tolist()))
        elif table == "eligibility":
            s.not_null("request_id", "resource_id")
            s.resolves("request_id", "requests", request_ids)
            s.resolves("resource_id", "resources", resource_ids)
            s.compound_unique("request_id", "resource_id")
            s.at_least("cost", 0)
            s.at_most("cost", MAX_COST)
            s.at_least("units", 0, strict=True)
            s.at_most("units", MAX_UNITS)
        elif table == "actuals":
            s.not_null("resource_id", "request_id")
            s.resolves("resource_id", "resources", resource_ids)
            s.resolves("request_id", "requests", request_ids)
            s.at_least("actual_units", 0)
            s.at_most("actual_units", MAX_UNITS)
        out[table] = (s.frame, s.rules)
    return out


def expectation_suites(tables: InputTables) -> dict[str, gx.ExpectationSuite]:
    """The contract as one GE suite per landed table (for inspection and Data Docs)."""
    return {
        table: gx.ExpectationSuite(
            name=f"{SUITE_PREFIX}.{table}", expectations=[r.expectation for r in rules]
        )
        for table, (_, rules) in build_rules(tables).items()
    }


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence GE's progress bars, info logging and library warnings during validation."""
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _failure(table: str, frame: pd.DataFrame, result: Any) -> RuleFailure:
    """A RuleFailure from one failed GE expectation result."""
    meta = result.expectation_config.meta or {}
    details = result.result or {}
    count = int(details.get("unexpected_count") or 0)
    index = details.get("partial_unexpected_index_list") or []
    if result.exception_info and result.exception_info.get("raised_exception"):
        # An expectation that could not run counts as broken for the whole table.
        count = 0
    labels = [i for i in index if not isinstance(i, dict)]
    return RuleFailure(
        table=table,
        column=meta.get("column", ""),
        rule=meta.get("rule", result.expectation_config.type),
        count=count,
        sample_rows=sample_rows(frame, labels, SAMPLE_SIZE) if labels else [],
    )


class _Engine:
    """One ephemeral GE context per process, with its data source, one dataframe asset and batch
    definition per table, and the Data Docs site; each validation replaces the suites and validation
    definitions and starts from an empty validation results store, so nothing of one validation (its
    results, its pages) reaches the next. A run worker forked from the warm workers' forkserver inherits
    the one its warm-up made (~20 ms of context, source and assets, and the compiled page templates)."""

    def __init__(self) -> None:
        self.context: Any = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = self.context.data_sources.add_pandas(DATASOURCE)
        self.batches = {table: source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("whole")
                        for table in TABLES}
        self.definitions: dict[str, Any] = {}
        self.docs_dir: Path | None = None

    def begin(self, data_docs_dir: Path | None) -> None:
        """Forget the results of the last validation; point the Data Docs site at data_docs_dir."""
        store = self.context.validation_results_store
        for key in store.list_keys():
            store.remove_key(key)
        if data_docs_dir is None:
            return
        (Path(data_docs_dir) / DOCS_SITE).mkdir(parents=True, exist_ok=True)
        if data_docs_dir != self.docs_dir:
            self.context.update_data_docs_site(DOCS_SITE_NAME, site_config(data_docs_dir))
            self.docs_dir = Path(data_docs_dir)

    def definition(self, table: str, rules: list[_Rule]) -> Any:
        """The table's validation definition, its suite holding these rules (in place of the last ones)."""
        definition = self.definitions.get(table)
        if definition is None:
            name = f"{SUITE_PREFIX}.{table}"
            # add_or_update: a validation that failed half-way through this may have added the suite.
            suite = self.context.suites.add_or_update(gx.ExpectationSuite(name=name))
            definition = self.context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=name, data=self.batches[table], suite=suite))
            self.definitions[table] = definition
        # One save of the whole list (add_expectation would save the suite once per rule).
        definition.suite.expectations = [rule.expectation for rule in rules]
        definition.suite.save()
        return definition

    def build_docs(self, data_docs_dir: Path) -> str | None:
        """The site's pages of this validation's results; the path of its index page."""
        self.context.build_data_docs(site_names=[DOCS_SITE_NAME])
        return index_page(data_docs_dir)


_engine: _Engine | None = None
# One validation at a time per process: they share the engine's context and its results store.
_engine_lock = threading.Lock()


def _the_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def validate_inputs(tables: InputTables, data_docs_dir: Path | None = None) -> ValidationReport:
    """Validate every landed table against its contract suite with GE; Data Docs when asked.

    A table is validated first with a result format that only says what passed (BASIC when Data Docs are
    wanted: their pages show each rule's observed values; BOOLEAN_ONLY otherwise), and a table with a
    failed rule once more with the full SUMMARY format under the same run id (its result replaces the
    first), whose unexpected rows' indexes name the sample rows: the failures and the pages are those
    of a SUMMARY validation, and a passing table (the usual case) skips GE's index lists of every rule.
    """
    prepared = build_rules(tables)
    failures: list[RuleFailure] = []
    checked = 0
    docs_path: str | None = None
    first_format = "BASIC" if data_docs_dir is not None else "BOOLEAN_ONLY"
    with _engine_lock, _quiet():
        engine = _the_engine()
        engine.begin(data_docs_dir)
        for table in TABLES:
            if table not in prepared:
                continue
            frame, rules = prepared[table]
            frame.index = pd.RangeIndex(len(frame))
            definition = engine.definition(table, rules)
            run_id = RunIdentifier(run_time=datetime.datetime.now(datetime.UTC))
            outcome = definition.run(batch_parameters={"dataframe": frame}, run_id=run_id,
                                     result_format={"result_format": first_format})
            checked += len(outcome.results)
            if outcome.success:
                continue
            outcome = definition.run(batch_parameters={"dataframe": frame}, run_id=run_id, result_format={
                "result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE})
            rule_order = {r.rule + "|" + r.column: i for i, r in enumerate(rules)}
            failed = [_failure(table, frame, r) for r in outcome.results if not r.success]
            failed.sort(key=lambda f: rule_order.get(f.rule + "|" + f.column, len(rules)))
            failures.extend(failed)
        if data_docs_dir is not None:
            docs_path = engine.build_docs(data_docs_dir)
    return ValidationReport(
        month=tables.month,
        success=not failures,
        failures=failures,
        checked_rules=checked,
        data_docs_path=docs_path,
    )
