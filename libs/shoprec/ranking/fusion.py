"""Fusion of the collaborative (ALS) and deep (hybrid) scores, and the choice of its weight.

    fused = w * norm(cf) + (1 - w) * norm(deep)

Both scores are normalised per user over that user's candidates, so neither scale
dominates: ``minmax`` maps the user's lowest to 0 and highest to 1, ``rank`` uses
1 - (rank - 1) / n. A candidate ALS cannot score (an item or user it never saw) counts as
the user's lowest C.CF_SCORE score. ``w`` is chosen on the validation window: candidates built as
of the validation start, scored by the ALS refit on the history before it and by the
hybrid model (trained on that same history), ranked for every ``w`` of the grid in one
Spark pass, NDCG@10 against the validation purchases. ``w = 0`` is deep only, ``w = 1``
ALS only on the same candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.candidates.scores import normalised

TUNING_K = 10


def with_normalised_scores(scored: DataFrame, how: str) -> DataFrame:
    """``scored`` (with ``cf_score``, ``deep_score``) plus ``_cf_n`` and ``_deep_n``."""
    return normalised(normalised(scored, C.CF_SCORE, how, "_cf_n"), C.DEEP_SCORE, how, "_deep_n")


def fused(weight: float | Column) -> Column:
    w = weight if isinstance(weight, Column) else F.lit(float(weight))
    return (w * F.col("_cf_n") + (F.lit(1.0) - w) * F.col("_deep_n")).alias(C.FUSED_SCORE)


@dataclass(frozen=True)
class WeightSearch:
    weight: float
    ndcg: dict[float, float]  # NDCG@10 on the validation window per weight
    recall: dict[float, float]  # Recall@10
    n_users: int

    def lines(self) -> list[str]:
        out = [f"  fusion weight (w x ALS + (1 - w) x deep) on the validation window, {self.n_users:,} users:"]
        for w in sorted(self.ndcg):
            label = " (deep only)" if w == 0 else " (ALS only)" if w == 1 else ""
            mark = "  <- chosen" if w == self.weight else ""
            out.append(f"    w {w:.2f}  NDCG@10 {self.ndcg[w]:.4f}  Recall@10 {self.recall[w]:.4f}{label}{mark}")
        return out


def grid_metrics(
    pool: DataFrame, truth: DataFrame, grid: Sequence[tuple[float, ...]], names: tuple[str, ...], score: Column
) -> tuple[dict[tuple, float], dict[tuple, float], int]:
    """NDCG@10 and Recall@10 of ``pool`` ranked by ``score`` for every point of ``grid``, in
    one Spark pass: the grid (columns ``names``) is cross-joined to the pool, and ``score``
    may read those columns. Returns (ndcg, recall) keyed by grid point, and the users."""
    from shoprec.evaluation.metrics import mean_ranking_metrics_by

    spark = pool.sparkSession
    points = spark.createDataFrame([tuple(float(v) for v in p) for p in sorted(set(grid))], list(names))
    expanded = pool.crossJoin(F.broadcast(points)).withColumn("_grid_score", score)
    w = Window.partitionBy(*names, C.USER_ID).orderBy(F.col("_grid_score").desc(), F.col(C.ITEM_ID))
    top = (
        expanded.withColumn(C.RANK, F.row_number().over(w))
        .where(F.col(C.RANK) <= TUNING_K)
        .select(*names, C.USER_ID, C.ITEM_ID, C.RANK)
    )
    rows = mean_ranking_metrics_by(top, truth, ks=(TUNING_K,), by=names).collect()  # small: one row per point
    key = lambda r: tuple(float(r[n]) for n in names)  # noqa: E731
    ndcg = {key(r): float(r[f"ndcg_at_{TUNING_K}"] or 0.0) for r in rows}
    recall = {key(r): float(r[f"recall_at_{TUNING_K}"] or 0.0) for r in rows}
    return ndcg, recall, max((int(r["n_users"]) for r in rows), default=0)


def best_point(ndcg: dict[tuple, float]) -> tuple:
    """The best NDCG (to 6 places); ties go to the smallest point (less of every knob)."""
    return min(ndcg, key=lambda p: (-round(ndcg[p], 6), p))


def choose_weight(normalised_pool: DataFrame, truth: DataFrame, grid: tuple[float, ...]) -> WeightSearch:
    """The grid's best weight by NDCG@10 (ties: the smaller weight) for the users of ``truth``."""
    ndcg, recall, n_users = grid_metrics(
        normalised_pool, truth, [(w,) for w in grid], (C.WEIGHT,), fused(F.col(C.WEIGHT))
    )
    best = best_point(ndcg)[0] if ndcg else 1.0
    return WeightSearch(best, {p[0]: v for p, v in ndcg.items()}, {p[0]: v for p, v in recall.items()}, n_users)
