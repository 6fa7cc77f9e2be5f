"""gold.user_id_map and gold.item_id_map: the ALS indices, merged insert-only.

A user keeps the index it was first given across runs and cutoffs (``als.ids``), so a rerun
with the same ids commits nothing new and concurrent readers always see a complete map.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from shoprec import columns as C
from shoprec.als.ids import new_indices
from shoprec.tables import Tables


def update_id_map(tables: Tables, ids: DataFrame, table: str, id_col: str, idx_col: str) -> DataFrame:
    """Give every id in ``ids`` an index (new ids after the largest existing one); return the map."""
    existing = tables.read(table) if tables.exists(table) else None
    numbered = new_indices(ids, existing, id_col, idx_col)
    tables.merge(numbered, table, keys=[id_col], update_matched=False, check_keys=False)
    return tables.read(table)


def user_map(tables: Tables, users: DataFrame) -> DataFrame:
    return update_id_map(tables, users, C.GOLD_USER_ID_MAP, C.USER_ID, C.USER_IDX)


def item_map(tables: Tables, items: DataFrame) -> DataFrame:
    return update_id_map(tables, items, C.GOLD_ITEM_ID_MAP, C.ITEM_ID, C.ITEM_IDX)
