"""Candidate lists per user: ALS top-N, popularity baselines, co-occurrence partners, and the
pool every source of ``shoprec recommend`` feeds (``candidates.sources``).

Every source stored in ``gold.candidates`` has the same shape (partitioned by ``as_of`` and
``source``, one partition replaced atomically per run; the stages write it through
``stages.candidate_store``):

    user_id string, item_id string, score double, rank int (1 = best), source string, as_of date
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C

CANDIDATES_SCHEMA = T.StructType(
    [
        T.StructField(C.USER_ID, T.StringType()),
        T.StructField(C.ITEM_ID, T.StringType()),
        T.StructField(C.SCORE, T.DoubleType()),
        T.StructField(C.RANK, T.IntegerType()),
        T.StructField(C.CANDIDATE_SOURCE, T.StringType()),
        T.StructField(C.AS_OF, T.DateType()),
    ]
)


def with_source(df: DataFrame, source: str, as_of: date) -> DataFrame:
    """user_id, item_id, score, rank -> the gold.candidates shape for one source."""
    return df.select(
        F.col(C.USER_ID).cast("string"),
        F.col(C.ITEM_ID).cast("string"),
        F.col(C.SCORE).cast("double"),
        F.col(C.RANK).cast("int"),
        F.lit(source).alias(C.CANDIDATE_SOURCE),
        F.lit(as_of).cast("date").alias(C.AS_OF),
    )
