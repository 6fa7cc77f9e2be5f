"""Fitting Spark MLlib ALS on implicit confidence, and its factors as DataFrames."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlsParams:
    rank: int
    reg_param: float
    alpha: float
    max_iter: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class FitResult:
    model: ALSModel
    params: AlsParams
    seconds: float


def fit_als(
    ratings: DataFrame, params: AlsParams, num_blocks: int, checkpoint_interval: int = 5, seed: int = 42
) -> FitResult:
    """Fit implicit ALS on ``user_idx, item_idx, confidence`` and materialise the factors.

    Block counts are the caller's (the cluster's parallelism): MLlib's default of 10 user
    and 10 item blocks means 10 tiny tasks per stage on a 2-core box.
    """
    als = ALS(
        rank=params.rank,
        maxIter=params.max_iter,
        regParam=params.reg_param,
        alpha=params.alpha,
        implicitPrefs=True,
        userCol=C.USER_IDX,
        itemCol=C.ITEM_IDX,
        ratingCol=C.CONFIDENCE,
        numUserBlocks=num_blocks,
        numItemBlocks=num_blocks,
        checkpointInterval=checkpoint_interval,
        seed=seed,
        coldStartStrategy="drop",
    )
    started = time.perf_counter()
    model = als.fit(ratings.select(C.USER_IDX, C.ITEM_IDX, C.CONFIDENCE))
    # fit() is lazy about the factor RDDs' last iteration; count them so the timing is honest.
    model.userFactors.count()
    model.itemFactors.count()
    seconds = time.perf_counter() - started
    log.info("ALS %s fitted in %.1f s", params, seconds)
    return FitResult(model, params, seconds)


def user_factors(model: ALSModel) -> DataFrame:
    """user_idx int, factors array<float>."""
    return model.userFactors.select(F.col("id").alias(C.USER_IDX), F.col("features").alias(C.FACTORS))


def item_factors(model: ALSModel) -> DataFrame:
    """item_idx int, factors array<float>."""
    return model.itemFactors.select(F.col("id").alias(C.ITEM_IDX), F.col("features").alias(C.FACTORS))
