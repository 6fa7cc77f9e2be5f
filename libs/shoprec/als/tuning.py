"""Hyperparameter search for ALS, scored by NDCG@10 on the validation window.

Every trial trains on the history before the validation window (``split.for_tuning()``)
and ranks items for the users who bought in the validation window; the train-als stage
runs the grid (``stages.train_als.run_search``), each trial a nested MLflow run.
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.als.model import AlsParams, fit_als, item_factors, user_factors
from shoprec.als.topn import top_n_for_users
from shoprec.config import AlsConfig, CandidatesConfig

log = logging.getLogger(__name__)

TUNING_K = 10


@dataclass(frozen=True)
class Trial:
    params: AlsParams
    ndcg_at_10: float
    recall_at_10: float
    fit_seconds: float
    run_id: str | None = None


def search_space(als: AlsConfig) -> list[AlsParams]:
    """The grid of ``als.search``; a seeded sample of ``max_trials`` when the grid is larger."""
    s = als.search
    grid = [
        AlsParams(rank, reg, alpha, als.max_iter)
        for rank, reg, alpha in itertools.product(s.rank, s.reg_param, s.alpha)
    ]
    if len(grid) > s.max_trials:
        grid = sorted(random.Random(s.seed).sample(grid, s.max_trials), key=lambda p: (p.rank, p.reg_param, p.alpha))
    return grid


def score_trial(
    ratings: DataFrame,
    truth: DataFrame,
    exclude: DataFrame | None,
    params: AlsParams,
    num_blocks: int,
    als: AlsConfig,
    candidates: CandidatesConfig,
) -> tuple[float, float, float]:
    """Fit on ``ratings`` (indexed), rank for the users of ``truth`` (indexed); NDCG@10, Recall@10, fit s."""
    from shoprec.evaluation.metrics import mean_ranking_metrics

    fit = fit_als(ratings, params, num_blocks, als.checkpoint_interval, als.seed)
    users = user_factors(fit.model).join(truth.select(C.USER_IDX).distinct(), on=C.USER_IDX, how="inner")
    recs = top_n_for_users(
        users, item_factors(fit.model), TUNING_K, exclude, candidates.block_users, candidates.block_mb
    )
    metrics = mean_ranking_metrics(_as_ids(recs), _as_ids(truth), ks=(TUNING_K,))
    return metrics[f"ndcg_at_{TUNING_K}"], metrics[f"recall_at_{TUNING_K}"], fit.seconds


def _as_ids(df: DataFrame) -> DataFrame:
    """The metric functions speak user_id/item_id; indices serve as ids here."""
    return df.withColumnRenamed(C.USER_IDX, C.USER_ID).withColumnRenamed(C.ITEM_IDX, C.ITEM_ID)


def bought_pairs(purchases: DataFrame) -> DataFrame:
    """Distinct (user_idx, item_idx) of indexed purchases: what exclude_bought removes."""
    return purchases.select(C.USER_IDX, C.ITEM_IDX).distinct()


def positive(df: DataFrame) -> DataFrame:
    return df.filter(F.col(C.CONFIDENCE) > 0)
