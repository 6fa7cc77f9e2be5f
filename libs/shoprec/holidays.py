"""Holiday dates from the short specs of ``features.holidays`` (pure Python, no Spark).

A spec is either a fixed day ``"MM-DD"`` or the name of a movable holiday:

- ``easter``: Easter Sunday (Gregorian calendar, the anonymous "Meeus/Jones/Butcher" computus)
- ``black_friday``: the day after the fourth Thursday of November (US Thanksgiving)
- ``mothers_day_uk``: Mothering Sunday, the fourth Sunday of Lent = Easter Sunday - 21 days
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta

from shoprec.errors import ConfigError

_FIXED = re.compile(r"^(\d{2})-(\d{2})$")


def easter(year: int) -> date:
    """Easter Sunday of ``year`` in the Gregorian calendar."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l = (32 + 2 * e + 2 * i - h - k) % 7  # noqa: E741 - the algorithm's own name
    m = (a + 11 * h + 22 * l) // 451
    month, day = divmod(h + l - 7 * m + 114, 31)
    return date(year, month, day + 1)


def black_friday(year: int) -> date:
    """The Friday after the fourth Thursday of November."""
    first = date(year, 11, 1)
    first_thursday = first + timedelta(days=(3 - first.weekday()) % 7)
    return first_thursday + timedelta(weeks=3, days=1)


def mothers_day_uk(year: int) -> date:
    """Mothering Sunday (UK): three weeks before Easter Sunday."""
    return easter(year) - timedelta(days=21)


MOVABLE: dict[str, Callable[[int], date]] = {
    "easter": easter,
    "black_friday": black_friday,
    "mothers_day_uk": mothers_day_uk,
}


def holiday_dates(specs: Sequence[str], years: Iterable[int]) -> list[date]:
    """Every holiday of ``specs`` in each of ``years``, sorted and without repeats.

    A fixed day that does not exist in a year ("02-29" outside leap years) is skipped
    for that year. An unknown spec is a ``ConfigError`` that names it.

    >>> holiday_dates(["12-25", "easter"], [2011])
    [datetime.date(2011, 4, 24), datetime.date(2011, 12, 25)]
    """
    rules = [_rule(spec) for spec in specs]
    out: set[date] = set()
    for year in years:
        for rule in rules:
            day = rule(year)
            if day is not None:
                out.add(day)
    return sorted(out)


def is_spec(spec: object) -> bool:
    """A spec ``holiday_dates`` takes (config load checks ``features.holidays`` with it)."""
    try:
        _rule(str(spec))
    except ConfigError:
        return False
    return True


def _rule(spec: str) -> Callable[[int], date | None]:
    key = str(spec).strip().lower()
    if key in MOVABLE:
        return MOVABLE[key]
    fixed = _FIXED.match(key)
    if fixed:
        month, day = int(fixed.group(1)), int(fixed.group(2))
        try:
            date(2000, month, day)  # a leap year: accepts 02-29, rejects 02-30 and 13-01
        except ValueError:
            raise ConfigError(f"features.holidays: {spec!r} is not a day of the year (MM-DD)") from None
        return lambda year: _fixed_day(year, month, day)
    raise ConfigError(
        f"features.holidays: unknown holiday {spec!r}",
        hint=f'use "MM-DD" for a fixed day or one of: {", ".join(sorted(MOVABLE))}',
    )


def _fixed_day(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:  # 02-29 in a common year
        return None
