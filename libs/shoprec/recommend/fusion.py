"""Fusion of the collaborative (ALS) and deep (hybrid) scores, and the choice of its weight.

    fused = w * norm(cf) + (1 - w) * norm(deep)

Both scores are normalised per user over that user's candidates, so neither scale
dominates: ``minmax`` maps the user's lowest to 0 and highest to 1, ``rank`` uses
1 - (rank - 1) / n. A candidate ALS cannot score (an item or user it never saw) counts as
the user's lowest CF score. ``w`` is chosen on the validation window: candidates built as
of the validation start, scored by the ALS refit on the history before it and by the
hybrid model (trained on that same history), ranked for every ``w`` of the grid in one
Spark pass, NDCG@10 against the validation purchases. ``w = 0`` is deep only, ``w = 1``
ALS only on the same candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C

CF = "cf_score"
DEEP = "deep_score"
FUSED = "fused_score"
WEIGHT = "weight"
TUNING_K = 10


def normalised(df: DataFrame, column: str, how: str, out: str, by: tuple[str, ...] = (C.USER_ID,)) -> DataFrame:
    """``df`` plus ``out`` in [0, 1] per user (or per ``by``); nulls become 0 (the lowest)."""
    by_user = Window.partitionBy(*by)
    x = F.col(column)
    if how == "minmax":
        lo, hi = F.min(x).over(by_user), F.max(x).over(by_user)
        value = F.when(hi > lo, (x - lo) / (hi - lo)).otherwise(F.lit(1.0))
    elif how == "rank":
        ranked = Window.partitionBy(*by).orderBy(x.desc_nulls_last(), F.col(C.ITEM_ID))
        n = F.count(x).over(by_user)
        value = F.when(n > 1, F.lit(1.0) - (F.row_number().over(ranked) - 1) / (n - 1)).otherwise(F.lit(1.0))
    else:
        raise ValueError(f"fusion normalisation must be minmax or rank, got {how!r}")
    return df.withColumn(out, F.when(x.isNull(), F.lit(0.0)).otherwise(value).cast("double"))


def with_normalised_scores(scored: DataFrame, how: str) -> DataFrame:
    """``scored`` (with ``cf_score``, ``deep_score``) plus ``_cf_n`` and ``_deep_n``."""
    return normalised(normalised(scored, CF, how, "_cf_n"), DEEP, how, "_deep_n")


def fused(weight: float | Column) -> Column:
    w = weight if isinstance(weight, Column) else F.lit(float(weight))
    return (w * F.col("_cf_n") + (F.lit(1.0) - w) * F.col("_deep_n")).alias(FUSED)


@dataclass(frozen=True)
class WeightSearch:
    weight: float
    ndcg: dict[float, float]     # NDCG@10 on the validation window per weight
    recall: dict[float, float]   # Recall@10
    n_users: int

    def lines(self) -> list[str]:
        out = [f"  fusion weight (w x ALS + (1 - w) x deep) on the validation window, {self.n_users:,} users:"]
        for w in sorted(self.ndcg):
            label = " (deep only)" if w == 0 else " (ALS only)" if w == 1 else ""
            mark = "  <- chosen" if w == self.weight else ""
            out.append(f"    w {w:.2f}  NDCG@10 {self.ndcg[w]:.4f}  Recall@10 {self.recall[w]:.4f}{label}{mark}")
        return out


def choose_weight(normalised_pool: DataFrame, truth: DataFrame, grid: tuple[float, ...]) -> WeightSearch:
    """The grid's best weight by NDCG@10 (ties: the smaller weight) for the users of ``truth``."""
    from shoprec.evaluation.metrics import mean_ranking_metrics_by

    spark = normalised_pool.sparkSession
    weights = spark.createDataFrame([(float(w),) for w in sorted(set(grid))], [WEIGHT])
    expanded = normalised_pool.crossJoin(F.broadcast(weights)).withColumn(FUSED, fused(F.col(WEIGHT)))
    w = Window.partitionBy(WEIGHT, C.USER_ID).orderBy(F.col(FUSED).desc(), F.col(C.ITEM_ID))
    top = (expanded.withColumn(C.RANK, F.row_number().over(w)).where(F.col(C.RANK) <= TUNING_K)
           .select(WEIGHT, C.USER_ID, C.ITEM_ID, C.RANK))
    rows = mean_ranking_metrics_by(top, truth, ks=(TUNING_K,), by=(WEIGHT,)).collect()  # small: one row per weight
    ndcg = {float(r[WEIGHT]): float(r[f"ndcg_at_{TUNING_K}"] or 0.0) for r in rows}
    recall = {float(r[WEIGHT]): float(r[f"recall_at_{TUNING_K}"] or 0.0) for r in rows}
    n_users = max((int(r["n_users"]) for r in rows), default=0)
    best = min(ndcg, key=lambda x: (-round(ndcg[x], 6), x)) if ndcg else 1.0
    return WeightSearch(best, ndcg, recall, n_users)
