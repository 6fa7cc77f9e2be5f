"""Re-ranking of the fused scores: context boost, already-bought policy, light users,
diversity (maximal marginal relevance) and the cap on new items, down to K per user.

    fused score (new items: new_item_weight x relative content similarity)
        + season_weight x seasonal lift(item, as_of) + time_weight x time fit(user, item)
        ─► rebuy policy (allow | exclude | consumables)
        ─► light users (few baskets): + light_user_boost on content neighbours
        ─► per user, best ``diversity_pool`` ─► MMR over text vectors, new items capped ─► rank 1..K
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.config import RecommendConfig, RerankConfig
from shoprec.features import time_profiles as TP
from shoprec.ranking import fusion

_OUT_SCHEMA = T.StructType(
    [
        T.StructField(C.USER_ID, T.StringType()),
        T.StructField(C.ITEM_ID, T.StringType()),
        T.StructField(C.SCORE, T.DoubleType()),
        T.StructField(C.RANK, T.IntegerType()),
        T.StructField(C.CANDIDATE_SOURCE, T.StringType()),
        T.StructField(C.ANCHOR, T.StringType()),
        T.StructField(C.SOURCE_SCORE, T.DoubleType()),
    ]
)


# ------------------------------------------------------------------------------ context: season and time of day
@dataclass(frozen=True)
class ContextTerms:
    """What the context boost reads, all from the history before as_of: per item its seasonal
    lift at as_of and its (smoothed) hour and weekday shares, per user theirs, and the shop's."""

    items: DataFrame  # item_id, seasonal_lift, _item_hours, _item_days
    users: DataFrame  # user_id, _user_hours, _user_days
    shop_hours: list[float]
    shop_days: list[float]


def context_terms(history: DataFrame, as_of: date, rr: RerankConfig) -> ContextTerms:
    """The context terms computed from ``history`` (purchases before as_of): for the
    validation cutoff, and for serving when the features stage wrote no profiles."""
    return terms_from_profiles(TP.item_profiles(history), TP.user_time_profiles(history), as_of, rr)


def terms_from_profiles(items: DataFrame, users: DataFrame, as_of: date, rr: RerankConfig) -> ContextTerms:
    """The context terms from per-item profiles (``month_index, hour_share, weekday_share,
    n_lines``, as in gold.item_time_profiles) and per-user ones (gold.user_time_profiles).
    The seasonal lift is read again from the month index with this config's horizon, so it
    never depends on the settings of the run that wrote the profiles."""
    hours, days = TP.shop_time_shares_of(items)
    lift = TP.seasonal_lift(items, as_of, rr.season_days, rr.season_min_lines)

    def pulled(p: DataFrame, key: str, prefix: str) -> DataFrame:
        n = F.col(C.N_LINES)
        return p.select(
            key,
            TP.smoothed(F.col(C.HOUR_SHARE), n, hours, rr.time_prior_lines).alias(f"{prefix}_hours"),
            TP.smoothed(F.col(C.WEEKDAY_SHARE), n, days, rr.time_prior_lines).alias(f"{prefix}_days"),
        )

    terms = lift.join(pulled(items, C.ITEM_ID, "_item"), on=C.ITEM_ID, how="left")
    return ContextTerms(terms, pulled(users, C.USER_ID, "_user"), hours, days)


def with_context(scored: DataFrame, terms: ContextTerms) -> DataFrame:
    """``scored`` plus ``seasonal_lift`` and ``time_fit`` (the mean of the hour and weekday
    fits, ``time_profiles.time_fit``); 0 for items or users without a profile."""
    fit = (
        TP.time_fit(F.col("_user_hours"), F.col("_item_hours"), terms.shop_hours)
        + TP.time_fit(F.col("_user_days"), F.col("_item_days"), terms.shop_days)
    ) / 2.0
    return (
        scored.join(F.broadcast(terms.items), on=C.ITEM_ID, how="left")  # small: one row per item
        .join(terms.users, on=C.USER_ID, how="left")
        .withColumn(C.SEASONAL_LIFT, F.coalesce(F.col(C.SEASONAL_LIFT), F.lit(0.0)))
        .withColumn(C.TIME_FIT, fit)
        .drop("_item_hours", "_item_days", "_user_hours", "_user_days")
    )


def context_boost(season_weight: float | Column, time_weight: float | Column) -> Column:
    sw = season_weight if isinstance(season_weight, Column) else F.lit(float(season_weight))
    tw = time_weight if isinstance(time_weight, Column) else F.lit(float(time_weight))
    return sw * F.col(C.SEASONAL_LIFT) + tw * F.col(C.TIME_FIT)


@dataclass(frozen=True)
class ContextSearch:
    """The context weights chosen on the validation window, with the grid's NDCG@10."""

    season_weight: float
    time_weight: float
    ndcg: dict[tuple[float, float], float]
    n_users: int
    candidates: int = 0  # validation candidates
    searched: int = 0  # of them, those that can reach a top 10 at some point of the grid

    def lines(self) -> list[str]:
        seasons = sorted({s for s, _ in self.ndcg})
        times = sorted({t for _, t in self.ndcg})
        out = [
            f"  context weights (+ season x seasonal lift + time x time fit) on the validation window, "
            f"{self.n_users:,} users ({self.searched:,} of {self.candidates:,} candidates can reach a top "
            f"{fusion.TUNING_K}), NDCG@{fusion.TUNING_K}:",
            "    season \\ time " + "".join(f"{t:>9.3f}" for t in times),
        ]
        for s in seasons:
            cells = "".join(
                f"{self.ndcg.get((s, t), float('nan')):>8.4f}"
                + ("*" if (s, t) == (self.season_weight, self.time_weight) else " ")
                for t in times
            )
            out.append(f"    {s:>13.3f} " + cells)
        base = self.ndcg.get((0.0, 0.0))
        if base is not None:
            best = self.ndcg[(self.season_weight, self.time_weight)]
            out.append(
                f"    chosen (*): season {self.season_weight:g}, time {self.time_weight:g}: "
                f"{best:.4f} vs {base:.4f} without context"
            )
        return out


def _grid(rr: RerankConfig) -> tuple[list[float], list[float]]:
    seasons = [rr.season_weight] if rr.season_weight is not None else list(rr.season_weights)
    times = [rr.time_weight] if rr.time_weight is not None else list(rr.time_weights)
    return [float(s) for s in seasons], [float(t) for t in times]


def _extreme(pick: Callable[..., Column], weights: list[float], term: Column) -> Column:
    """``pick`` (greatest or least) of weight x term over the weights."""
    values = [F.lit(w) * term for w in weights]
    return values[0] if len(values) == 1 else pick(*values)


def reachable(fused_pool: DataFrame, seasons: list[float], times: list[float], k: int) -> DataFrame:
    """The candidates that can be in a user's top k at some point of the (season, time) grid.
    Every candidate's final score lies between fused + its smallest boost over the grid and
    fused + its largest; the k best lower bounds are each above the floor (the k-th of them)
    at every point, so a candidate whose upper bound is below the floor is behind k others
    everywhere. Dropping those leaves every point's top k, and so its NDCG@k, unchanged."""
    lift, fit = F.col(C.SEASONAL_LIFT), F.col(C.TIME_FIT)
    low = F.col(C.FUSED_SCORE) + _extreme(F.least, seasons, lift) + _extreme(F.least, times, fit)
    high = F.col(C.FUSED_SCORE) + _extreme(F.greatest, seasons, lift) + _extreme(F.greatest, times, fit)
    by_low = Window.partitionBy(C.USER_ID).orderBy(F.col("_low").desc())
    floors = (
        fused_pool.select(C.USER_ID, low.alias("_low"))
        .withColumn("_r", F.row_number().over(by_low))
        .where(F.col("_r") == k)
        .select(C.USER_ID, F.col("_low").alias("_floor"))
    )
    # Users with fewer than k candidates have no floor: all of theirs stay.
    return (
        fused_pool.join(floors, on=C.USER_ID, how="left")
        .where(F.col("_floor").isNull() | (high >= F.col("_floor") - F.lit(1e-9)))
        .drop("_floor")
    )


def choose_context_weights(fused_pool: DataFrame, truth: DataFrame, rr: RerankConfig) -> ContextSearch:
    """The best (season, time) weights of the grids by NDCG@10 on ``fused_pool`` (with
    ``fused_score``, ``seasonal_lift``, ``time_fit``); fixed weights in config are kept fixed.
    Only the candidates that can reach a top 10 are expanded over the grid."""
    seasons, times = _grid(rr)
    grid = [(s, t) for s in seasons for t in times]
    pool = reachable(fused_pool, seasons, times, fusion.TUNING_K).persist()
    try:
        candidates, searched = fused_pool.count(), pool.count()
        score = F.col(C.FUSED_SCORE) + context_boost(F.col(C.SEASON_WEIGHT), F.col(C.TIME_WEIGHT))
        ndcg, _, n_users = fusion.grid_metrics(pool, truth, grid, (C.SEASON_WEIGHT, C.TIME_WEIGHT), score)
    finally:
        pool.unpersist()
    season, time_ = fusion.best_point(ndcg) if ndcg else (0.0, 0.0)
    return ContextSearch(season, time_, ndcg, n_users, candidates, searched)


# ------------------------------------------------------------------------------ rebuy, light users
def consumables(history: DataFrame, min_repeat_rate: float) -> DataFrame:
    """``item_id`` of items at least ``min_repeat_rate`` of whose buyers bought them in 2+ baskets."""
    per_buyer = history.groupBy(C.ITEM_ID, C.USER_ID).agg(F.count_distinct(C.BASKET_ID).alias("_baskets"))
    rates = per_buyer.groupBy(C.ITEM_ID).agg(F.avg(F.when(F.col("_baskets") >= 2, 1.0).otherwise(0.0)).alias("_rate"))
    return rates.where(F.col("_rate") >= min_repeat_rate).select(C.ITEM_ID)


def apply_rebuy(
    pool: DataFrame, history: DataFrame, rcfg: RecommendConfig, consumable_items: DataFrame | None = None
) -> DataFrame:
    """Drop already-bought items as ``rebuy`` says (``allow`` keeps them all).
    ``consumable_items``: :func:`consumables` computed before (of every user's history; then
    ``history`` need only hold the pool's users' purchases)."""
    if rcfg.rebuy == "allow":
        return pool
    bought = history.select(C.USER_ID, C.ITEM_ID).distinct()
    if rcfg.rebuy == "consumables":
        repeats = consumable_items if consumable_items is not None else consumables(history, rcfg.min_repeat_rate)
        bought = bought.join(repeats, on=C.ITEM_ID, how="left_anti")
    return pool.join(bought, on=[C.USER_ID, C.ITEM_ID], how="left_anti")


def light_users(history: DataFrame, min_baskets: int) -> DataFrame:
    """``user_id`` of users with fewer than ``min_baskets`` purchase baskets."""
    occasion = F.coalesce(F.col(C.BASKET_ID), F.col(C.EVENT_TS).cast("string"))
    counts = history.groupBy(C.USER_ID).agg(F.count_distinct(occasion).alias("_baskets"))
    return counts.where(F.col("_baskets") < min_baskets).select(C.USER_ID)


def boosted(
    scored: DataFrame, light: DataFrame, rcfg: RecommendConfig, fused_col: str, season_weight: float, time_weight: float
) -> DataFrame:
    """``scored`` (with ``seasonal_lift`` and ``time_fit``, :func:`with_context`) plus
    ``final_score``: fused (or, for new items, their relative content similarity x
    ``new_item_weight``) + the context boost (+ the light-user lead)."""
    content = F.col(C.CANDIDATE_SOURCE).isin(C.SRC_CONTENT, C.SRC_NEW_ITEM, C.SRC_COOCCURRENCE)
    lead = F.when(F.col("_light") & content, F.lit(float(rcfg.cold_start.light_user_boost))).otherwise(F.lit(0.0))
    similar = F.col(C.CANDIDATE_SOURCE).isin(C.SRC_CONTENT, C.SRC_NEW_ITEM)
    best_similarity = F.max(F.when(similar, F.col(C.SOURCE_SCORE))).over(Window.partitionBy(C.USER_ID))
    relevance = F.when(
        F.col(C.CANDIDATE_SOURCE) == C.SRC_NEW_ITEM,
        F.lit(float(rcfg.cold_start.new_item_weight)) * F.col(C.SOURCE_SCORE) / best_similarity,
    ).otherwise(F.col(fused_col))
    return (
        scored.join(light.withColumn("_light", F.lit(True)), on=C.USER_ID, how="left")
        .withColumn("_light", F.coalesce(F.col("_light"), F.lit(False)))
        .withColumn(C.FINAL_SCORE, relevance + context_boost(season_weight, time_weight) + lead)
    )


def diversified_top_k(scored: DataFrame, vectors: DataFrame, rcfg: RecommendConfig) -> DataFrame:
    """Per user: the best ``diversity_pool`` by ``final_score``, then K chosen greedily by MMR,
    new items capped at ``new_item_share`` of K. Returns user_id, item_id, score, rank, source,
    anchor_item, source_score (score = the final score of the chosen item)."""
    k = rcfg.k
    lam = float(rcfg.rerank.diversity_lambda)
    max_new = math.floor(rcfg.cold_start.new_item_share * k)
    pool_n = max(k, rcfg.rerank.diversity_pool)

    w = Window.partitionBy(C.USER_ID).orderBy(F.col(C.FINAL_SCORE).desc(), F.col(C.ITEM_ID))
    best = (
        scored.withColumn("_n", F.row_number().over(w))
        .where(F.col("_n") <= pool_n)
        .join(F.broadcast(vectors.select(C.ITEM_ID, C.TEXT_VECTOR)), on=C.ITEM_ID, how="left")
        .select(C.USER_ID, C.ITEM_ID, C.FINAL_SCORE, C.CANDIDATE_SOURCE, C.ANCHOR, C.SOURCE_SCORE, C.TEXT_VECTOR)
    )

    def choose(pdf: pd.DataFrame) -> pd.DataFrame:
        return _mmr(pdf, k, lam, max_new)

    return best.groupBy(C.USER_ID).applyInPandas(choose, _OUT_SCHEMA)


def _mmr(pdf: pd.DataFrame, k: int, lam: float, max_new: int) -> pd.DataFrame:
    pdf = pdf.sort_values([C.FINAL_SCORE, C.ITEM_ID], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    rel = pdf[C.FINAL_SCORE].to_numpy(np.float64)
    is_new = (pdf[C.CANDIDATE_SOURCE] == C.SRC_NEW_ITEM).to_numpy()
    dim = next((len(v) for v in pdf[C.TEXT_VECTOR] if v is not None and len(v)), 0)
    vecs = np.zeros((len(pdf), max(dim, 1)), dtype=np.float64)
    if dim and lam < 1.0:
        for i, v in enumerate(pdf[C.TEXT_VECTOR]):
            if v is not None and len(v) == dim:
                vecs[i] = v
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
    chosen: list[int] = []
    max_sim = np.zeros(len(pdf))
    n_new = 0
    available = np.ones(len(pdf), dtype=bool)
    while len(chosen) < k and available.any():
        mmr = lam * rel - (1.0 - lam) * max_sim if lam < 1.0 else rel.copy()
        mmr[~available] = -np.inf
        if n_new >= max_new:
            mmr[is_new] = -np.inf
        if not np.isfinite(mmr).any():
            break
        i = int(np.argmax(mmr))  # first maximum: the better-ranked item wins ties
        chosen.append(i)
        available[i] = False
        n_new += int(is_new[i])
        if lam < 1.0:
            max_sim = np.maximum(max_sim, vecs @ vecs[i])
    out = pdf.iloc[chosen]
    return pd.DataFrame(
        {
            C.USER_ID: out[C.USER_ID].to_numpy(),
            C.ITEM_ID: out[C.ITEM_ID].to_numpy(),
            C.SCORE: out[C.FINAL_SCORE].astype("float64").to_numpy(),
            C.RANK: np.arange(1, len(out) + 1, dtype=np.int32),
            C.CANDIDATE_SOURCE: out[C.CANDIDATE_SOURCE].to_numpy(),
            C.ANCHOR: out[C.ANCHOR].to_numpy(),
            C.SOURCE_SCORE: out[C.SOURCE_SCORE].astype("float64").to_numpy(),
        }
    )
