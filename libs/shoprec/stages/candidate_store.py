"""gold.candidates, read and written: one (as_of, source) partition per producing stage.

The contract (docs/architecture.md, "One candidate store"): train-als writes ``als`` (the ALS
top-N, computed once and read back by recommend), train-hybrid writes ``hybrid`` and evaluate
writes the baselines; evaluate scores every source it finds.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.candidates import with_source
from shoprec.tables import Tables


def write_candidates(tables: Tables, df: DataFrame, source: str, as_of: date) -> int:
    """Replace the (as_of, source) partition of gold.candidates; returns the new table version."""
    result = tables.replace_partition(
        with_source(df, source, as_of), C.GOLD_CANDIDATES, {C.AS_OF: as_of, C.CANDIDATE_SOURCE: source}
    )
    return result.version


def read_candidates(tables: Tables, as_of: date, sources: list[str] | None = None) -> DataFrame:
    """The candidates of one cutoff, optionally of some sources only."""
    df = tables.read_as_of(C.GOLD_CANDIDATES, as_of)
    if sources:
        df = df.filter(F.col(C.CANDIDATE_SOURCE).isin(sources))
    return df
