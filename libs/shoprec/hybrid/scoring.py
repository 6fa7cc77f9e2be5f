"""Scoring (user, item) pairs with the hybrid model inside Spark, as of a cutoff.

``scoring_features`` gives each pair the model's raw columns as they stand at ``as_of``
(the context of the cutoff day at the user's usual hour, the user's country, history
counts up to the cutoff, the item's content); ``score_pairs`` runs the model in
``mapInPandas``: one model load per Python worker (cached), whole Arrow batches per call.
``rerank_pool`` is the candidate pool the hybrid re-ranks for evaluation: ALS top-N,
the user's own purchases and the popular items.
"""
from __future__ import annotations

import calendar
import os
from datetime import datetime, time as dtime
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.features.context import with_context
from shoprec.hybrid import features as H
from shoprec.split import TemporalSplit, purchases

_SCORERS: dict[tuple[str, str], object] = {}
DEFAULT_HOUR = 12


def _scorer(model_dir: str, manifest_path: str):
    key = (model_dir, manifest_path)
    if key not in _SCORERS:  # once per Python worker: Spark reuses workers across tasks
        from shoprec.hybrid.pyfunc import Scorer

        _SCORERS[key] = Scorer(model_dir, manifest_path)
    return _SCORERS[key]


def history_counts(interactions: DataFrame, split: TemporalSplit) -> tuple[DataFrame, DataFrame]:
    """Pair and user history at as_of: baskets so far and days since the last one."""
    bought = purchases(split.history(interactions))
    as_of = F.lit(datetime.combine(split.as_of, dtime()))
    days = lambda ts: (F.unix_micros(as_of) - F.unix_micros(ts)) / F.lit(86_400e6)  # noqa: E731
    pair = bought.groupBy(C.USER_ID, C.ITEM_ID).agg(
        F.countDistinct(C.BASKET_ID).cast("int").alias(H.PAIR_PURCHASES), F.max(C.EVENT_TS).alias("_last"))
    user = bought.groupBy(C.USER_ID).agg(
        F.countDistinct(C.BASKET_ID).cast("int").alias(H.USER_PURCHASES), F.max(C.EVENT_TS).alias("_ulast"))
    return (pair.select(C.USER_ID, C.ITEM_ID, H.PAIR_PURCHASES, days(F.col("_last")).alias(H.PAIR_DAYS_SINCE)),
            user.select(C.USER_ID, H.USER_PURCHASES, days(F.col("_ulast")).alias(H.USER_DAYS_SINCE)))


def scoring_features(
    pairs: DataFrame, interactions: DataFrame, user_features: DataFrame, item_features: DataFrame,
    split: TemporalSplit, holidays,
) -> DataFrame:
    """``pairs`` (user_id, item_id, ...) plus every column of ``features.RAW_COLUMNS`` at as_of."""
    pair_hist, user_hist = history_counts(interactions, split)
    users = user_features.select(C.USER_ID, C.COUNTRY, C.PREFERRED_HOUR)
    midnight = calendar.timegm(split.as_of.timetuple())  # as_of 00:00 UTC, as the split
    hour = F.coalesce(F.col(C.PREFERRED_HOUR), F.lit(DEFAULT_HOUR))
    with_user = (
        pairs.join(users, on=C.USER_ID, how="left")
        .withColumn(C.EVENT_TS, F.timestamp_seconds(F.lit(midnight) + hour * F.lit(3600)))
        .withColumn(C.DEVICE, F.lit(None).cast("string"))
    )
    content = item_features.select(C.ITEM_ID, C.CATEGORY, C.PRICE_BAND, C.TEXT_VECTOR)
    out = (
        # Every row's time is on as_of: the calendar's years are known without a pass.
        with_context(with_user, holidays, years=range(split.as_of.year, split.as_of.year + 2))
        .join(content, on=C.ITEM_ID, how="left")
        .join(pair_hist, on=[C.USER_ID, C.ITEM_ID], how="left")
        .join(user_hist, on=C.USER_ID, how="left")
        .withColumn(H.PAIR_PURCHASES, F.coalesce(F.col(H.PAIR_PURCHASES), F.lit(0)))
        .withColumn(H.USER_PURCHASES, F.coalesce(F.col(H.USER_PURCHASES), F.lit(0)))
    )
    extra = [c for c in pairs.columns if c not in H.RAW_COLUMNS]
    return out.select(*extra, *[c for c in H.RAW_COLUMNS if c not in extra])


def score_pairs(features: DataFrame, model_dir: str, manifest_path: str, shipped: bool = False) -> DataFrame:
    """``features`` plus ``score`` (double), scored in Spark's Python workers.

    ``shipped``: the paths are relative to the SparkFiles root (a folder added with
    ``SparkContext.addFile``), resolved on each worker.
    """
    schema = T.StructType(features.schema.fields + [T.StructField(C.SCORE, T.DoubleType())])

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        if shipped:
            from pyspark import SparkFiles

            scorer = _scorer(os.path.join(SparkFiles.getRootDirectory(), model_dir),
                             os.path.join(SparkFiles.getRootDirectory(), manifest_path))
        else:
            scorer = _scorer(model_dir, manifest_path)
        for pdf in batches:
            yield pdf.assign(**{C.SCORE: scorer.score(pdf).astype("float64")})

    return features.mapInPandas(score, schema)


def rerank_pool(
    als_candidates: DataFrame, confidence: DataFrame, item_features: DataFrame, pool: int
) -> DataFrame:
    """``user_id, item_id`` to score per user with history: ALS top-``pool``, the user's
    ``pool`` strongest purchases (confidence) and the ``pool`` most popular items."""
    als = als_candidates.filter(F.col(C.RANK) <= pool).select(C.USER_ID, C.ITEM_ID)
    by_conf = Window.partitionBy(C.USER_ID).orderBy(F.col(C.CONFIDENCE).desc(), C.ITEM_ID)
    own = (confidence.withColumn("_n", F.row_number().over(by_conf)).filter(F.col("_n") <= pool)
           .select(C.USER_ID, C.ITEM_ID))
    popular = item_features.orderBy(F.col(C.POPULARITY).desc(), C.ITEM_ID).limit(pool).select(C.ITEM_ID)
    users = confidence.select(C.USER_ID).distinct()
    return als.unionByName(own).unionByName(users.crossJoin(F.broadcast(popular))).distinct()


def top_n(scored: DataFrame, n: int) -> DataFrame:
    """``user_id, item_id, score, rank`` keeping each user's n best (ties to the smaller item id)."""
    w = Window.partitionBy(C.USER_ID).orderBy(F.col(C.SCORE).desc(), C.ITEM_ID)
    return (scored.withColumn(C.RANK, F.row_number().over(w)).filter(F.col(C.RANK) <= n)
            .select(C.USER_ID, C.ITEM_ID, C.SCORE, C.RANK))
