"""Scoring (user, item) pairs with the hybrid model inside Spark, as of a cutoff.

``scoring_features`` gives each pair the model's raw columns as they stand at ``as_of``
(the context of the cutoff day at the user's usual hour, the user's country, history
counts up to the cutoff, the item's content); ``score_pairs`` runs the model in
``mapInArrow``: one model load per Python worker (cached), Arrow batches encoded without
pandas and scored whole.
``rerank_pool`` is the candidate pool the hybrid re-ranks for evaluation: ALS top-N,
the user's own purchases and the popular items.
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from datetime import time as dtime
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.features.context import with_context
from shoprec.hybrid import features as H
from shoprec.split import TemporalSplit, purchases

if TYPE_CHECKING:
    from shoprec.hybrid.pyfunc import Scorer

_SCORERS: dict[tuple[str, str], Scorer] = {}
DEFAULT_HOUR = 12


def _limit_tf_threads() -> None:
    """TensorFlow in a Spark task uses the task's cores (``spark.task.cpus``), not the machine's:
    Spark already runs one task per core, and every worker spinning up a pool of all the
    cores makes them fight (bench/scoring.py on 2 cores: 205k -> 287k rows/s with this)."""
    import tensorflow as tf
    from pyspark import TaskContext

    context = TaskContext.get()
    threads = max(1, context.cpus()) if context is not None else None
    if threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started in this worker: keep its pools
        pass


def _scorer(model_dir: str, manifest_path: str) -> Scorer:
    key = (model_dir, manifest_path)
    if key not in _SCORERS:  # once per Python worker: Spark reuses workers across tasks
        from shoprec.hybrid.pyfunc import Scorer

        _limit_tf_threads()
        _SCORERS[key] = Scorer(model_dir, manifest_path)
    return _SCORERS[key]


def history_counts(interactions: DataFrame, split: TemporalSplit) -> tuple[DataFrame, DataFrame]:
    """Pair and user history at as_of: baskets so far and days since the last one."""
    bought = purchases(split.history(interactions))
    as_of = F.lit(datetime.combine(split.as_of, dtime()))
    days = lambda ts: (F.unix_micros(as_of) - F.unix_micros(ts)) / F.lit(86_400e6)  # noqa: E731
    pair = bought.groupBy(C.USER_ID, C.ITEM_ID).agg(
        F.countDistinct(C.BASKET_ID).cast("int").alias(C.PAIR_PURCHASES), F.max(C.EVENT_TS).alias("_last")
    )
    user = bought.groupBy(C.USER_ID).agg(
        F.countDistinct(C.BASKET_ID).cast("int").alias(C.USER_PURCHASES), F.max(C.EVENT_TS).alias("_ulast")
    )
    return (
        pair.select(C.USER_ID, C.ITEM_ID, C.PAIR_PURCHASES, days(F.col("_last")).alias(C.PAIR_DAYS_SINCE)),
        user.select(C.USER_ID, C.USER_PURCHASES, days(F.col("_ulast")).alias(C.USER_DAYS_SINCE)),
    )


def scoring_features(
    pairs: DataFrame,
    interactions: DataFrame,
    user_features: DataFrame,
    item_features: DataFrame,
    split: TemporalSplit,
    holidays: Sequence[str],
    with_text: bool = True,
) -> DataFrame:
    """``pairs`` (user_id, item_id, ...) plus every column of ``features.RAW_COLUMNS`` at as_of
    (without ``text_vector`` when ``with_text`` is false: :func:`score_pairs` can look the
    vectors up per item instead of carrying them on every pair)."""
    pair_hist, user_hist = history_counts(interactions, split)
    users = user_features.select(C.USER_ID, C.COUNTRY, C.PREFERRED_HOUR)
    midnight = calendar.timegm(split.as_of.timetuple())  # as_of 00:00 UTC, as the split
    hour = F.coalesce(F.col(C.PREFERRED_HOUR), F.lit(DEFAULT_HOUR))
    with_user = (
        pairs.join(users, on=C.USER_ID, how="left")
        .withColumn(C.EVENT_TS, F.timestamp_seconds(F.lit(midnight) + hour * F.lit(3600)))
        .withColumn(C.DEVICE, F.lit(None).cast("string"))
    )
    content = item_features.select(C.ITEM_ID, C.CATEGORY, C.PRICE_BAND, *([C.TEXT_VECTOR] if with_text else []))
    out = (
        # Every row's time is on as_of: the calendar's years are known without a pass.
        with_context(with_user, holidays, years=range(split.as_of.year, split.as_of.year + 2))
        .join(content, on=C.ITEM_ID, how="left")
        .join(pair_hist, on=[C.USER_ID, C.ITEM_ID], how="left")
        .join(user_hist, on=C.USER_ID, how="left")
        .withColumn(C.PAIR_PURCHASES, F.coalesce(F.col(C.PAIR_PURCHASES), F.lit(0)))
        .withColumn(C.USER_PURCHASES, F.coalesce(F.col(C.USER_PURCHASES), F.lit(0)))
    )
    extra = [c for c in pairs.columns if c not in H.RAW_COLUMNS]
    return out.select(*extra, *[c for c in H.RAW_COLUMNS if c not in extra and (with_text or c != C.TEXT_VECTOR)])


def item_text_table(item_features: DataFrame) -> tuple[list[str], object]:
    """(item ids, float32 matrix [items + 1, dim]) of the items' text vectors; the last row is
    zeros (unknown items). One row per item, collected to be broadcast: the catalog, not pairs."""
    import numpy as np

    vectors = item_features.select(C.ITEM_ID, C.TEXT_VECTOR).where(F.col(C.TEXT_VECTOR).isNotNull())
    rows = vectors.collect()  # small: one vector per catalog item
    dim = len(rows[0][C.TEXT_VECTOR]) if rows else 0
    rows = [r for r in rows if len(r[C.TEXT_VECTOR]) == dim]
    matrix = np.zeros((len(rows) + 1, dim), dtype=np.float32)
    if rows:
        matrix[:-1] = np.asarray([r[C.TEXT_VECTOR] for r in rows], dtype=np.float32)
    return [r[C.ITEM_ID] for r in rows], matrix


def score_pairs(
    features: DataFrame,
    model_dir: str,
    manifest_path: str,
    shipped: bool = False,
    item_features: DataFrame | None = None,
) -> DataFrame:
    """``features`` without the model's input columns (ids and any other columns kept) plus
    ``score`` (double), scored in Spark's Python workers.

    ``mapInArrow``: each Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows)
    is encoded without pandas and scored in one call per 65k rows; only the kept columns
    and the score travel back. With ``item_features`` the text vectors are broadcast once
    per item and looked up in the worker, so ``features`` need not carry them (most of the
    bytes of a pair). ``shipped``: the paths are relative to the SparkFiles root (a folder
    added with ``SparkContext.addFile``), resolved on each worker.
    """
    import pyarrow as pa

    keep = [c for c in features.columns if c not in H.RAW_COLUMNS or c in (C.USER_ID, C.ITEM_ID)]
    schema = T.StructType([features.schema[c] for c in keep] + [T.StructField(C.SCORE, T.DoubleType())])
    texts = None
    if item_features is not None:
        texts = features.sparkSession.sparkContext.broadcast(item_text_table(item_features))

    def score(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        if shipped:
            from pyspark import SparkFiles

            scorer = _scorer(
                os.path.join(SparkFiles.getRootDirectory(), model_dir),
                os.path.join(SparkFiles.getRootDirectory(), manifest_path),
            )
        else:
            scorer = _scorer(model_dir, manifest_path)
        lookup = _text_lookup(texts.value) if texts is not None else None
        for batch in batches:
            names = batch.schema.names
            scores = pa.array(scorer.score_arrow(batch, lookup).astype("float64"))
            yield pa.RecordBatch.from_arrays(
                [batch.column(names.index(c)) for c in keep] + [scores], names=[*keep, C.SCORE]
            )

    return features.mapInArrow(score, schema)


_LOOKUPS: dict[int, tuple] = {}


def _text_lookup(table: tuple[list[str], object]) -> tuple:
    """(Arrow array of item ids, matrix), built once per worker and broadcast value."""
    import pyarrow as pa

    key = id(table)
    if key not in _LOOKUPS:
        _LOOKUPS.clear()
        _LOOKUPS[key] = (pa.array(table[0], pa.string()), table[1], table)
    return _LOOKUPS[key][:2]


def rerank_pool(als_candidates: DataFrame, confidence: DataFrame, item_features: DataFrame, pool: int) -> DataFrame:
    """``user_id, item_id`` to score per user with history: ALS top-``pool``, the user's
    ``pool`` strongest purchases (confidence) and the ``pool`` most popular items."""
    als = als_candidates.filter(F.col(C.RANK) <= pool).select(C.USER_ID, C.ITEM_ID)
    by_conf = Window.partitionBy(C.USER_ID).orderBy(F.col(C.CONFIDENCE).desc(), C.ITEM_ID)
    own = (
        confidence.withColumn("_n", F.row_number().over(by_conf))
        .filter(F.col("_n") <= pool)
        .select(C.USER_ID, C.ITEM_ID)
    )
    popular = item_features.orderBy(F.col(C.POPULARITY).desc(), C.ITEM_ID).limit(pool).select(C.ITEM_ID)
    users = confidence.select(C.USER_ID).distinct()
    return als.unionByName(own).unionByName(users.crossJoin(F.broadcast(popular))).distinct()


def top_n(scored: DataFrame, n: int) -> DataFrame:
    """``user_id, item_id, score, rank`` keeping each user's n best (ties to the smaller item id)."""
    w = Window.partitionBy(C.USER_ID).orderBy(F.col(C.SCORE).desc(), C.ITEM_ID)
    return (
        scored.withColumn(C.RANK, F.row_number().over(w))
        .filter(F.col(C.RANK) <= n)
        .select(C.USER_ID, C.ITEM_ID, C.SCORE, C.RANK)
    )
