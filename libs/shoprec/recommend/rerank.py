"""Re-ranking of the fused scores: context boost, already-bought policy, light users,
diversity (maximal marginal relevance) and the cap on new items, down to K per user.

    fused score (new items: new_item_weight x relative content similarity)
        + context_weight x seasonal lift(item, as_of)
        ─► rebuy policy (allow | exclude | consumables)
        ─► light users (few baskets): + light_user_boost on content neighbours
        ─► per user, best ``diversity_pool`` ─► MMR over text vectors, new items capped ─► rank 1..K
"""
from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.config import RecommendConfig
from shoprec.recommend.sources import ANCHOR, SOURCE_SCORE

SEASON_LIFT = "season_lift"
FINAL = "final_score"
_OUT_SCHEMA = T.StructType([
    T.StructField(C.USER_ID, T.StringType()), T.StructField(C.ITEM_ID, T.StringType()),
    T.StructField(C.SCORE, T.DoubleType()), T.StructField(C.RANK, T.IntegerType()),
    T.StructField(C.CANDIDATE_SOURCE, T.StringType()), T.StructField(ANCHOR, T.StringType()),
    T.StructField(SOURCE_SCORE, T.DoubleType()),
])


def seasonal_lift(history: DataFrame, as_of: date, season_days: int) -> DataFrame:
    """``item_id, season_lift``: log of the item's share of sales in the weeks around as_of's
    day of the year, in the years before, over its share of all sales then; clipped to [-1, 1].

    Only sales older than half a year count, so the lift says "sells in this season" rather
    than "sold lately" (recency is what the models and the popularity lists already know).
    """
    old = history.where(F.col(C.EVENT_TS) < F.lit(as_of - timedelta(days=183)))
    doy = F.dayofyear(C.EVENT_TS)
    target = as_of.timetuple().tm_yday
    gap = F.abs(doy - F.lit(target))
    in_season = F.least(gap, F.lit(365) - gap) <= season_days
    per_item = old.groupBy(C.ITEM_ID).agg(F.count(F.lit(1)).alias("_all"),
                                          F.sum(F.when(in_season, 1).otherwise(0)).alias("_season"))
    totals = per_item.agg(F.sum("_all").alias("_total"), F.sum("_season").alias("_total_season"))
    share = (F.col("_season") + 0.5) / (F.col("_total_season") + 1.0)
    base = (F.col("_all") + 0.5) / (F.col("_total") + 1.0)
    lift = F.greatest(F.lit(-1.0), F.least(F.lit(1.0), F.log(share / base)))
    return per_item.crossJoin(totals).where(F.col("_all") >= 5).select(C.ITEM_ID, lift.alias(SEASON_LIFT))


def consumables(history: DataFrame, min_repeat_rate: float) -> DataFrame:
    """``item_id`` of items at least ``min_repeat_rate`` of whose buyers bought them in 2+ baskets."""
    per_buyer = history.groupBy(C.ITEM_ID, C.USER_ID).agg(F.count_distinct(C.BASKET_ID).alias("_baskets"))
    rates = per_buyer.groupBy(C.ITEM_ID).agg(F.avg(F.when(F.col("_baskets") >= 2, 1.0).otherwise(0.0)).alias("_rate"))
    return rates.where(F.col("_rate") >= min_repeat_rate).select(C.ITEM_ID)


def apply_rebuy(pool: DataFrame, history: DataFrame, rcfg: RecommendConfig) -> DataFrame:
    """Drop already-bought items as ``rebuy`` says (``allow`` keeps them all)."""
    if rcfg.rebuy == "allow":
        return pool
    bought = history.select(C.USER_ID, C.ITEM_ID).distinct()
    if rcfg.rebuy == "consumables":
        bought = bought.join(consumables(history, rcfg.min_repeat_rate), on=C.ITEM_ID, how="left_anti")
    return pool.join(bought, on=[C.USER_ID, C.ITEM_ID], how="left_anti")


def light_users(history: DataFrame, min_baskets: int) -> DataFrame:
    """``user_id`` of users with fewer than ``min_baskets`` purchase baskets."""
    occasion = F.coalesce(F.col(C.BASKET_ID), F.col(C.EVENT_TS).cast("string"))
    counts = history.groupBy(C.USER_ID).agg(F.count_distinct(occasion).alias("_baskets"))
    return counts.where(F.col("_baskets") < min_baskets).select(C.USER_ID)


def boosted(scored: DataFrame, lifts: DataFrame, light: DataFrame, rcfg: RecommendConfig, fused_col: str) -> DataFrame:
    """``scored`` plus ``final_score``: fused (or, for new items, their relative content
    similarity x ``new_item_weight``) + context boost (+ the light-user lead)."""
    content = F.col(C.CANDIDATE_SOURCE).isin(C.SRC_CONTENT, C.SRC_NEW_ITEM, C.SRC_COOCCURRENCE)
    lead = F.when(F.col("_light") & content, F.lit(float(rcfg.cold_start.light_user_boost))).otherwise(F.lit(0.0))
    similar = F.col(C.CANDIDATE_SOURCE).isin(C.SRC_CONTENT, C.SRC_NEW_ITEM)
    best_similarity = F.max(F.when(similar, F.col(SOURCE_SCORE))).over(Window.partitionBy(C.USER_ID))
    relevance = F.when(
        F.col(C.CANDIDATE_SOURCE) == C.SRC_NEW_ITEM,
        F.lit(float(rcfg.cold_start.new_item_weight)) * F.col(SOURCE_SCORE) / best_similarity,
    ).otherwise(F.col(fused_col))
    return (scored.join(F.broadcast(lifts), on=C.ITEM_ID, how="left")
            .join(light.withColumn("_light", F.lit(True)), on=C.USER_ID, how="left")
            .withColumn("_light", F.coalesce(F.col("_light"), F.lit(False)))
            .withColumn(FINAL, relevance + F.lit(rcfg.rerank.context_weight)
                        * F.coalesce(F.col(SEASON_LIFT), F.lit(0.0)) + lead))


def diversified_top_k(scored: DataFrame, vectors: DataFrame, rcfg: RecommendConfig) -> DataFrame:
    """Per user: the best ``diversity_pool`` by ``final_score``, then K chosen greedily by MMR,
    new items capped at ``new_item_share`` of K. Returns user_id, item_id, score, rank, source,
    anchor_item, source_score (score = the final score of the chosen item)."""
    k = rcfg.k
    lam = float(rcfg.rerank.diversity_lambda)
    max_new = int(math.floor(rcfg.cold_start.new_item_share * k))
    pool_n = max(k, rcfg.rerank.diversity_pool)

    w = Window.partitionBy(C.USER_ID).orderBy(F.col(FINAL).desc(), F.col(C.ITEM_ID))
    best = (scored.withColumn("_n", F.row_number().over(w)).where(F.col("_n") <= pool_n)
            .join(F.broadcast(vectors.select(C.ITEM_ID, C.TEXT_VECTOR)), on=C.ITEM_ID, how="left")
            .select(C.USER_ID, C.ITEM_ID, FINAL, C.CANDIDATE_SOURCE, ANCHOR, SOURCE_SCORE, C.TEXT_VECTOR))

    def choose(pdf: pd.DataFrame) -> pd.DataFrame:
        return _mmr(pdf, k, lam, max_new)

    return best.groupBy(C.USER_ID).applyInPandas(choose, _OUT_SCHEMA)


def _mmr(pdf: pd.DataFrame, k: int, lam: float, max_new: int) -> pd.DataFrame:
    pdf = pdf.sort_values([FINAL, C.ITEM_ID], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    rel = pdf[FINAL].to_numpy(np.float64)
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
    return pd.DataFrame({
        C.USER_ID: out[C.USER_ID].to_numpy(), C.ITEM_ID: out[C.ITEM_ID].to_numpy(),
        C.SCORE: out[FINAL].astype("float64").to_numpy(), C.RANK: np.arange(1, len(out) + 1, dtype=np.int32),
        C.CANDIDATE_SOURCE: out[C.CANDIDATE_SOURCE].to_numpy(), ANCHOR: out[ANCHOR].to_numpy(),
        SOURCE_SCORE: out[SOURCE_SCORE].astype("float64").to_numpy(),
    })
