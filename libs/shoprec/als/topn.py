"""Top-N items for every user from factor matrices, in blocks, without a cross join.

Item factors are small (items x rank floats) and are broadcast once. Users stream
through ``mapInPandas``: each Python worker takes a block of users, computes their scores
against every item with one matrix product (BLAS), masks the items to exclude, keeps the
best N per row with ``argpartition`` and emits N rows per user. Memory per worker is one
block of scores (``block_users x n_items`` floats), never users x items; time is linear
in users.

Spark's ``recommendForAllUsers`` does the same job by cross-joining blocks of factor
rows inside the JVM and keeping a bounded priority queue per user; ``bench/als_topn.py``
measures both on the same model.
"""
from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C

log = logging.getLogger(__name__)

EXCLUDE = "_exclude"
MAX_BLOCK_USERS = 8192

TOPN_SCHEMA = T.StructType(
    [
        T.StructField(C.USER_IDX, T.IntegerType()),
        T.StructField(C.ITEM_IDX, T.IntegerType()),
        T.StructField(C.SCORE, T.DoubleType()),
        T.StructField(C.RANK, T.IntegerType()),
    ]
)


def block_size(n_items: int, block_mb: int, block_users: int | None = None) -> int:
    """Users per matrix product: as asked, else as many as keep one score block under block_mb."""
    if block_users:
        return max(1, block_users)
    per_user = max(1, n_items) * 4  # float32 scores
    return int(min(MAX_BLOCK_USERS, max(1, (block_mb * 2**20) // per_user)))


def top_n_block(
    user_vectors: np.ndarray, item_vectors: np.ndarray, n: int, exclude: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` item positions and scores per user row, best first.

    ``exclude[r]`` holds item positions row r must not get. Rows with fewer than n
    allowed items get fewer (their tail positions are -1 and are dropped by the caller).
    """
    scores = user_vectors @ item_vectors.T  # (users, items) float32
    if exclude is not None:
        for row, positions in enumerate(exclude):
            if positions is not None and len(positions):
                scores[row, positions] = -np.inf
    n = min(n, scores.shape[1])
    if n == 0:
        return np.empty((scores.shape[0], 0), dtype=np.int64), np.empty((scores.shape[0], 0), dtype=np.float32)
    if n < scores.shape[1]:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Sort the kept n by score, ties by item position so output is deterministic.
    order = np.lexsort((part, -part_scores), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(part_scores, order, axis=1)
    top = np.where(np.isneginf(top_scores), -1, top)
    return top, top_scores


def top_n_for_users(
    user_factors: DataFrame,
    item_factors: DataFrame,
    n: int,
    exclude: DataFrame | None = None,
    block_users: int | None = None,
    block_mb: int = 64,
) -> DataFrame:
    """user_idx, item_idx, score, rank (1..n) for every user of ``user_factors``.

    ``user_factors``/``item_factors``: user_idx / item_idx int and ``factors`` array<float>
    (ALSModel.userFactors / itemFactors renamed). ``exclude``: (user_idx, item_idx) pairs
    never to recommend, e.g. what the user already bought.
    """
    spark = user_factors.sparkSession
    items = item_factors.select(C.ITEM_IDX, C.FACTORS).orderBy(C.ITEM_IDX).collect()  # items x rank: small
    item_ids = np.array([r[C.ITEM_IDX] for r in items], dtype=np.int64)
    matrix = np.array([r[C.FACTORS] for r in items], dtype=np.float32).reshape(len(items), -1)
    shared = spark.sparkContext.broadcast((item_ids, matrix))
    size = block_size(len(items), block_mb, block_users)
    log.info("top-%d for all users: %d items broadcast (%.1f MB), %d users per block",
             n, len(items), matrix.nbytes / 2**20, size)

    users = user_factors.select(C.USER_IDX, C.FACTORS)
    if exclude is not None:
        lists = exclude.groupBy(C.USER_IDX).agg(F.collect_list(C.ITEM_IDX).alias(EXCLUDE))
        users = users.join(lists, on=C.USER_IDX, how="left")
    else:
        users = users.withColumn(EXCLUDE, F.lit(None).cast(T.ArrayType(T.IntegerType())))

    excluding = exclude is not None  # the closure must not capture the DataFrame itself

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        _single_thread_blas()
        ids, vectors = shared.value
        position = {int(item): pos for pos, item in enumerate(ids)} if excluding else None
        for batch in batches:
            for start in range(0, len(batch), size):
                yield _score_block(batch.iloc[start:start + size], ids, vectors, n, position)

    return users.mapInPandas(score, TOPN_SCHEMA)


def _score_block(block: pd.DataFrame, ids: np.ndarray, vectors: np.ndarray, n: int, position) -> pd.DataFrame:
    user_vectors = np.stack(block[C.FACTORS].to_numpy()).astype(np.float32, copy=False)
    exclude = None
    if position is not None:
        exclude = [
            None if lst is None else np.fromiter((position[i] for i in lst if i in position), dtype=np.int64)
            for lst in block[EXCLUDE]
        ]
    top, top_scores = top_n_block(user_vectors, vectors, n, exclude)
    width = top.shape[1]
    keep = (top >= 0).ravel()
    return pd.DataFrame(
        {
            C.USER_IDX: np.repeat(block[C.USER_IDX].to_numpy(dtype=np.int32), width)[keep],
            C.ITEM_IDX: ids[top.clip(min=0)].astype(np.int32).ravel()[keep],
            C.SCORE: top_scores.astype(np.float64).ravel()[keep],
            C.RANK: np.tile(np.arange(1, width + 1, dtype=np.int32), len(block))[keep],
        }
    )


def _single_thread_blas() -> None:
    # Spark already runs one Python worker per core; a multi-threaded BLAS in each
    # would oversubscribe the cores.
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # optional: only costs some contention
        pass
