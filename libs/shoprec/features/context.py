"""Context of an event: hour, weekday, month, season and how close the next holiday is.

``with_context`` works on any DataFrame with a timestamp column, so later stages use it
for the context of ``as_of`` itself (one row) as well as for history events.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import FeaturesConfig
from shoprec.features.confidence import known_product_events
from shoprec.holidays import holiday_dates
from shoprec.split import TemporalSplit

WINTER, SPRING, SUMMER, AUTUMN = "winter", "spring", "summer", "autumn"

CONTEXT_COLUMNS = (C.HOUR, C.WEEKDAY, C.MONTH, C.SEASON, C.DAYS_TO_HOLIDAY)


def season(month: Column) -> Column:
    """Meteorological season of the northern hemisphere (Dec-Feb winter, ...)."""
    return (
        F.when(month.isin(12, 1, 2), F.lit(WINTER))
        .when(month.isin(3, 4, 5), F.lit(SPRING))
        .when(month.isin(6, 7, 8), F.lit(SUMMER))
        .when(month.isin(9, 10, 11), F.lit(AUTUMN))
    )


def iso_weekday(ts: Column) -> Column:
    """1 = Monday .. 7 = Sunday (Spark's ``weekday`` is 0 = Monday)."""
    return F.weekday(ts) + F.lit(1)


def with_context(
    df: DataFrame, holidays: Sequence[str], ts_col: str = C.EVENT_TS, years: range | None = None
) -> DataFrame:
    """``df`` plus ``hour, weekday, month, season, days_to_holiday`` (all ints but season).

    ``holidays`` are the specs of ``features.holidays``. ``days_to_holiday`` counts whole
    days from the (UTC) date of ``ts_col`` to the next holiday on or after it: 0 on the
    day itself. The holiday calendar covers the years of the data plus the next one, so
    late-December events still see New Year; it is a small array literal, one lookup per
    row, no join. ``years``: the years of ``ts_col`` when the caller knows them; otherwise
    one small aggregate finds them (which runs ``df``'s whole plan once).
    """
    dates = holiday_dates(holidays, years if years is not None else _years(df, ts_col)) if holidays else []
    day = F.to_date(F.col(ts_col))
    if dates:
        calendar = F.array(*[F.lit(d) for d in dates])
        # The calendar is sorted: the first holiday on or after the day is the next one.
        days_to_holiday = F.datediff(F.element_at(F.filter(calendar, lambda h: h >= day), 1), day)
    else:
        days_to_holiday = F.lit(None).cast("int")
    month = F.month(F.col(ts_col))
    return df.select(
        "*",
        F.hour(F.col(ts_col)).alias(C.HOUR),
        iso_weekday(F.col(ts_col)).alias(C.WEEKDAY),
        month.alias(C.MONTH),
        season(month).alias(C.SEASON),
        days_to_holiday.alias(C.DAYS_TO_HOLIDAY),
    )


def _years(df: DataFrame, ts_col: str) -> range:
    # One tiny aggregate; an empty frame still gets a (harmless) calendar.
    bounds = df.agg(F.min(F.year(ts_col)).alias("lo"), F.max(F.year(ts_col)).alias("hi")).first()
    assert bounds is not None  # a global aggregate: one row
    if bounds["lo"] is None:
        return range(0)
    return range(bounds["lo"], bounds["hi"] + 2)


def context_table(interactions: DataFrame, split: TemporalSplit, fcfg: FeaturesConfig) -> DataFrame:
    """gold.context rows (without ``as_of``): every history event of a known user on a product.

    Returns ``interaction_id, user_id, item_id, event_type, event_ts, hour, weekday,
    month, season, days_to_holiday, country, device``.
    """
    events = known_product_events(split.history(interactions)).select(
        C.INTERACTION_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.EVENT_TS, C.COUNTRY, C.DEVICE
    )
    return with_context(events, fcfg.holidays).select(
        C.INTERACTION_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.EVENT_TS, *CONTEXT_COLUMNS, C.COUNTRY, C.DEVICE
    )
