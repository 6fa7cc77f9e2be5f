"""The ingest job: files -> bronze, quarantine and silver Delta tables.

Steps: find and fingerprint the input files; refuse any that are not the adapter's
format; skip files already ingested (same sha256); parse and validate every record;
mark duplicates (within the batch and against silver); check rows in = kept +
quarantined; stage the classified batch; commit bronze, quarantine, silver, the catalog,
silver items and users and last the ingest log, each under the batch's application
transaction, so that a crash at any point is completed by a rerun and an error rolls every
table back (``shoprec.stages.ingest_batch``); log counts to MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec import paths
from shoprec.config import Config, IngestConfig
from shoprec.errors import ConfigError, DataQualityError
from shoprec.ingest import quality as Q
from shoprec.ingest.base import Adapter, Parsed
from shoprec.ingest.event_log import EventLogAdapter, read_catalog
from shoprec.ingest.files import (
    SourceFile,
    detect_format,
    expand_inputs,
    fingerprint,
    xlsx_to_csv,
)
from shoprec.ingest.online_retail import OnlineRetailAdapter
from shoprec.ingest.silver import INTERACTIONS_SCHEMA, build_items, build_users
from shoprec.stages.context import JobContext
from shoprec.stages.ingest_batch import IngestBatch, Manifest, ingest_lock
from shoprec.tables import Tables, Txn, faults
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)

_LOG_SCHEMA = (
    f"{C.SOURCE} string, path string, {C.META_FILE_SHA256} string, size_bytes long, format string, rows long, "
    "rows_kept long, rows_quarantined long, ingested_at timestamp, mlflow_run_id string"
)
_FILE_SHA = C.META_FILE_SHA256


@dataclass(frozen=True)
class IngestReport:
    """What one ingest run did (printed by the CLI, logged to MLflow)."""

    source: str
    files_ingested: tuple[str, ...]
    files_skipped: tuple[str, ...]
    rows_in: int
    rows_kept: int
    rows_quarantined: int
    quarantine_by_reason: Mapping[str, int] = field(default_factory=dict)
    anonymous_rows: int = 0
    non_product_rows: int = 0
    catalog_rows: int = 0
    catalog_quarantined: int = 0
    table_versions: Mapping[str, int | None] = field(default_factory=dict)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "rows_anonymous": self.anonymous_rows,
            "rows_non_product": self.non_product_rows,
            "files_ingested": len(self.files_ingested),
            "files_skipped": len(self.files_skipped),
            "catalog_rows": self.catalog_rows,
            "catalog_quarantined": self.catalog_quarantined,
        }
        out.update({f"quarantine_{k.lower()}": v for k, v in self.quarantine_by_reason.items()})
        return out


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    """Log each step with its duration, so long ingests show progress and where time goes."""
    started = time.monotonic()
    log.info("ingest: %s ...", name)
    yield
    log.info("ingest: %s done in %.1f s", name, time.monotonic() - started)


def make_adapter(source: str, cfg: IngestConfig) -> Adapter:
    if source == "online_retail":
        return OnlineRetailAdapter(cfg)
    if source == "event_log":
        return EventLogAdapter(cfg)
    raise ConfigError(f"unknown ingest source '{source}'", hint="use online_retail or event_log")


def run_ingest(
    spark: SparkSession,
    cfg: Config,
    tables: Tables,
    run: RunLogger | None = None,
    inputs: list[str] | None = None,
    framed: bool = False,
) -> IngestReport:
    """Ingest ``inputs`` (default: ``ingest.inputs``) with the ``ingest.source`` adapter.

    Exactly once, crash or not: the batch is staged, then committed table by table under one
    application transaction, and a rerun completes a batch a crash interrupted
    (``shoprec.stages.ingest_batch``). ``framed``: the inputs are files shoprec wrote itself,
    one message a line (``SourceFile.framed``: the stream's Kafka batches).
    """
    started = time.monotonic()
    icfg = cfg.ingest
    adapter = make_adapter(icfg.source, icfg)
    files = _source_files(cfg, inputs if inputs is not None else list(icfg.inputs), framed)
    adapter.check_files(files)  # before anything is written
    Q.check_java_patterns(spark, icfg.id_patterns)
    with ingest_lock(cfg.data_root, icfg.lock_timeout_s):
        return _ingest_locked(spark, cfg, tables, run, adapter, files, started)


def _ingest_locked(
    spark: SparkSession,
    cfg: Config,
    tables: Tables,
    run: RunLogger | None,
    adapter: Adapter,
    files: list[SourceFile],
    started: float,
) -> IngestReport:
    """The ingest proper, under the data root's ingest lock: what is done is read inside it."""
    done = _already_ingested(tables, adapter.source)
    new_files = [f for f in files if f.sha256 not in done]
    skipped = tuple(f.path for f in files if f.sha256 in done)
    for path in skipped:
        log.info("%s was ingested before (same content); skipping it", path)
    catalog = _catalog_file(cfg, tables)
    if not new_files and catalog is None:
        return IngestReport(
            adapter.source,
            (),
            skipped,
            0,
            0,
            0,
            seconds=time.monotonic() - started,
            table_versions=_versions(tables, adapter.source),
        )

    batch = IngestBatch(cfg.data_root, adapter.source, new_files, catalog)
    batch.finish_rollback(tables)
    names = _tables_written(adapter.source)
    if batch.manifest is None:
        _stage(spark, tables, adapter, batch, new_files, names)
    else:
        log.info("ingest %s: resuming attempt %d after a crash", batch.batch, batch.txn.version)
    try:
        catalog_kept, catalog_quarantined = _commit(spark, cfg, tables, adapter.source, batch, new_files, catalog, run)
    except faults.Crash:
        raise  # a simulated crash: the rerun resumes it
    except BaseException:
        batch.roll_back(tables)
        raise
    assert batch.manifest is not None  # staged above
    counts = batch.manifest.counts
    batch.discard()
    report = IngestReport(
        source=adapter.source,
        files_ingested=tuple(f.path for f in new_files),
        files_skipped=skipped,
        rows_in=counts["rows_in"],
        rows_kept=counts["kept"],
        rows_quarantined=counts["quarantined"],
        quarantine_by_reason=counts["by_reason"],
        anonymous_rows=counts["anon"],
        non_product_rows=counts["nonprod"],
        catalog_rows=catalog_kept,
        catalog_quarantined=catalog_quarantined,
        table_versions=_versions(tables, adapter.source),
        seconds=time.monotonic() - started,
    )
    if run is not None:
        run.counts(report.counts())
        run.dict(
            {
                "files_ingested": list(report.files_ingested),
                "files_skipped": list(report.files_skipped),
                "quarantine_by_reason": dict(report.quarantine_by_reason),
                "table_versions": dict(report.table_versions),
            },
            "ingest/report.json",
        )
    return report


def _stage(
    spark: SparkSession,
    tables: Tables,
    adapter: Adapter,
    batch: IngestBatch,
    new_files: list[SourceFile],
    names: list[str],
) -> None:
    """Parse, validate, classify and count the batch once; write its rows and manifest.
    The commits read the staged rows, so the parse's cache goes as soon as they are written."""
    ingested_at = datetime.now(UTC).replace(microsecond=0)
    counts: dict = {"rows_in": 0, "kept": 0, "quarantined": 0, "by_reason": {}, "anon": 0, "nonprod": 0}
    parsed: Parsed | None = None
    bronze_columns: list[str] = []
    try:
        if new_files:
            with _step(f"reading {len(new_files)} file(s)"):
                parsed = adapter.parse(spark, new_files, F.lit(ingested_at))
            with _step("validating, de-duplicating and staging the batch"):
                classified = _mark_duplicates(_with_file_sha(parsed.records, new_files), tables)
                classified.write.mode("overwrite").parquet(batch.rows_path)
                counts = _account(spark.read.parquet(batch.rows_path), parsed.line_count)
            bronze_columns = parsed.bronze_columns
        manifest = Manifest(
            batch.batch,
            batch.next_attempt(tables, names),
            ingested_at.isoformat(),
            tables.versions(names),
            counts,
            bronze_columns,
            [f.path for f in new_files],
        )
        batch.save(manifest)  # staged: from here on a rerun resumes instead of starting again
    except BaseException:
        batch.discard()
        raise
    finally:
        if parsed is not None:
            parsed.release()


def _commit(
    spark: SparkSession,
    cfg: Config,
    tables: Tables,
    source: str,
    batch: IngestBatch,
    new_files: list[SourceFile],
    catalog: SourceFile | None,
    run: RunLogger | None,
) -> tuple[int, int]:
    """Every table commit of the batch, each under the batch's txn (skipped when it landed
    before a crash); the ingest log, which marks the files as done, last. Returns the
    catalog's (rows kept, rows quarantined)."""
    assert batch.manifest is not None
    txn, ingested_at, counts = batch.txn, batch.ingested_at, batch.manifest.counts
    log_rows = []
    catalog_counts = (0, 0)
    if new_files:
        staged = spark.read.parquet(batch.rows_path)
        with _step("writing bronze, quarantine and silver.interactions"):
            _write_batch(tables, source, staged, batch.manifest.bronze_columns, ingested_at, counts, txn)
        log_rows += _ingest_log_rows(source, new_files, staged, ingested_at, run)
    if catalog is not None:
        with _step("upserting the item catalog"):
            catalog_counts = _write_catalog(tables, read_catalog(spark, catalog.path, catalog.format), ingested_at, txn)
        log_rows.append(_log_row("catalog", catalog, *catalog_counts, ingested_at, run))
    with _step("recomputing silver.items and silver.users"):
        staged_rows = spark.read.parquet(batch.rows_path) if new_files else None
        _write_items_and_users(tables, staged_rows, catalog is not None, txn)
    tables.append(spark.createDataFrame(log_rows, _LOG_SCHEMA), C.BRONZE_INGEST_LOG, txn=txn)
    return catalog_counts


# ----------------------------------------------------------------------------- steps
def _write_items_and_users(tables: Tables, staged: DataFrame | None, catalog_changed: bool, txn: Txn) -> None:
    """silver.items and silver.users from silver.interactions, under ``txn``.

    Both are per-key aggregates (``build_items``: per item, ``build_users``: per user), so when
    the tables exist and the catalog did not change, only the keys of the batch's kept rows
    are recomputed, from those keys' interactions, and replaced in one commit each: the same
    rows a rebuild gives, without aggregating the whole of silver for a stream's few events.
    """
    interactions = tables.read(C.SILVER_INTERACTIONS)
    catalog_df = tables.read(C.SILVER_CATALOG) if tables.exists(C.SILVER_CATALOG) else None
    whole = catalog_changed or staged is None or not (tables.exists(C.SILVER_ITEMS) and tables.exists(C.SILVER_USERS))
    if whole:
        tables.overwrite(build_items(interactions, catalog_df), C.SILVER_ITEMS, txn=txn)
        tables.overwrite(build_users(interactions), C.SILVER_USERS, txn=txn)
        return
    assert staged is not None  # not whole: a batch with rows
    kept = staged.where(F.col(C.REASON).isNull())
    for name, key, build in (
        (C.SILVER_ITEMS, C.ITEM_ID, lambda rows: build_items(rows, catalog_df)),
        (C.SILVER_USERS, C.USER_ID, build_users),
    ):
        keys = kept.select(key).where(F.col(key).isNotNull()).distinct()
        tables.replace_keys(build(interactions.join(keys, on=key, how="left_semi")), name, key, keys, txn=txn)


def _source_files(cfg: Config, inputs: list[str], framed: bool = False) -> list[SourceFile]:
    if not inputs:
        raise ConfigError("no input files to ingest", hint="pass --input PATH or set ingest.inputs")
    files = []
    for path in expand_inputs([cfg.resolve_path(p) for p in inputs]):
        fmt = detect_format(path, cfg.ingest.format)
        sha, size = fingerprint(path, framed)
        read_path = None
        if fmt == "xlsx":
            read_path = xlsx_to_csv(path, paths.staging(cfg.data_root, "xlsx"), sha)
        files.append(SourceFile(path, fmt, sha, size, read_path, framed))
    return files


def _already_ingested(tables: Tables, source: str) -> set[str]:
    if not tables.exists(C.BRONZE_INGEST_LOG):
        return set()
    log_df = tables.read(C.BRONZE_INGEST_LOG).filter(F.col(C.SOURCE) == source)
    return {r[0] for r in log_df.select(_FILE_SHA).distinct().collect()}  # small: one row per file


def _with_file_sha(records: DataFrame, files: list[SourceFile]) -> DataFrame:
    mapping = F.create_map(*[x for f in files for x in (F.lit(f.path), F.lit(f.sha256))])
    return records.withColumn(_FILE_SHA, mapping[F.col(C.META_SOURCE_FILE)])


def _mark_duplicates(records: DataFrame, tables: Tables) -> DataFrame:
    """Second and later copies of a good event, and events already in silver, become DUPLICATE."""
    good = F.col(C.REASON).isNull()
    order = Window.partitionBy(C.INTERACTION_ID).orderBy(
        good.desc(), F.col(C.META_SOURCE_FILE), F.col(C.META_LINE_NUMBER)
    )
    first = F.first(
        F.concat(F.lit("line "), F.col(C.META_LINE_NUMBER).cast("string"), F.lit(" of "), F.col(C.META_SOURCE_FILE))
    ).over(order)
    ranked = records.withColumn("_copy", F.row_number().over(order)).withColumn("_first", first)
    if tables.exists(C.SILVER_INTERACTIONS):
        # Ids are unique in silver (every ingest marks repeats DUPLICATE): no distinct, no shuffle of it.
        existing = tables.read(C.SILVER_INTERACTIONS).select(C.INTERACTION_ID).withColumn("_in_silver", F.lit(True))
        ranked = ranked.join(existing, on=C.INTERACTION_ID, how="left")
    else:
        ranked = ranked.withColumn("_in_silver", F.lit(None).cast("boolean"))
    in_silver = good & F.coalesce(F.col("_in_silver"), F.lit(False))
    repeat = good & (F.col("_copy") > 1)
    return (
        ranked.withColumn(
            C.REASON_DETAIL,
            F.when(in_silver, F.lit(f"already in {C.SILVER_INTERACTIONS}"))
            .when(repeat, F.concat(F.lit("same event as "), F.col("_first")))
            .otherwise(F.col(C.REASON_DETAIL)),
        )
        .withColumn(C.REASON, F.when(in_silver | repeat, F.lit(Q.DUPLICATE)).otherwise(F.col(C.REASON)))
        .drop("_copy", "_first", "_in_silver")
    )


def _account(classified: DataFrame, line_count: int) -> dict:
    """Counts by reason; fail when rows in != kept + quarantined."""
    by_reason_df = classified.groupBy(C.REASON).agg(
        F.count("*").alias("n"),
        F.count(F.when(F.col(C.IS_ANONYMOUS), True)).alias("anon"),
        F.count(F.when(~F.col(C.IS_PRODUCT), True)).alias("nonprod"),
    )
    rows = by_reason_df.collect()  # small: one row per reason code
    by_reason = {r[C.REASON]: r["n"] for r in rows if r[C.REASON] is not None}
    kept_row = next((r for r in rows if r[C.REASON] is None), None)
    kept = kept_row["n"] if kept_row else 0
    quarantined = sum(by_reason.values())
    if kept + quarantined != line_count:
        raise DataQualityError(
            f"ingest accounting failed: {line_count} rows read but {kept} kept + {quarantined} quarantined",
            hint="this is a bug in shoprec; nothing was written",
        )
    return {
        "rows_in": line_count,
        "kept": kept,
        "quarantined": quarantined,
        "by_reason": dict(sorted(by_reason.items())),
        "anon": kept_row["anon"] if kept_row else 0,
        "nonprod": kept_row["nonprod"] if kept_row else 0,
    }


def _write_batch(
    tables: Tables,
    source: str,
    classified: DataFrame,
    bronze_columns: list[str],
    ingested_at: datetime,
    counts: dict,
    txn: Txn,
) -> None:
    """bronze, quarantine and silver.interactions, one commit each under ``txn``."""
    at = F.lit(ingested_at).cast("timestamp")
    bronze = classified.select(
        *[F.col(f"{C.META_SOURCE_COLUMNS}.`{c}`").alias(c) for c in bronze_columns],
        F.col(C.META_SOURCE_FILE),
        F.col(_FILE_SHA),
        F.col(C.META_LINE_NUMBER),
        at.alias(C.META_INGESTED_AT),
    )
    tables.merge(
        bronze,
        C.bronze_table(source),
        keys=[_FILE_SHA, C.META_LINE_NUMBER],
        update_matched=False,
        check_keys=False,
        txn=txn,
    )  # (file, line) is unique by construction

    quarantine = classified.filter(F.col(C.REASON).isNotNull()).select(
        F.lit(source).alias(C.SOURCE),
        F.col(C.META_SOURCE_FILE).alias(C.SOURCE_FILE),
        F.col(_FILE_SHA).alias("file_sha256"),
        F.col(C.META_LINE_NUMBER).alias(C.LINE_NUMBER),
        F.col(C.REASON),
        F.col(C.REASON_DETAIL),
        F.col(C.META_RAW).alias(C.RAW_LINE),
        at.alias(C.INGESTED_AT),
    )
    q = tables.merge(
        quarantine,
        C.quarantine_table(source),
        keys=["file_sha256", C.LINE_NUMBER],
        update_matched=False,
        check_keys=False,
        txn=txn,
    )

    silver = classified.filter(F.col(C.REASON).isNull()).select(
        *[
            (
                F.lit(source)
                if f.name == C.SOURCE
                else F.col(C.META_SOURCE_FILE)
                if f.name == C.SOURCE_FILE
                else F.col(C.META_LINE_NUMBER)
                if f.name == C.LINE_NUMBER
                else at
                if f.name == C.INGESTED_AT
                else F.col(f.name)
            )
            .cast(f.dataType)
            .alias(f.name)
            for f in INTERACTIONS_SCHEMA.fields
        ]
    )
    # Unique: _mark_duplicates turned every repeat of an id into a DUPLICATE row.
    s = tables.merge(
        silver, C.SILVER_INTERACTIONS, keys=[C.INTERACTION_ID], update_matched=False, check_keys=False, txn=txn
    )
    # A skipped commit landed whole before a crash; one made now must add exactly the batch.
    if (not s.skipped and s.inserted != counts["kept"]) or (not q.skipped and q.inserted != counts["quarantined"]):
        raise DataQualityError(
            f"ingest wrote {s.inserted} silver and {q.inserted} quarantine rows, expected "
            f"{counts['kept']} and {counts['quarantined']}",
            hint="another ingest may be running on the same tables; rerun when it is done",
        )


def _ingest_log_rows(
    source: str, files: list[SourceFile], classified: DataFrame, ingested_at: datetime, run: RunLogger | None
) -> list[tuple]:
    per_file_df = classified.groupBy(C.META_SOURCE_FILE).agg(
        F.count(F.when(F.col(C.REASON).isNull(), True)), F.count(F.when(F.col(C.REASON).isNotNull(), True))
    )
    per_file = {r[0]: (r[1], r[2]) for r in per_file_df.collect()}  # small: one row per file
    return [_log_row(source, f, *per_file.get(f.path, (0, 0)), ingested_at, run) for f in files]


def _log_row(
    source: str, f: SourceFile, kept: int, quarantined: int, ingested_at: datetime, run: RunLogger | None
) -> tuple:
    """One bronze.ingest_log row (``_LOG_SCHEMA``): a file of ``source`` is done."""
    return (
        source,
        f.path,
        f.sha256,
        f.size,
        f.format,
        kept + quarantined,
        kept,
        quarantined,
        ingested_at,
        run.run_id if run else None,
    )


def _catalog_file(cfg: Config, tables: Tables) -> SourceFile | None:
    """The configured catalog, unless this exact file was ingested before."""
    if not cfg.ingest.catalog:
        return None
    found = expand_inputs([cfg.resolve_path(cfg.ingest.catalog)])
    if len(found) != 1:
        raise ConfigError(f"ingest.catalog must name one file, it matches {len(found)}")
    sha, size = fingerprint(found[0])
    if sha in _already_ingested(tables, "catalog"):
        log.info("catalog %s was ingested before (same content); skipping it", found[0])
        return None
    return SourceFile(found[0], detect_format(found[0]), sha, size)


def _classify_catalog(catalog: DataFrame) -> DataFrame:
    """Catalog rows with a ``reason``: MISSING_KEY without an item id, DUPLICATE for a repeat."""
    missing = F.col(C.ITEM_ID).isNull() | (F.col(C.ITEM_ID) == "")
    order = Window.partitionBy(C.ITEM_ID).orderBy(F.col("_row"))
    return (
        catalog.withColumn("_row", F.monotonically_increasing_id())
        .withColumn("_copy", F.when(missing, F.lit(None)).otherwise(F.row_number().over(order)))
        .withColumn(C.REASON, F.when(missing, F.lit(Q.MISSING_KEY)).when(F.col("_copy") > 1, F.lit(Q.DUPLICATE)))
    )


def _catalog_counts(ranked: DataFrame) -> tuple[int, int]:
    """(rows kept, rows quarantined) of a classified catalog; their sum is every row read."""
    row = ranked.agg(
        F.count(F.when(F.col(C.REASON).isNull(), True)).alias("kept"),
        F.count(F.when(F.col(C.REASON).isNotNull(), True)).alias("bad"),
    ).first()
    assert row is not None  # a global aggregate: one row
    return int(row["kept"]), int(row["bad"])


def _write_catalog(tables: Tables, catalog: DataFrame, ingested_at: datetime, txn: Txn) -> tuple[int, int]:
    """Upsert the catalog on item id; rows without an id, or repeating one, go to quarantine.catalog.

    Returns (rows kept, rows quarantined), counted from the file itself, so that a rerun whose
    commits were skipped (they landed before a crash) reports the same numbers.
    """
    ranked = _classify_catalog(catalog).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        good = ranked.filter(F.col(C.REASON).isNull()).select(*catalog.columns)
        tables.merge(good, C.SILVER_CATALOG, keys=[C.ITEM_ID], update_matched=True, check_keys=False, txn=txn)
        bad = ranked.filter(F.col(C.REASON).isNotNull()).select(
            F.lit("catalog").alias(C.SOURCE),
            C.REASON,
            F.when(F.col(C.REASON) == Q.MISSING_KEY, F.lit("item id is empty"))
            .otherwise(F.lit("item id repeated in the catalog (first row kept)"))
            .alias(C.REASON_DETAIL),
            F.to_json(F.struct(*catalog.columns)).alias(C.RAW_LINE),
            F.lit(ingested_at).cast("timestamp").alias(C.INGESTED_AT),
        )
        tables.append(bad, C.quarantine_table("catalog"), txn=txn)
        return _catalog_counts(ranked)
    finally:
        ranked.unpersist()


def _tables_written(source: str) -> list[str]:
    return [
        C.bronze_table(source),
        C.quarantine_table(source),
        C.SILVER_INTERACTIONS,
        C.SILVER_ITEMS,
        C.SILVER_USERS,
        C.BRONZE_INGEST_LOG,
        C.SILVER_CATALOG,
        C.quarantine_table("catalog"),
    ]


def _versions(tables: Tables, source: str) -> dict[str, int | None]:
    return {name: tables.version(name) for name in _tables_written(source) if tables.exists(name)}


# ------------------------------------------------------------------------------ the stage
def ingest_stage(ctx: JobContext, inputs: list[str] | None = None) -> IngestReport:
    """``shoprec ingest``: source files -> bronze, quarantine and silver tables."""
    from shoprec.tracking import job_run

    with job_run(ctx.cfg, "ingest", tags={"shoprec.source": ctx.cfg.ingest.source}) as run:
        report = run_ingest(ctx.spark, ctx.cfg, ctx.tables, run, inputs)
    _print_ingest(ctx, report)
    return report


def _print_ingest(ctx: JobContext, report: IngestReport) -> None:
    ctx.say(f"ingest ({report.source}) finished in {report.seconds:.1f} s")
    for path in report.files_skipped:
        ctx.say(f"  skipped (already ingested): {path}")
    for path in report.files_ingested:
        ctx.say(f"  ingested: {path}")
    if report.files_ingested:
        ctx.say(
            f"  rows in {report.rows_in:,} = kept {report.rows_kept:,} + quarantined {report.rows_quarantined:,}"
            f"  (anonymous kept: {report.anonymous_rows:,}; non-product kept: {report.non_product_rows:,})"
        )
        for reason, n in report.quarantine_by_reason.items():
            ctx.say(f"    quarantined {reason:<24} {n:>9,}")
    ctx.say("  tables:")
    for name, version in report.table_versions.items():
        ctx.say(f"    {name:<28} version {version}   {ctx.tables.path(name)}")
