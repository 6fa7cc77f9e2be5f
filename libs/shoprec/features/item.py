"""gold.item_features: one row per product item known from history or from silver.items.

Sales statistics come only from the history's purchases (``split.purchases``: known
customers buying products, strictly before ``as_of``); silver.items contributes only
static content (description, category), never its all-time counters or last price.
Items first seen at or after ``as_of`` get no row: their existence, like their
descriptions, is evaluation-window knowledge. Cold-start scoring of such items reads the
catalog and the text model at serving time instead.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import FeaturesConfig, TextConfig
from shoprec.features.confidence import decay
from shoprec.features.text import TextModel, fit_text_model
from shoprec.split import TemporalSplit, purchases

IN_HISTORY = "_in_history"

ITEM_FEATURE_COLUMNS = (
    C.ITEM_ID,
    C.DESCRIPTION,
    C.CATEGORY,
    C.TEXT_CLUSTER,
    C.TEXT_VECTOR,
    C.MEDIAN_PRICE,
    C.PRICE_BAND,
    C.N_BUYERS,
    C.N_PURCHASES,
    C.N_RETURNS,
    C.RETURN_RATE,
    C.POPULARITY,
    C.TREND,
    C.FIRST_SOLD,
    C.LAST_SOLD,
)


def item_content(interactions: DataFrame, items: DataFrame | None, split: TemporalSplit) -> DataFrame:
    """One row per product item: ``item_id, description, category, _in_history``.

    The universe is every product with a history event (any user, any event type) plus
    every product of ``items`` (silver.items) first seen before ``as_of``. ``description``:
    the item's most frequent description in history (ties: the latest, then the smallest),
    else silver.items' (catalog sources describe items only there); ``category``:
    silver.items' (null for sources without one). ``_in_history`` marks items with a
    history event.
    """
    history = split.history(interactions).filter(F.col(C.IS_PRODUCT))
    seen = history.select(C.ITEM_ID).distinct().withColumn(IN_HISTORY, F.lit(True))
    universe = seen
    if items is not None:
        known = F.col(C.IS_PRODUCT) & (F.col(C.FIRST_SEEN) < F.lit(split.as_of_ts))
        catalog = items.filter(known).select(
            C.ITEM_ID,
            F.col(C.DESCRIPTION).alias("_catalog_description"),
            F.col(C.CATEGORY).alias("_catalog_category"),
        )
        universe = seen.join(catalog, on=C.ITEM_ID, how="full")
    else:
        universe = universe.select(
            "*",
            F.lit(None).cast("string").alias("_catalog_description"),
            F.lit(None).cast("string").alias("_catalog_category"),
        )
    return universe.join(_history_description(history), on=C.ITEM_ID, how="left").select(
        C.ITEM_ID,
        F.coalesce(F.col("_history_description"), F.col("_catalog_description")).alias(C.DESCRIPTION),
        F.col("_catalog_category").alias(C.CATEGORY),
        F.coalesce(F.col(IN_HISTORY), F.lit(False)).alias(IN_HISTORY),
    )


def fit_item_text_model(content: DataFrame, tcfg: TextConfig) -> TextModel:
    """The description model, fitted on items known before as_of only (see ``item_content``)."""
    return fit_text_model(content.filter(F.col(IN_HISTORY)), tcfg)


def item_features(
    interactions: DataFrame,
    items: DataFrame | None,
    split: TemporalSplit,
    fcfg: FeaturesConfig,
    text_model: TextModel | None = None,
    content: DataFrame | None = None,
) -> DataFrame:
    """gold.item_features rows (without ``as_of``).

    ``items`` is silver.items (or None); ``text_model`` and ``content`` may be passed when
    the caller already has them (the job logs the model's size), otherwise they are
    built here. Columns: ``item_id, description, category, text_cluster int, text_vector
    array<double>, median_price double, price_band int (1..price_bands, 1 = cheapest),
    n_buyers long, n_purchases long, n_returns long, return_rate double,
    popularity double, trend double, first_sold timestamp, last_sold timestamp``.
    """
    if content is None:
        content = item_content(interactions, items, split)
    if text_model is None:
        text_model = fit_item_text_model(content, fcfg.text)
    text = text_model.transform(content)
    stats = _sales_stats(interactions, split, fcfg)
    cuts = price_band_cuts(stats, fcfg.price_bands)
    joined = content.join(text, on=C.ITEM_ID, how="left").join(stats, on=C.ITEM_ID, how="left")
    n_purchases = F.coalesce(F.col(C.N_PURCHASES), F.lit(0))
    return joined.select(
        C.ITEM_ID,
        C.DESCRIPTION,
        F.coalesce(F.col(C.CATEGORY), F.concat(F.lit("cluster_"), F.col(C.TEXT_CLUSTER).cast("string"))).alias(
            C.CATEGORY
        ),
        C.TEXT_CLUSTER,
        C.TEXT_VECTOR,
        C.MEDIAN_PRICE,
        price_band(F.col(C.MEDIAN_PRICE), cuts).alias(C.PRICE_BAND),
        F.coalesce(F.col(C.N_BUYERS), F.lit(0)).cast("long").alias(C.N_BUYERS),
        n_purchases.cast("long").alias(C.N_PURCHASES),
        F.coalesce(F.col(C.N_RETURNS), F.lit(0)).cast("long").alias(C.N_RETURNS),
        # Undefined (null), not 0, for an item nobody bought.
        F.when(n_purchases > 0, F.coalesce(F.col(C.N_RETURNS), F.lit(0)) / n_purchases).alias(C.RETURN_RATE),
        F.coalesce(F.col(C.POPULARITY), F.lit(0.0)).alias(C.POPULARITY),
        # Smoothed so that 0 -> 0 sales is "flat" (1.0) and 0 -> 3 is not infinite.
        ((F.coalesce(F.col("_recent"), F.lit(0)) + 1.0) / (F.coalesce(F.col("_previous"), F.lit(0)) + 1.0)).alias(
            C.TREND
        ),
        C.FIRST_SOLD,
        C.LAST_SOLD,
    )


def price_band_cuts(priced: DataFrame, bands: int, col_price: str = C.MEDIAN_PRICE) -> list[float]:
    """The ``bands - 1`` price quantiles that split items into equally populated bands.

    Exact quantiles (relative error 0): the input is one price per item, small enough,
    and exactness keeps the bands identical from run to run.
    """
    if bands < 2:
        return []
    probabilities = [i / bands for i in range(1, bands)]
    cuts = priced.filter(F.col(col_price).isNotNull()).approxQuantile(col_price, probabilities, 0.0)
    return [float(c) for c in cuts]


def price_band(price: Column, cuts: list[float]) -> Column:
    """1 + the number of cuts the price lies above: 1 = cheapest band; null without price."""
    if not cuts:
        return F.when(price.isNotNull(), F.lit(1))
    above = F.filter(F.array(*[F.lit(c) for c in cuts]), lambda cut: price > cut)
    return F.when(price.isNotNull(), F.size(above) + F.lit(1))


def _history_description(history: DataFrame) -> DataFrame:
    described = (
        history.filter(F.col(C.DESCRIPTION).isNotNull())
        .groupBy(C.ITEM_ID, C.DESCRIPTION)
        .agg(F.count("*").alias("_n"), F.max(C.EVENT_TS).alias("_latest"))
    )
    best = Window.partitionBy(C.ITEM_ID).orderBy(F.col("_n").desc(), F.col("_latest").desc(), F.col(C.DESCRIPTION))
    return (
        described.withColumn("_rank", F.row_number().over(best))
        .filter(F.col("_rank") == 1)
        .select(C.ITEM_ID, F.col(C.DESCRIPTION).alias("_history_description"))
    )


def _sales_stats(interactions: DataFrame, split: TemporalSplit, fcfg: FeaturesConfig) -> DataFrame:
    """Per item: purchase and return counts, popularity, trend windows, median price, dates."""
    history = split.history(interactions)
    bought = purchases(history)
    returned = history.filter((F.col(C.EVENT_TYPE) == C.RETURN) & F.col(C.USER_ID).isNotNull() & F.col(C.IS_PRODUCT))
    as_of = F.lit(split.as_of_ts)
    week = F.expr("INTERVAL 7 DAYS")
    recent_start = as_of - week * fcfg.trend_weeks
    previous_start = as_of - week * (2 * fcfg.trend_weeks)
    ts = F.col(C.EVENT_TS)
    sales = bought.groupBy(C.ITEM_ID).agg(
        F.count_distinct(C.USER_ID).alias(C.N_BUYERS),
        F.count("*").alias(C.N_PURCHASES),
        F.sum(decay(split, fcfg.half_life_days)).alias(C.POPULARITY),
        F.count(F.when(ts >= recent_start, True)).alias("_recent"),
        F.count(F.when((ts >= previous_start) & (ts < recent_start), True)).alias("_previous"),
        # Zero-priced lines are samples and corrections, not a price.
        F.median(F.when(F.col(C.UNIT_PRICE) > 0, F.col(C.UNIT_PRICE))).alias(C.MEDIAN_PRICE),
        F.min(C.EVENT_TS).alias(C.FIRST_SOLD),
        F.max(C.EVENT_TS).alias(C.LAST_SOLD),
    )
    returns = returned.groupBy(C.ITEM_ID).agg(F.count("*").alias(C.N_RETURNS))
    return sales.join(returns, on=C.ITEM_ID, how="full")
