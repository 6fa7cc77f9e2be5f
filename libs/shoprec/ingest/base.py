"""What a source adapter hands the ingest job, and helpers adapters share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import IngestConfig
from shoprec.ingest.files import SourceFile


@dataclass
class Parsed:
    """An adapter's reading of a batch of files.

    ``records`` has one row per input record (data line / Parquet row): the columns as
    received (strings, in the ``_src`` struct) and metadata, ``_raw`` (the line), the typed silver
    interaction columns, and ``reason``/``reason_detail`` (null when the row is good).
    ``line_count`` counts the input records independently of ``records`` so the job can
    check that nothing was dropped or duplicated on the way.
    """

    records: DataFrame
    bronze_columns: list[str]
    line_count: int
    cached: list[DataFrame]

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()


class Adapter(Protocol):
    source: str

    def check_files(self, files: list[SourceFile]) -> None:
        """Raise ``InputFormatError`` for a file that is not this source's format at all."""

    def parse(self, spark: SparkSession, files: list[SourceFile], ingested_at: Column) -> Parsed: ...


def item_kind(stock_code: Column, cfg: IngestConfig) -> Column:
    """Kind of a stock code: product unless listed as a non-product code or prefix."""
    kind: Column = F.lit(C.KIND_PRODUCT)
    for prefix, name in _upper(cfg.non_product_prefixes).items():
        kind = F.when(stock_code.startswith(prefix), F.lit(name)).otherwise(kind)
    codes = _upper(cfg.non_product_codes)
    if codes:
        mapping = F.create_map(*[x for k, v in codes.items() for x in (F.lit(k), F.lit(v))])
        kind = F.coalesce(mapping[stock_code], kind)
    return kind


def _upper(mapping: Mapping[str, str]) -> dict[str, str]:
    return {k.upper(): v for k, v in mapping.items()}


def interaction_id(source: str, *parts: Column) -> Column:
    """Content hash of an event: the same event read twice gets the same id."""
    return F.sha2(F.concat_ws("\u0001", F.lit(source), *[F.coalesce(p.cast("string"), F.lit("")) for p in parts]), 256)


def out_of_range(ts: Column, ingested_at: Column, cfg: IngestConfig) -> Column:
    return (ts < F.to_timestamp(F.lit(cfg.min_date))) | (
        ts > ingested_at + F.make_dt_interval(F.lit(cfg.max_future_days))
    )
