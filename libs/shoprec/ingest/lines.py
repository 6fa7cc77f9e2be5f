"""Read text files as (file, line number, raw line) in parallel, and Parquet as (file, row).

Spark's CSV/JSON readers do not know line numbers, and quarantine rows must point at the
exact line. So text files are read as lines: within one file split (block) Spark keeps
lines in order and ``monotonically_increasing_id`` increases by one per line, so a line's
number is the count of lines in earlier blocks of its file plus its place in its block.
Only one small row per block comes back to the driver.

Lines are not always records: a quoted CSV field may hold line breaks (RFC 4180).
``records`` joins such lines back into one record numbered by its first line, so rows in
counts records, not physical lines; a quote left open at the end of a file makes the rest
of that file one record flagged ``_unterminated`` (quarantined as MALFORMED).
``checked_encoding`` flags records whose bytes are not valid UTF-8 (Spark's text source
keeps a line's bytes as they are): their text is made valid for parsing and their exact
bytes are kept base64-encoded in ``_raw_invalid`` (quarantined as INVALID_ENCODING).
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from shoprec.columns import META_LINE_NUMBER, META_RAW, META_RAW_INVALID, META_SOURCE_FILE, META_UNTERMINATED
from shoprec.ingest.files import SourceFile
from shoprec.paths import local_path

# RFC 4180: a quote inside a quoted field is doubled (``"LETTER ""D"" KEY RING"``). Spark's own
# default escape is a backslash, which left such fields with their outer and doubled quotes.
CSV_OPTIONS = {"mode": "PERMISSIVE", "quote": '"', "escape": '"'}

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


def records(lines: DataFrame) -> DataFrame:
    """CSV records from physical lines: a line inside an open quoted field continues the record.

    A line's quote characters are counted (an escaped ``""`` counts two, so parity holds);
    a line continues the previous one when the quotes before it in its file are odd. The
    record keeps its first line's number and its lines joined with ``\\n``, and gets
    ``_unterminated``: true when its quote is still open at the end of the file. Files
    without an odd line pass through untouched (no window over them).
    """
    quotes = F.length(F.regexp_replace(F.col(META_RAW), '[^"]', ""))
    counted = lines.withColumn("_q", quotes)
    odd = counted.filter(F.col("_q") % 2 == 1).select(META_SOURCE_FILE).distinct()
    odd_files = [r[0] for r in odd.collect()]  # small: one row per input file with an odd-quote line
    plain = counted.filter(~F.col(META_SOURCE_FILE).isin(odd_files)) if odd_files else counted
    plain = plain.select(META_SOURCE_FILE, META_LINE_NUMBER, META_RAW, F.lit(False).alias(META_UNTERMINATED))
    if not odd_files:
        return plain
    by_file = Window.partitionBy(META_SOURCE_FILE).orderBy(META_LINE_NUMBER)
    before = F.coalesce(F.sum("_q").over(by_file.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0))
    started = (
        counted.filter(F.col(META_SOURCE_FILE).isin(odd_files))
        .withColumn("_starts", before % 2 == 0)
        .withColumn(
            "_start",
            F.max(F.when(F.col("_starts"), F.col(META_LINE_NUMBER))).over(
                by_file.rowsBetween(Window.unboundedPreceding, 0)
            ),
        )
    )
    joined = (
        started.groupBy(META_SOURCE_FILE, "_start")
        .agg(
            F.array_sort(
                F.collect_list(F.struct(F.col(META_LINE_NUMBER).alias("n"), F.col(META_RAW).alias("r")))
            ).alias("_parts"),
            F.sum("_q").alias("_quotes"),
        )
        .select(
            META_SOURCE_FILE,
            F.col("_start").alias(META_LINE_NUMBER),
            F.concat_ws("\n", F.transform("_parts", lambda p: p["r"])).alias(META_RAW),
            (F.col("_quotes") % 2 == 1).alias(META_UNTERMINATED),
        )
    )
    return plain.unionByName(joined)


def csv_records(lines: DataFrame) -> DataFrame:
    """CSV records of ``read_lines`` rows with their encoding checked: what the CSV adapters parse."""
    return checked_encoding(records(lines))


def checked_encoding(rows: DataFrame) -> DataFrame:
    """``_raw`` made valid UTF-8 (invalid bytes become U+FFFD) and ``_raw_invalid``:
    ``base64:`` and the exact bytes when they were not valid UTF-8, else null."""
    valid = F.is_valid_utf8(F.col(META_RAW))
    return rows.withColumns(
        {
            META_RAW_INVALID: F.when(
                ~valid,
                F.concat(
                    # one line: some Spark versions break base64 text every 76 characters
                    F.lit("base64:"),
                    F.regexp_replace(F.base64(F.col(META_RAW).cast("binary")), r"[\r\n]", ""),
                ),
            ),
            META_RAW: F.when(valid, F.col(META_RAW)).otherwise(F.make_valid_utf8(F.col(META_RAW))),
        }
    )


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
