"""Read text files as (file, line number, raw line) in parallel, and Parquet as (file, row).

Spark's CSV/JSON readers do not know line numbers, and quarantine rows must point at the
exact line. So text files are read as lines: within one file split (block) Spark keeps
lines in order and ``monotonically_increasing_id`` increases by one per line, so a line's
number is the count of lines in earlier blocks of its file plus its place in its block.
Only one small row per block comes back to the driver. One line is one record
(multi-line quoted CSV fields are not supported and show up as MALFORMED rows).
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec.columns import META_LINE_NUMBER, META_RAW, META_SOURCE_FILE
from shoprec.ingest.files import SourceFile
from shoprec.paths import local_path

_BLOCK = "_block"
_MID = "_mid"
_URI = "_uri"


def read_lines(spark: SparkSession, files: list[SourceFile]) -> tuple[DataFrame, DataFrame]:
    """One row per physical line: ``_source_file``, ``_line_number`` (1-based), ``_raw``.

    Returns (lines, cache): the line scan is persisted because the numbering must see the
    same ids in both of its passes; callers ``cache.unpersist()`` when done.
    """
    raw = (
        spark.read.text([f.spark_path for f in files])
        .select(
            F.input_file_name().alias(_URI),
            F.input_file_block_start().alias(_BLOCK),
            F.monotonically_increasing_id().alias(_MID),
            F.col("value").alias(META_RAW),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    blocks = raw.groupBy(_URI, _BLOCK).agg(F.min(_MID).alias("_first_mid"), F.count("*").alias("_n"))
    rows = blocks.collect()  # small: one row per file split
    by_path = {local_path(f.spark_path): f.path for f in files}
    offsets = []
    running: dict[str, int] = {}
    for r in sorted(rows, key=lambda r: (r[_URI], r[_BLOCK])):
        start = running.get(r[_URI], 0)
        local = local_path(r[_URI])
        offsets.append((r[_URI], r[_BLOCK], r["_first_mid"], start, by_path.get(local, local)))
        running[r[_URI]] = start + r["_n"]
    offsets_df = spark.createDataFrame(
        offsets, f"{_URI} string, {_BLOCK} long, _first_mid long, _offset long, {META_SOURCE_FILE} string"
    )
    numbered = raw.join(F.broadcast(offsets_df), on=[_URI, _BLOCK], how="inner").select(
        F.col(META_SOURCE_FILE),
        (F.col("_offset") + F.col(_MID) - F.col("_first_mid") + 1).alias(META_LINE_NUMBER),
        F.col(META_RAW),
    )
    # A gzip file is one unsplittable task; once lines are numbered, spread them over
    # every core so parsing and validation run in parallel.
    lines = numbered.repartition(max(spark.sparkContext.defaultParallelism, len(rows))).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    lines.count()  # materialise while the line scan is cached, then free the scan
    raw.unpersist()
    return lines, lines


def read_parquet_rows(spark: SparkSession, files: list[SourceFile]) -> DataFrame:
    """All columns of Parquet files as strings, plus ``_source_file``, ``_line_number`` (row) and ``_raw`` (JSON)."""
    df = spark.read.parquet(*[f.spark_path for f in files])
    columns = df.columns
    by_path = {local_path(f.spark_path): f.path for f in files}
    mapping = F.create_map(*[x for k, v in by_path.items() for x in (F.lit(k), F.lit(v))])
    uri = F.regexp_replace(F.col("_metadata.file_path"), r"^file:(//)?", "")
    return df.select(
        *[F.col(c).cast("string").alias(c) for c in columns],
        F.coalesce(mapping[uri], uri).alias(META_SOURCE_FILE),
        (F.col("_metadata.row_index") + 1).alias(META_LINE_NUMBER),
        F.to_json(F.struct(*[F.col(c) for c in columns])).alias(META_RAW),
    )
