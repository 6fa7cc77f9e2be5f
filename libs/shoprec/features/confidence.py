"""Time-decayed implicit confidence of (user, item): what ALS trains on.

For every history event of a known user on a product whose type has a weight::

    weight = event_weights[type] x q x 0.5 ** (age_days / half_life_days)
    q      = 1 + ln(quantity)   (quantity_weighting "log")   or   1   ("none")

``age_days`` is measured back from midnight UTC of ``as_of`` in fractional days, so
an event one half-life before the cutoff counts half. Returns carry a negative weight
and subtract; pairs whose sum is not positive (everything returned) are dropped.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import FeaturesConfig
from shoprec.split import TemporalSplit

SECONDS_PER_DAY = 86_400.0


def age_days(split: TemporalSplit, ts_col: str = C.EVENT_TS) -> Column:
    """Fractional days from ``ts_col`` to midnight UTC of ``as_of`` (positive in history)."""
    # A timestamp cast to double is epoch seconds with the microseconds kept.
    return (F.lit(split.as_of_ts).cast("double") - F.col(ts_col).cast("double")) / F.lit(SECONDS_PER_DAY)


def decay(split: TemporalSplit, half_life_days: float, ts_col: str = C.EVENT_TS) -> Column:
    """0.5 ** (age / half-life): 1 at the cutoff, 0.5 one half-life before it."""
    return F.pow(F.lit(0.5), age_days(split, ts_col) / F.lit(float(half_life_days)))


def known_product_events(history: DataFrame) -> DataFrame:
    """Events of known (non-anonymous) users on products: the rows user features learn from."""
    return history.filter(F.col(C.USER_ID).isNotNull() & F.col(C.IS_PRODUCT))


def implicit_confidence(interactions: DataFrame, split: TemporalSplit, fcfg: FeaturesConfig) -> DataFrame:
    """gold.confidence rows (without ``as_of``) from the history of ``interactions``.

    Returns ``user_id string, item_id string, confidence double, n_purchases long,
    n_returns long, last_event_ts timestamp``: one row per pair with positive confidence.
    ``n_purchases``/``n_returns`` count event lines; ``last_event_ts`` is the latest
    weighted event of the pair.
    """
    return pair_confidence(known_product_events(split.history(interactions)), split, fcfg)


def pair_confidence(events: DataFrame, split: TemporalSplit, fcfg: FeaturesConfig) -> DataFrame:
    """:func:`implicit_confidence` of ``events`` as given (known users' product events, not
    windowed here), their age measured back from ``split.as_of``: an event after it weighs
    more than 1 (the live stage folds new events in on the scale ALS was trained on)."""
    weighted = _weighted_events(events, split, fcfg)
    pairs = weighted.groupBy(C.USER_ID, C.ITEM_ID).agg(
        F.sum("_weight").alias(C.CONFIDENCE),
        F.count(F.when(F.col(C.EVENT_TYPE) == C.PURCHASE, True)).alias(C.N_PURCHASES),
        F.count(F.when(F.col(C.EVENT_TYPE) == C.RETURN, True)).alias(C.N_RETURNS),
        F.max(C.EVENT_TS).alias(C.LAST_EVENT_TS),
    )
    return pairs.filter(F.col(C.CONFIDENCE) > 0).select(
        C.USER_ID,
        C.ITEM_ID,
        F.col(C.CONFIDENCE).cast("double").alias(C.CONFIDENCE),
        F.col(C.N_PURCHASES).cast("long").alias(C.N_PURCHASES),
        F.col(C.N_RETURNS).cast("long").alias(C.N_RETURNS),
        C.LAST_EVENT_TS,
    )


def _weighted_events(events: DataFrame, split: TemporalSplit, fcfg: FeaturesConfig) -> DataFrame:
    weights = {k: float(v) for k, v in fcfg.event_weights.items()}
    # Types without a weight (unknown to the config) contribute nothing, not zero rows.
    typed = events.filter(F.col(C.EVENT_TYPE).isin(list(weights)))
    event_weight = F.create_map(*[F.lit(x) for kv in sorted(weights.items()) for x in kv])[F.col(C.EVENT_TYPE)]
    if fcfg.quantity_weighting == "log":
        # quantity >= 1 in silver, so the factor is >= 1; greatest() guards odd sources.
        quantity = F.lit(1.0) + F.log(F.greatest(F.col(C.QUANTITY).cast("double"), F.lit(1.0)))
    else:
        quantity = F.lit(1.0)
    return typed.withColumn("_weight", event_weight * quantity * decay(split, fcfg.half_life_days))
