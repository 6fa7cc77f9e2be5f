"""Training data for the hybrid model, built in Spark and written as Parquet shards.

    history purchases ──► one positive per (user, item, basket) ──┬─► + negatives (popularity-aware,
    (split.history)                                                │    never bought by the user in the window)
                                                                   ├─► + point-in-time history features
    gold.item_features (as_of) ─► content: category, band, vector ─┤
    event time ─► context: hour, weekday, season, holiday distance ┘
        ──► <work>/train/part-*.parquet   (num_proc x shards_per_rank files, rank r reads files i % size == r)
        ──► <work>/valid/part-*.parquet   (by user: a rank holds whole users, for NDCG@10)
        ──► <work>/manifest.json          (vocabularies, sizes, normalisation, counts)

Training examples come from the purchases before the validation window, validation
examples from the validation window; nothing at or after ``as_of`` is read. History
features are point-in-time: a purchase sees only the baskets before it, and a negative
sees the user's purchases before its window.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.config import Config
from shoprec.features.context import CONTEXT_COLUMNS, with_context
from shoprec.hybrid import features as H
from shoprec.split import TemporalSplit, purchases

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0
TRAIN, VALID = "train", "valid"
MANIFEST = "manifest.json"
_DRAW = "_draw"
_LAST = "_last_ts"


@dataclass(frozen=True)
class ExampleWindow:
    """One example window [start, end) and what counts as "before" it."""

    name: str
    start: datetime | None
    end: datetime


@dataclass
class TrainingData:
    folder: str
    manifest: dict

    def files(self, part: str) -> list[str]:
        return shard_files(os.path.join(self.folder, part))

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.folder, MANIFEST)


def shard_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".parquet"))


def rank_files(files: list[str], rank: int, size: int) -> list[str]:
    """The shards of one Horovod rank: every size-th file starting at its rank."""
    return files[rank::size]


def _midnight(d: date) -> datetime:
    return datetime.combine(d, dtime())


def windows(split: TemporalSplit) -> tuple[ExampleWindow, ExampleWindow]:
    return (
        ExampleWindow(TRAIN, None, _midnight(split.validation_start)),
        ExampleWindow(VALID, _midnight(split.validation_start), _midnight(split.as_of)),
    )


# ------------------------------------------------------------------------------ positives
def basket_positives(interactions: DataFrame, split: TemporalSplit) -> DataFrame:
    """One row per (user, item, basket) bought before as_of, with point-in-time history.

    ``pair_purchases``/``pair_days_since``: earlier baskets of this user holding this item
    and days since the last one; ``user_purchases``/``user_days_since``: the same for
    any item. Earlier = a strictly earlier basket time.
    """
    bought = purchases(split.history(interactions))
    lines = bought.groupBy(C.USER_ID, C.ITEM_ID, C.BASKET_ID).agg(
        F.min(C.EVENT_TS).alias(C.EVENT_TS),
        F.first(C.COUNTRY, ignorenulls=True).alias(C.COUNTRY),
        F.first(C.DEVICE, ignorenulls=True).alias(C.DEVICE),
    )
    pair = Window.partitionBy(C.USER_ID, C.ITEM_ID).orderBy(C.EVENT_TS, C.BASKET_ID)
    with_pair = lines.select(
        "*",
        (F.row_number().over(pair) - 1).alias(C.PAIR_PURCHASES),
        _days_between(F.col(C.EVENT_TS), F.lag(C.EVENT_TS).over(pair)).alias(C.PAIR_DAYS_SINCE),
    )
    baskets = bought.groupBy(C.USER_ID, C.BASKET_ID).agg(F.min(C.EVENT_TS).alias("_bts"))
    user = Window.partitionBy(C.USER_ID).orderBy("_bts", C.BASKET_ID)
    user_hist = baskets.select(
        C.USER_ID,
        C.BASKET_ID,
        (F.row_number().over(user) - 1).alias(C.USER_PURCHASES),
        _days_between(F.col("_bts"), F.lag("_bts").over(user)).alias(C.USER_DAYS_SINCE),
    )
    return with_pair.join(user_hist, on=[C.USER_ID, C.BASKET_ID], how="inner").withColumn(
        C.EXAMPLE_ID, F.xxhash64(C.USER_ID, C.ITEM_ID, C.BASKET_ID)
    )


def _days_between(later: Column, earlier: Column) -> Column:
    return (F.unix_micros(later) - F.unix_micros(earlier)) / F.lit(SECONDS_PER_DAY * 1e6)


def _in_window(df: DataFrame, window: ExampleWindow) -> DataFrame:
    cond = F.col(C.EVENT_TS) < F.lit(window.end)
    if window.start is not None:
        cond = cond & (F.col(C.EVENT_TS) >= F.lit(window.start))
    return df.filter(cond)


# ------------------------------------------------------------------------------ negatives
def item_sampling_table(positives: DataFrame, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Items of the window and their cumulative sampling probabilities (popularity ** power)."""
    counts = positives.groupBy(C.ITEM_ID).agg(F.count(F.lit(1)).alias("n")).orderBy(C.ITEM_ID)
    pdf: pd.DataFrame = counts.toPandas()  # small: one row per item
    weights = pdf["n"].to_numpy(np.float64) ** power
    return pdf[C.ITEM_ID].to_numpy(dtype=object), np.cumsum(weights / weights.sum())


def sample_negatives(positives: DataFrame, n: int, power: float, seed: int) -> DataFrame:
    """``example_id, user_id, item_id``: n items per positive, none bought by the user in the window.

    Items are drawn with probability ~ popularity ** power (word2vec's 0.75 by default)
    from the window's purchases; 2n + 4 draws per positive, then the user's bought items
    and repeats are dropped and the first n kept. A user who bought nearly everything can
    get fewer than n.
    """
    if n <= 0:
        return positives.sparkSession.createDataFrame([], "example_id long, user_id string, item_id string")
    items, cdf = item_sampling_table(positives, power)
    spark = positives.sparkSession
    b_items = spark.sparkContext.broadcast((items, cdf))
    draws = 2 * n + 4

    def draw(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        rng = np.random.default_rng([seed, ctx.partitionId() if ctx else 0])
        its, cum = b_items.value
        for pdf in batches:
            u = rng.random((len(pdf), draws))
            picked = its[np.minimum(np.searchsorted(cum, u), len(its) - 1)]
            yield pd.DataFrame(
                {
                    C.EXAMPLE_ID: np.repeat(pdf[C.EXAMPLE_ID].to_numpy(), draws),
                    C.USER_ID: np.repeat(pdf[C.USER_ID].to_numpy(dtype=object), draws),
                    C.ITEM_ID: picked.ravel(),
                    _DRAW: np.tile(np.arange(draws, dtype=np.int32), len(pdf)),
                }
            )

    schema = T.StructType(
        [
            T.StructField(C.EXAMPLE_ID, T.LongType()),
            T.StructField(C.USER_ID, T.StringType()),
            T.StructField(C.ITEM_ID, T.StringType()),
            T.StructField(_DRAW, T.IntegerType()),
        ]
    )
    drawn = positives.select(C.EXAMPLE_ID, C.USER_ID).mapInPandas(draw, schema)
    bought = positives.select(C.USER_ID, C.ITEM_ID).distinct()
    kept = drawn.join(bought, on=[C.USER_ID, C.ITEM_ID], how="left_anti")
    first = Window.partitionBy(C.EXAMPLE_ID, C.ITEM_ID).orderBy(_DRAW)
    nth = Window.partitionBy(C.EXAMPLE_ID).orderBy(_DRAW)
    return (
        kept.withColumn("_first", F.row_number().over(first))
        .filter(F.col("_first") == 1)
        .withColumn("_nth", F.row_number().over(nth))
        .filter(F.col("_nth") <= n)
        .select(C.EXAMPLE_ID, C.USER_ID, C.ITEM_ID)
    )


def negative_examples(negatives: DataFrame, positives: DataFrame, before: DataFrame) -> DataFrame:
    """Negatives with their positive's time, context and user history; pair history from ``before``.

    ``before``: the positives of earlier windows (a validation negative may be an item the
    user bought during training, and says so in its pair features).
    """
    context = positives.select(
        C.EXAMPLE_ID,
        C.BASKET_ID,
        C.EVENT_TS,
        C.COUNTRY,
        C.DEVICE,
        C.USER_PURCHASES,
        C.USER_DAYS_SINCE,
        *CONTEXT_COLUMNS,
    )
    prior = before.groupBy(C.USER_ID, C.ITEM_ID).agg(
        F.count(F.lit(1)).alias(C.PAIR_PURCHASES), F.max(C.EVENT_TS).alias(_LAST)
    )
    joined = negatives.join(context, on=C.EXAMPLE_ID, how="inner").join(prior, on=[C.USER_ID, C.ITEM_ID], how="left")
    return joined.select(
        C.USER_ID,
        C.ITEM_ID,
        C.BASKET_ID,
        C.EVENT_TS,
        C.COUNTRY,
        C.DEVICE,
        C.EXAMPLE_ID,
        F.coalesce(F.col(C.PAIR_PURCHASES), F.lit(0)).cast("int").alias(C.PAIR_PURCHASES),
        _days_between(F.col(C.EVENT_TS), F.col(_LAST)).alias(C.PAIR_DAYS_SINCE),
        C.USER_PURCHASES,
        C.USER_DAYS_SINCE,
        *CONTEXT_COLUMNS,
    )


# ------------------------------------------------------------------------------ assembly
def examples(
    interactions: DataFrame,
    item_features: DataFrame,
    split: TemporalSplit,
    cfg: Config,
    cached: list[DataFrame] | None = None,
) -> dict[str, DataFrame]:
    """Raw training and validation examples (``features.RAW_COLUMNS`` + label, example id).

    Frames persisted on the way are appended to ``cached`` for the caller to unpersist.
    """
    hcfg = cfg.hybrid
    cached = [] if cached is None else cached
    all_pos = basket_positives(interactions, split).persist()
    cached.append(all_pos)
    content = item_features.select(C.ITEM_ID, C.CATEGORY, C.PRICE_BAND, C.TEXT_VECTOR)
    out = {}
    for window, n_neg, salt in zip(windows(split), (hcfg.negatives, hcfg.validation_negatives), (0, 1), strict=True):
        # Context once per positive (its negatives share it): one small calendar aggregate.
        pos = with_context(_in_window(all_pos, window), cfg.features.holidays).persist()
        cached.append(pos)
        before = all_pos.filter(F.col(C.EVENT_TS) < F.lit(window.start)) if window.start else all_pos.limit(0)
        neg = negative_examples(sample_negatives(pos, n_neg, hcfg.sampling_power, hcfg.seed + salt), pos, before)
        rows = pos.select(*neg.columns, F.lit(1).alias(C.LABEL)).unionByName(neg.withColumn(C.LABEL, F.lit(0)))
        rows = rows.join(content, on=C.ITEM_ID, how="left")
        out[window.name] = (
            rows.select(
                *H.RAW_COLUMNS,
                F.col(C.LABEL).cast("int").alias(C.LABEL),
                C.EXAMPLE_ID,
                C.EVENT_TS,
            )
            .withColumn(C.PAIR_PURCHASES, F.col(C.PAIR_PURCHASES).cast("int"))
            .withColumn(C.USER_PURCHASES, F.col(C.USER_PURCHASES).cast("int"))
        )
    return out


def build_manifest(train: DataFrame, cfg: Config, counts: dict, sample_rows: int = 50_000) -> dict:
    """Vocabularies (from the training examples), sizes, normalisation statistics, counts."""
    vocab = {}
    for name in H.VOCAB_FEATURES:
        values = train.select(name).where(F.col(name).isNotNull()).distinct().orderBy(name)
        vocab[name] = [r[0] for r in values.collect()]  # small: one row per distinct value
    total = max(counts["train_rows"], 1)
    sample = train.sample(fraction=min(1.0, 2.0 * sample_rows / total), seed=cfg.hybrid.seed).limit(sample_rows)
    stats = H.normalisation(sample.select(*H.RAW_COLUMNS).toPandas())  # small: bounded by sample_rows
    return {
        "vocab": vocab,
        "sizes": {"price_band": cfg.features.price_bands + 1},
        "text_dim": cfg.features.text.vector_size,
        "numeric": list(H.NUMERIC),
        "normalisation": stats,
        "counts": counts,
    }


def write_training_data(
    interactions: DataFrame, item_features: DataFrame, split: TemporalSplit, cfg: Config, folder: str
) -> TrainingData:
    """Build the examples, write the shards and the manifest under ``folder`` (replaced)."""
    hcfg = cfg.hybrid
    cached: list[DataFrame] = []
    parts = examples(interactions, item_features, split, cfg, cached)
    n_files = max(1, hcfg.num_proc * hcfg.shards_per_rank)
    try:
        # Shuffle rows across files for training; keep a user's rows together for validation.
        parts[TRAIN].repartition(n_files, F.xxhash64(C.EXAMPLE_ID, F.lit(hcfg.seed))).write.mode("overwrite").parquet(
            os.path.join(folder, TRAIN)
        )
        parts[VALID].repartition(max(1, hcfg.num_proc), C.USER_ID).write.mode("overwrite").parquet(
            os.path.join(folder, VALID)
        )
    finally:
        for df in cached:
            df.unpersist()
    spark = interactions.sparkSession
    train = spark.read.parquet(os.path.join(folder, TRAIN))
    valid = spark.read.parquet(os.path.join(folder, VALID))
    counts = _counts(train, "train") | _counts(valid, "valid")
    manifest = build_manifest(train, cfg, counts)
    manifest.update(
        as_of=split.as_of.isoformat(),
        validation_start=split.validation_start.isoformat(),
        negatives=hcfg.negatives,
        validation_negatives=hcfg.validation_negatives,
        sampling_power=hcfg.sampling_power,
    )
    with open(os.path.join(folder, MANIFEST), "w") as fh:
        json.dump(manifest, fh)
    log.info("hybrid training data: %s", counts)
    return TrainingData(folder, manifest)


def _counts(df: DataFrame, name: str) -> dict[str, int]:
    row = df.agg(
        F.count(F.lit(1)).alias("rows"), F.sum(C.LABEL).alias("positives"), F.countDistinct(C.USER_ID).alias("users")
    ).first()
    assert row is not None  # a global aggregate: one row
    return {
        f"{name}_rows": int(row["rows"]),
        f"{name}_positives": int(row["positives"] or 0),
        f"{name}_users": int(row["users"]),
    }
