"""ALS fold-in: a user's vector re-solved against FIXED item factors from the user's feedback.

Implicit ALS (Hu, Koren, Volinsky 2008) alternates two least-squares steps; the user step,
with the item factors Y held fixed, has a closed form per user::

    x_u = (YᵀY + Yᵀ(C_u - I)Y + λ·n_u·I)⁻¹ · Yᵀ C_u p_u

    c_ui = 1 + alpha · r_ui      (r_ui: gold.confidence of the pair; p_ui = 1 where r_ui > 0)
    n_u  = the user's rated items (pairs with r_ui > 0)

exactly as Spark MLlib's ``ALS.computeFactors`` builds it: ``YᵀY`` over every item of the
model, each rated item adding ``(c_ui - 1)·y yᵀ`` to the matrix and ``c_ui·y`` to the right
side, and ``regParam`` scaled by the user's number of ratings (ALS-WR's weighted-λ; Spark
does this for implicit preferences too: ``solver.solve(ls, numExplicits * regParam)``).
Spark's last half-iteration is this user step against the final item factors, so folding a
user in with those factors and the confidence it was trained on gives back its trained vector
(float32 rounding apart; ``tests/integration/test_live.py`` measures it).

Items the model does not know (first seen after its cutoff) have no factors and are left out.
The item factors are small (items x rank floats): they are broadcast once with ``YᵀY``
precomputed, and users stream through ``mapInPandas`` one row each (their items and
confidences as arrays), so a solve is rank x rank per user, on the executors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.als.topn import _single_thread_blas

FOLDED_SCHEMA = T.StructType(
    [
        T.StructField(C.USER_ID, T.StringType()),
        T.StructField(C.FACTORS, T.ArrayType(T.FloatType())),
        T.StructField(C.N_ITEMS, T.IntegerType()),
    ]
)
_ITEMS = "_items"
_CONF = "_conf"


@dataclass(frozen=True)
class FoldInParams:
    """The implicit-ALS settings the item factors were trained with (train-als' chosen ones)."""

    reg_param: float
    alpha: float


def gramian(item_vectors: np.ndarray) -> np.ndarray:
    """``YᵀY`` in float64 (Spark accumulates the normal equations in double too)."""
    y = item_vectors.astype(np.float64, copy=False)
    return y.T @ y


def solve_user(yty: np.ndarray, y_u: np.ndarray, confidence: np.ndarray, params: FoldInParams) -> np.ndarray:
    """One user's vector from the factors of its rated items ``y_u`` (n_u x rank) and their
    confidences ``r_ui`` (n_u,); zero for a user without a positive rating."""
    positive = confidence > 0
    y_u, r = y_u[positive].astype(np.float64, copy=False), confidence[positive].astype(np.float64)
    rank = yty.shape[0]
    if len(r) == 0:
        return np.zeros(rank, dtype=np.float32)
    c1 = params.alpha * r  # c_ui - 1
    a = yty + (y_u * c1[:, None]).T @ y_u + np.eye(rank) * (params.reg_param * len(r))
    b = y_u.T @ (1.0 + c1)
    return np.linalg.solve(a, b).astype(np.float32)


def fold_in(confidence: DataFrame, item_factors: DataFrame, params: FoldInParams) -> DataFrame:
    """``user_id, factors array<float>, n_items int`` for every user of ``confidence``
    (``user_id, item_id, confidence``: gold.confidence's shape) with a rated item the model
    knows; ``n_items`` counts those items.

    ``item_factors``: ``item_id, factors`` (gold.als_item_factors of one as_of).
    """
    spark = confidence.sparkSession
    rows = item_factors.select(C.ITEM_ID, C.FACTORS).orderBy(C.ITEM_ID).collect()  # small: items x rank
    ids = [r[C.ITEM_ID] for r in rows]
    matrix = np.array([r[C.FACTORS] for r in rows], dtype=np.float32).reshape(len(rows), -1)
    shared = spark.sparkContext.broadcast((matrix, gramian(matrix)))
    positions = spark.createDataFrame(list(zip(ids, range(len(ids)), strict=True)), f"{C.ITEM_ID} string, _pos int")
    # Spark ALS reads ratings as Float: so does this, so the same inputs give the same vector.
    per_user = (
        confidence.where(F.col(C.CONFIDENCE) > 0)
        .join(F.broadcast(positions), on=C.ITEM_ID, how="inner")
        .groupBy(C.USER_ID)
        .agg(
            F.collect_list("_pos").alias(_ITEMS),
            F.collect_list(F.col(C.CONFIDENCE).cast("float")).alias(_CONF),
        )
    )
    solve = params  # the closure captures the small record, not the DataFrames

    def folded(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        _single_thread_blas()
        y, yty = shared.value
        for batch in batches:
            vectors = [
                solve_user(yty, y[np.asarray(items, dtype=np.int64)], np.asarray(conf, dtype=np.float32), solve)
                for items, conf in zip(batch[_ITEMS], batch[_CONF], strict=True)
            ]
            yield pd.DataFrame(
                {
                    C.USER_ID: batch[C.USER_ID],
                    C.FACTORS: [v.tolist() for v in vectors],
                    C.N_ITEMS: [len(items) for items in batch[_ITEMS]],
                }
            )

    return per_user.mapInPandas(folded, FOLDED_SCHEMA)
