"""Holiday calendar: movable feasts against published dates, fixed days, bad specs."""

from __future__ import annotations

from datetime import date

import pytest

from shoprec.errors import ConfigError
from shoprec.holidays import black_friday, easter, holiday_dates, mothers_day_uk


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        (2010, date(2010, 4, 4)),
        (2011, date(2011, 4, 24)),
        (2019, date(2019, 4, 21)),
        (2024, date(2024, 3, 31)),
        (2038, date(2038, 4, 25)),
    ],
)
def test_easter_sunday(year, expected):
    assert easter(year) == expected


def test_black_friday_and_mothering_sunday():
    assert [black_friday(y) for y in (2010, 2011, 2024)] == [date(2010, 11, 26), date(2011, 11, 25), date(2024, 11, 29)]
    assert [mothers_day_uk(y) for y in (2011, 2024)] == [date(2011, 4, 3), date(2024, 3, 10)]


def test_holiday_dates_are_sorted_unique_and_skip_missing_days():
    got = holiday_dates(["12-25", "Easter", "02-29", "12-25"], [2011, 2012])
    assert got == [date(2011, 4, 24), date(2011, 12, 25), date(2012, 2, 29), date(2012, 4, 8), date(2012, 12, 25)]


@pytest.mark.parametrize("spec", ["13-01", "02-30", "christmas", "12/25"])
def test_a_bad_spec_is_a_config_error_naming_it(spec):
    with pytest.raises(ConfigError, match=r"features\.holidays"):
        holiday_dates([spec], [2011])
