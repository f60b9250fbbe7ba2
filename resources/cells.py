"""Spreadsheet safety: text a spreadsheet would run as a formula is neutralized (OWASP, CSV injection)."""

from __future__ import annotations

from typing import Any

import pandas as pd

# Cells starting with these characters are neutralized.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"


def sanitize_cell(value: Any) -> Any:
    """Neutralize text a spreadsheet would run as a formula (OWASP); other values pass through."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def sanitize_series(series: pd.Series) -> pd.Series:
    """Vectorized sanitize_cell for a column of text."""
    text = series.astype("string")
    risky = text.str.contains(_FORMULA_PATTERN, regex=True, na=False)
    if not risky.any():
        return series
    return text.where(~risky, "'" + text).astype(object).where(text.notna(), None)
