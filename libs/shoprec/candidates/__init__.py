"""Candidate lists per user: ALS top-N, popularity baselines, co-occurrence partners.

Every source writes the same shape to ``gold.candidates`` (partitioned by ``as_of`` and
``source``, one partition replaced atomically per run):

    user_id string, item_id string, score double, rank int (1 = best), source string, as_of date
"""
from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.tables import Tables

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


def write_candidates(tables: Tables, df: DataFrame, source: str, as_of: date) -> int:
    """Replace the (as_of, source) partition of gold.candidates; returns the new table version."""
    result = tables.replace_partition(
        with_source(df, source, as_of), C.GOLD_CANDIDATES, {C.AS_OF: as_of, C.CANDIDATE_SOURCE: source}
    )
    return result.version


def read_candidates(tables: Tables, as_of: date, sources: list[str] | None = None) -> DataFrame:
    """The candidates of one cutoff, optionally of some sources only."""
    df = tables.read(C.GOLD_CANDIDATES).filter(F.col(C.AS_OF) == F.lit(as_of))
    if sources:
        df = df.filter(F.col(C.CANDIDATE_SOURCE).isin(sources))
    return df
