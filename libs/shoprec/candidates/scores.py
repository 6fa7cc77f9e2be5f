"""Per-user normalisation of candidate scores, shared by the fusion and the bundle ordering."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C


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
