"""gold.user_features: one row per known customer with a history event on a product.

RFM-style behaviour (recency, frequency, monetary value), baskets, returns, the
customer's country, what they buy (category and price-band mix, taken from
gold.item_features of the same as_of) and when (preferred hour and weekday). Everything
is computed from ``split.history`` only, so a user first seen after ``as_of`` has no row.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.features.confidence import age_days, known_product_events
from shoprec.split import TemporalSplit

USER_FEATURE_COLUMNS = (
    C.USER_ID,
    C.COUNTRY,
    C.RECENCY_DAYS,
    C.FREQUENCY,
    C.N_PURCHASES,
    C.N_ITEMS,
    C.MONETARY,
    C.AVG_BASKET_SIZE,
    C.N_RETURNS,
    C.RETURN_RATE,
    C.CATEGORY_MIX,
    C.PRICE_BAND_MIX,
    C.PREFERRED_HOUR,
    C.PREFERRED_WEEKDAY,
    C.LAST_EVENT_TS,
)


def user_features(
    interactions: DataFrame, split: TemporalSplit, item_features: DataFrame, price_bands: int
) -> DataFrame:
    """gold.user_features rows (without ``as_of``).

    ``item_features`` gives ``item_id, category, price_band`` (gold.item_features of the
    same as_of). Columns: ``user_id, country, recency_days double (days from the last
    purchase to as_of; null without one), frequency long (distinct purchase baskets),
    n_purchases long (purchase lines), n_items long (distinct items bought), monetary
    double (spend minus returned value), avg_basket_size double (distinct items per
    basket), n_returns long, return_rate double (return lines / purchase lines, null
    without purchases), category_mix map<string,double> and price_band_mix array<double>
    (shares of purchase lines; the array has one slot per band, 1 = cheapest),
    preferred_hour int, preferred_weekday int (1 = Monday; the most frequent purchase
    hour/weekday, ties to the smaller), last_event_ts timestamp``.
    """
    events = known_product_events(split.history(interactions))
    bought = events.filter(F.col(C.EVENT_TYPE) == C.PURCHASE)
    universe = events.groupBy(C.USER_ID).agg(F.max(C.EVENT_TS).alias(C.LAST_EVENT_TS))
    parts = [
        _home_country(events),
        _purchase_stats(bought, split),
        _return_stats(events),
        _basket_size(bought),
        _mix(bought, item_features, price_bands),
        _preferred(bought, F.hour(C.EVENT_TS), C.PREFERRED_HOUR),
        _preferred(bought, F.weekday(C.EVENT_TS) + F.lit(1), C.PREFERRED_WEEKDAY),
    ]
    joined = universe
    for part in parts:
        joined = joined.join(part, on=C.USER_ID, how="left")
    n_purchases = F.coalesce(F.col(C.N_PURCHASES), F.lit(0)).cast("long")
    n_returns = F.coalesce(F.col(C.N_RETURNS), F.lit(0)).cast("long")
    spend = F.coalesce(F.col("_spend"), F.lit(0.0)) - F.coalesce(F.col("_returned_value"), F.lit(0.0))
    return joined.select(
        C.USER_ID,
        C.COUNTRY,
        C.RECENCY_DAYS,
        F.coalesce(F.col(C.FREQUENCY), F.lit(0)).cast("long").alias(C.FREQUENCY),
        n_purchases.alias(C.N_PURCHASES),
        F.coalesce(F.col(C.N_ITEMS), F.lit(0)).cast("long").alias(C.N_ITEMS),
        spend.cast("double").alias(C.MONETARY),
        C.AVG_BASKET_SIZE,
        n_returns.alias(C.N_RETURNS),
        F.when(n_purchases > 0, n_returns / n_purchases).alias(C.RETURN_RATE),
        C.CATEGORY_MIX,
        C.PRICE_BAND_MIX,
        C.PREFERRED_HOUR,
        C.PREFERRED_WEEKDAY,
        C.LAST_EVENT_TS,
    )


def _line_value() -> Column:
    # Event logs may have no price (views) or quantity; such lines add no money.
    return F.coalesce(F.col(C.QUANTITY), F.lit(1)).cast("double") * F.coalesce(F.col(C.UNIT_PRICE), F.lit(0.0))


def _home_country(events: DataFrame) -> DataFrame:
    """The country of most of the user's events (ties: the latest seen, then the smaller name)."""
    counted = (
        events.filter(F.col(C.COUNTRY).isNotNull())
        .groupBy(C.USER_ID, C.COUNTRY)
        .agg(F.count("*").alias("_n"), F.max(C.EVENT_TS).alias("_latest"))
    )
    best = Window.partitionBy(C.USER_ID).orderBy(F.col("_n").desc(), F.col("_latest").desc(), F.col(C.COUNTRY))
    return counted.withColumn("_r", F.row_number().over(best)).filter(F.col("_r") == 1).select(C.USER_ID, C.COUNTRY)


def _purchase_stats(bought: DataFrame, split: TemporalSplit) -> DataFrame:
    return bought.groupBy(C.USER_ID).agg(
        F.min(age_days(split)).alias(C.RECENCY_DAYS),
        F.count_distinct(C.BASKET_ID).alias(C.FREQUENCY),
        F.count("*").alias(C.N_PURCHASES),
        F.count_distinct(C.ITEM_ID).alias(C.N_ITEMS),
        F.sum(_line_value()).alias("_spend"),
    )


def _return_stats(events: DataFrame) -> DataFrame:
    returned = events.filter(F.col(C.EVENT_TYPE) == C.RETURN)
    return returned.groupBy(C.USER_ID).agg(
        F.count("*").alias(C.N_RETURNS), F.sum(_line_value()).alias("_returned_value")
    )


def _basket_size(bought: DataFrame) -> DataFrame:
    baskets = bought.groupBy(C.USER_ID, C.BASKET_ID).agg(F.count_distinct(C.ITEM_ID).alias("_items"))
    return baskets.groupBy(C.USER_ID).agg(F.avg("_items").cast("double").alias(C.AVG_BASKET_SIZE))


def _mix(bought: DataFrame, item_features: DataFrame, price_bands: int) -> DataFrame:
    """Shares of the user's purchase lines per category and per price band."""
    described = bought.select(C.USER_ID, C.ITEM_ID).join(
        item_features.select(C.ITEM_ID, C.CATEGORY, C.PRICE_BAND), on=C.ITEM_ID, how="left"
    )
    per_category = described.groupBy(C.USER_ID, F.coalesce(F.col(C.CATEGORY), F.lit("unknown")).alias(C.CATEGORY)).agg(
        F.count("*").alias("_n")
    )
    total = Window.partitionBy(C.USER_ID)
    category_mix = (
        per_category.withColumn("_share", F.col("_n") / F.sum("_n").over(total))
        .groupBy(C.USER_ID)
        .agg(F.map_from_entries(F.array_sort(F.collect_list(F.struct(C.CATEGORY, "_share")))).alias(C.CATEGORY_MIX))
    )
    bands = max(int(price_bands), 1)
    band_counts = described.groupBy(C.USER_ID).agg(
        F.count("*").alias("_lines"),
        *[F.count(F.when(F.col(C.PRICE_BAND) == b, True)).alias(f"_band_{b}") for b in range(1, bands + 1)],
    )
    # Lines of items without a price band (never sold at a positive price) are in no slot,
    # so the shares may sum to less than 1.
    price_band_mix = band_counts.select(
        C.USER_ID,
        F.array(*[(F.col(f"_band_{b}") / F.col("_lines")).cast("double") for b in range(1, bands + 1)]).alias(
            C.PRICE_BAND_MIX
        ),
    )
    return category_mix.join(price_band_mix, on=C.USER_ID, how="full")


def _preferred(bought: DataFrame, value: Column, name: str) -> DataFrame:
    """The most frequent value of ``value`` over the user's purchase lines (ties: the smaller)."""
    counted = bought.groupBy(C.USER_ID, value.alias(name)).agg(F.count("*").alias("_n"))
    best = Window.partitionBy(C.USER_ID).orderBy(F.col("_n").desc(), F.col(name))
    return counted.withColumn("_r", F.row_number().over(best)).filter(F.col("_r") == 1).select(C.USER_ID, name)
