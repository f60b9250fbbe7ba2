"""Month keys: plain arithmetic across year ends, the planned months up to next month."""

from __future__ import annotations

from datetime import date

import pytest

from batch.months import MonthError, check_planned_month, next_month, planned_months, previous_month, trailing_months


@pytest.mark.parametrize(("month", "before", "after"), [("2026-01", "2025-12", "2026-02"),
                                                         ("2026-12", "2026-11", "2027-01")])
def test_the_month_before_and_after_cross_year_ends(month, before, after):
    assert previous_month(month) == before and next_month(month) == after


def test_trailing_months_are_the_most_recent_first():
    assert trailing_months("2026-02", 3) == ["2026-01", "2025-12", "2025-11"]


def test_the_planned_months_run_from_the_first_month_to_next_month():
    months = planned_months(date(2026, 12, 15))
    assert months[0] == "2025-01" and months[-1] == "2027-01" and len(months) == 25
    with pytest.raises(MonthError, match="not one of the monthly partitions"):
        check_planned_month("2027-02", date(2026, 12, 15))
