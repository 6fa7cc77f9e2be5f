"""Labels of the ranker's training table: what each user bought in the window after the cutoff.

With the training split (``TemporalSplit.for_tuning()``: cutoff = the validation start, window
= the validation window) a (user, candidate) is 1 when the user bought the item in
``[split.as_of, split.evaluation_end)`` and 0 otherwise: purchases before the cutoff or on or
after the window's end never make a 1 (``evaluation.truth.ground_truth``).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.evaluation.truth import ground_truth
from shoprec.split import TemporalSplit, purchases


def window_truth(interactions: DataFrame, split: TemporalSplit) -> DataFrame:
    """``user_id, item_id``: the distinct items each user bought in the window after the cutoff."""
    return ground_truth(interactions, split, "evaluation")


def labelled(table: DataFrame, truth: DataFrame) -> DataFrame:
    """``table`` (user_id, item_id, ...) plus ``label``: 1.0 for a pair of ``truth``, else 0.0."""
    hits = truth.select(C.USER_ID, C.ITEM_ID).distinct().withColumn("_hit", F.lit(1.0))
    return (
        table.join(hits, on=[C.USER_ID, C.ITEM_ID], how="left")
        .withColumn(C.LABEL, F.coalesce(F.col("_hit"), F.lit(0.0)))
        .drop("_hit")
    )


def training_users(interactions: DataFrame, split: TemporalSplit, truth: DataFrame, n: int, seed: int) -> DataFrame:
    """``user_id`` of the users who bought in the window and before the cutoff (warm: the pool
    has history to propose from), at most ``n`` of them (a seeded hash sample, the same users
    on every rerun)."""
    buyers = purchases(split.history(interactions)).select(C.USER_ID).distinct()
    users = truth.select(C.USER_ID).distinct().join(buyers, on=C.USER_ID, how="left_semi")
    total = users.count()
    if total <= n:
        return users
    key = F.abs(F.xxhash64(F.col(C.USER_ID), F.lit(seed))) % F.lit(1_000_000)
    return users.where(key < F.lit(int(1_000_000 * n / total)))
