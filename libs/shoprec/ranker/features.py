"""The ranker's feature table: one row per (user, candidate), every value as of a cutoff.

    pool rows (one per source that proposed the pair) ─► per source: proposed, rank, score
                                                          + n_sources, best rank, cf_score, deep_score
    purchases before the cutoff ─► pair:    baskets, units, days since the user last bought it
                               ─► user:    RFM (days since, baskets, monetary), lines, tenure,
                                           repeat rate, usual price
                               ─► item:    buyers, baskets, recent buyers and trend, days on sale,
                                           price, repeat rate; price / the user's usual price
                               ─► country: share of the user's country's buyers who bought it
                               ─► context: seasonal lift at the cutoff, hour/weekday fit

Point in time: :func:`ranker_features` reads only the interactions strictly before
``split.as_of`` (it filters them itself), so the same call builds the training table at the
validation start and the serving table at as_of, and rows at or after the cutoff change no
value (tests/integration/test_ranker.py poisons them). The pool must be built at the same
cutoff (``stages.train_ranker``).

Not in this first slice: the month index (one training cutoff makes it a constant; the
seasonal lift carries the season), the co-occurrence and bundle-rule strength with the
user's last baskets for candidates those sources did not propose (their source scores are
that strength where they did), device and category fit. Missing values stay null (NaN for
XGBoost: a learned default direction), except ``pair_days_since`` (never bought: a large
number of days) and counts (0).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.candidates.sources import SOURCE_PRIORITY, user_countries
from shoprec.config import RerankConfig
from shoprec.ranking import rerank
from shoprec.split import TemporalSplit, purchases

# A pair the user never bought: this many days since they last bought it.
NEVER_DAYS = 9_999.0
SOURCES = SOURCE_PRIORITY
# Per-pair scores the pool may carry (null where a model does not know the pair).
POOL_SCORES = (C.CF_SCORE, C.DEEP_SCORE)
PAIR_FEATURES = (C.PAIR_BASKETS, C.PAIR_QUANTITY, C.PAIR_DAYS_SINCE)
USER_FEATURES = (
    C.USER_DAYS_SINCE,
    C.USER_BASKETS,
    C.USER_MONETARY,
    C.USER_LINES,
    C.USER_TENURE_DAYS,
    C.USER_REPEAT_RATE,
    C.USER_PRICE,
)
ITEM_FEATURES = (
    C.ITEM_BUYERS,
    C.ITEM_BASKETS,
    C.ITEM_RECENT_BUYERS,
    C.ITEM_TREND,
    C.ITEM_DAYS_ON_SALE,
    C.ITEM_PRICE,
    C.ITEM_REPEAT_RATE,
)
CROSS_FEATURES = (C.PRICE_RATIO, C.COUNTRY_SHARE, C.SEASONAL_LIFT, C.TIME_FIT)


def source_columns(source: str) -> tuple[str, str, str]:
    """(proposed, rank, score) feature names of one source: ``als_proposed, als_rank, als_score``."""
    return f"{source}_proposed", f"{source}_rank", f"{source}_score"


def feature_names() -> tuple[str, ...]:
    """Every feature column of :func:`ranker_features`, in the order the model reads them."""
    per_source = tuple(c for s in SOURCES for c in source_columns(s))
    return (
        *per_source,
        C.N_SOURCES,
        C.BEST_SOURCE_RANK,
        *POOL_SCORES,
        *PAIR_FEATURES,
        *USER_FEATURES,
        *ITEM_FEATURES,
        *CROSS_FEATURES,
    )


def _midnight(split: TemporalSplit, days_before: int = 0) -> datetime:
    return datetime.combine(split.as_of - timedelta(days=days_before), time())


def _days_before(split: TemporalSplit, ts: Column) -> Column:
    """Days from ``ts`` to the cutoff (midnight UTC of ``split.as_of``)."""
    return (F.unix_micros(F.lit(_midnight(split))) - F.unix_micros(ts)) / F.lit(86_400e6)


def _occasion() -> Column:
    # A purchase without a basket id is its own occasion.
    return F.coalesce(F.col(C.BASKET_ID), F.col(C.EVENT_TS).cast("string"))


def pivot_pool(pool: DataFrame) -> DataFrame:
    """``user_id, item_id`` plus per source proposed (0/1), rank and score, ``n_sources``,
    ``best_source_rank`` and the pool's ``cf_score``/``deep_score`` (null when absent): one row
    per pair from the pool's rows (one per source that proposed it, or one per pair)."""
    src, rank, score = F.col(C.CANDIDATE_SOURCE), F.col(C.SOURCE_RANK), F.col(C.SOURCE_SCORE)
    aggs: list[Column] = []
    for s in SOURCES:
        proposed, rank_col, score_col = source_columns(s)
        aggs += [
            F.max(F.when(src == s, F.lit(1.0)).otherwise(F.lit(0.0))).alias(proposed),
            F.min(F.when(src == s, rank)).cast("double").alias(rank_col),
            F.max(F.when(src == s, score)).cast("double").alias(score_col),
        ]
    aggs += [
        F.count_distinct(src).cast("double").alias(C.N_SOURCES),
        F.min(rank).cast("double").alias(C.BEST_SOURCE_RANK),
    ]
    for c in POOL_SCORES:
        aggs.append((F.max(c) if c in pool.columns else F.lit(None)).cast("double").alias(c))
    return pool.groupBy(C.USER_ID, C.ITEM_ID).agg(*aggs)


def _pair_stats(bought: DataFrame, split: TemporalSplit) -> DataFrame:
    return bought.groupBy(C.USER_ID, C.ITEM_ID).agg(
        F.count_distinct(_occasion()).cast("double").alias(C.PAIR_BASKETS),
        F.sum(C.QUANTITY).cast("double").alias(C.PAIR_QUANTITY),
        _days_before(split, F.max(C.EVENT_TS)).alias(C.PAIR_DAYS_SINCE),
    )


def _user_stats(bought: DataFrame, pairs: DataFrame, split: TemporalSplit) -> DataFrame:
    per_user = bought.groupBy(C.USER_ID).agg(
        _days_before(split, F.max(C.EVENT_TS)).alias(C.USER_DAYS_SINCE),
        F.count_distinct(_occasion()).cast("double").alias(C.USER_BASKETS),
        F.sum(F.col(C.QUANTITY) * F.col(C.UNIT_PRICE)).cast("double").alias(C.USER_MONETARY),
        F.count(F.lit(1)).cast("double").alias(C.USER_LINES),
        _days_before(split, F.min(C.EVENT_TS)).alias(C.USER_TENURE_DAYS),
        F.percentile_approx(C.UNIT_PRICE, 0.5).cast("double").alias(C.USER_PRICE),
    )
    repeats = pairs.groupBy(C.USER_ID).agg(
        F.avg(F.when(F.col(C.PAIR_BASKETS) >= 2, 1.0).otherwise(0.0)).alias(C.USER_REPEAT_RATE)
    )
    return per_user.join(repeats, on=C.USER_ID, how="left")


def _item_stats(bought: DataFrame, pairs: DataFrame, split: TemporalSplit, trend_days: int) -> DataFrame:
    ts = F.col(C.EVENT_TS)
    recent = ts >= F.lit(_midnight(split, trend_days))
    before = (ts >= F.lit(_midnight(split, 2 * trend_days))) & ~recent
    per_item = bought.groupBy(C.ITEM_ID).agg(
        F.count_distinct(C.USER_ID).cast("double").alias(C.ITEM_BUYERS),
        F.count_distinct(_occasion()).cast("double").alias(C.ITEM_BASKETS),
        F.count_distinct(F.when(recent, F.col(C.USER_ID))).cast("double").alias(C.ITEM_RECENT_BUYERS),
        F.count_distinct(F.when(before, F.col(C.USER_ID))).cast("double").alias("_before_buyers"),
        _days_before(split, F.min(C.EVENT_TS)).alias(C.ITEM_DAYS_ON_SALE),
        F.percentile_approx(C.UNIT_PRICE, 0.5).cast("double").alias(C.ITEM_PRICE),
    )
    repeats = pairs.groupBy(C.ITEM_ID).agg(
        F.avg(F.when(F.col(C.PAIR_BASKETS) >= 2, 1.0).otherwise(0.0)).alias(C.ITEM_REPEAT_RATE)
    )
    trend = (F.col(C.ITEM_RECENT_BUYERS) + 1.0) / (F.col("_before_buyers") + 1.0)
    return per_item.join(repeats, on=C.ITEM_ID, how="left").withColumn(C.ITEM_TREND, trend).drop("_before_buyers")


def _country_shares(bought: DataFrame) -> DataFrame:
    """``country, item_id, country_share``: buyers of the item in the country / the country's buyers."""
    located = bought.where(F.col(C.COUNTRY).isNotNull())
    buyers = located.groupBy(C.COUNTRY).agg(F.count_distinct(C.USER_ID).alias("_country_buyers"))
    per_item = located.groupBy(C.COUNTRY, C.ITEM_ID).agg(F.count_distinct(C.USER_ID).alias("_item_buyers"))
    return per_item.join(F.broadcast(buyers), on=C.COUNTRY, how="inner").select(
        C.COUNTRY, C.ITEM_ID, (F.col("_item_buyers") / F.col("_country_buyers")).cast("double").alias(C.COUNTRY_SHARE)
    )


def ranker_features(
    pool: DataFrame, interactions: DataFrame, split: TemporalSplit, rr: RerankConfig, trend_days: int
) -> DataFrame:
    """``user_id, item_id`` and every column of :func:`feature_names` (doubles) for the pairs
    of ``pool`` (pool columns, one or several rows per pair; ``cf_score``/``deep_score`` when
    scored), from the ``interactions`` before ``split.as_of`` only."""
    history_all = interactions.where(F.col(C.EVENT_TS) < F.lit(_midnight(split)))
    bought = purchases(history_all)
    pairs = _pair_stats(bought, split)
    pivoted = pivot_pool(pool)
    users = pivoted.select(C.USER_ID).distinct()
    placed = user_countries(history_all, users)
    terms = rerank.context_terms(bought, split.as_of, rr)
    table = (
        pivoted.join(pairs, on=[C.USER_ID, C.ITEM_ID], how="left")
        .join(_user_stats(bought, pairs, split), on=C.USER_ID, how="left")
        .join(_item_stats(bought, pairs, split, trend_days), on=C.ITEM_ID, how="left")
        .join(placed, on=C.USER_ID, how="left")
        .join(_country_shares(bought), on=[C.COUNTRY, C.ITEM_ID], how="left")
    )
    zero = F.lit(0.0)
    filled = {
        C.PAIR_BASKETS: zero,
        C.PAIR_QUANTITY: zero,
        C.PAIR_DAYS_SINCE: F.lit(NEVER_DAYS),
        C.ITEM_BUYERS: zero,
        C.ITEM_BASKETS: zero,
        C.ITEM_RECENT_BUYERS: zero,
        C.ITEM_TREND: F.lit(1.0),
        C.ITEM_DAYS_ON_SALE: zero,
        C.COUNTRY_SHARE: zero,
    }
    for name, value in filled.items():
        table = table.withColumn(name, F.coalesce(F.col(name), value))
    usual = F.col(C.USER_PRICE)
    table = table.withColumn(C.PRICE_RATIO, F.when(usual > 0, F.col(C.ITEM_PRICE) / usual))
    with_context = rerank.with_context(table, terms)
    return with_context.select(C.USER_ID, C.ITEM_ID, *[F.col(c).cast("double").alias(c) for c in feature_names()])
