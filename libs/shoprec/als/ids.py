"""Stable integer ids for ALS (kept in gold.user_id_map, gold.item_id_map by ``stages.id_maps``).

MLlib ALS wants int ids. A user keeps the index it was first given across runs and
cutoffs, so factors of different runs line up (the hybrid model warm-starts from them)
and a new user or item only ever appends: existing rows are never rewritten.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C

# ALS stores ids as Int; this is the ceiling of an index.
MAX_INDEX = 2**31 - 1


def new_indices(ids: DataFrame, existing: DataFrame | None, id_col: str, idx_col: str) -> DataFrame:
    """``id_col, idx_col`` for the ids of ``ids`` that ``existing`` (a map) lacks, numbered on
    after its largest index (from 0 without a map)."""
    wanted = ids.select(F.col(id_col).cast("string").alias(id_col)).where(F.col(id_col).isNotNull()).distinct()
    if existing is None:
        return _number_from(wanted, id_col, idx_col, 0)
    row = existing.agg(F.max(idx_col)).first()
    assert row is not None  # a global aggregate: one row
    start = row[0]
    start = -1 if start is None else start
    new = wanted.join(existing.select(id_col), on=id_col, how="left_anti")
    return _number_from(new, id_col, idx_col, start + 1)


def _number_from(df: DataFrame, id_col: str, idx_col: str, first: int) -> DataFrame:
    """Consecutive indices from ``first`` in id order, distributed (zipWithIndex, no single-partition window)."""
    ordered = df.orderBy(id_col)
    schema = T.StructType([T.StructField(id_col, T.StringType()), T.StructField(idx_col, T.IntegerType())])
    rdd = ordered.rdd.zipWithIndex().map(lambda pair: (pair[0][0], _checked(first + pair[1])))
    return ordered.sparkSession.createDataFrame(rdd, schema)


def _checked(index: int) -> int:
    if index > MAX_INDEX:
        raise OverflowError(f"more than {MAX_INDEX:,} ids: ALS cannot index them")
    return index


def to_indices(df: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Replace user_id/item_id by their indices (inner joins: unknown ids are dropped)."""
    return (
        df.join(F.broadcast(items), on=C.ITEM_ID, how="inner")
        .join(users, on=C.USER_ID, how="inner")
        .drop(C.USER_ID, C.ITEM_ID)
    )
