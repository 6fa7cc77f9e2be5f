"""``shoprec stream``: event-log files landing in a folder, ingested micro-batch by micro-batch.

    <landing>/*  (stream.landing; producers rename finished files in)
        └─► Spark Structured Streaming, file source: every new file once, in micro-batches of
            up to stream.max_files_per_trigger; offsets and commits in
            <data_root>/_checkpoints/stream/<name>
              └─► foreachBatch: the batch's files -> ``run_ingest`` (the event-log adapter's
                  validation and quarantine, the staged batch and its Txn-keyed commits, under
                  the data root's ingest lock)

Exactly once: Spark writes a micro-batch's files to its offset log before running it and marks
it done in its commit log after. A stream killed mid-batch reruns that batch with the same files
when it restarts, and the ingest's batch key (the files' content hash) makes the rerun resume the
staged batch and skip every commit that had landed (``shoprec.stages.ingest_batch``); a batch
whose ingest log commit landed is skipped whole. ``--available-now`` processes what is there and
stops (tests, backfills); otherwise a micro-batch starts every stream.trigger_seconds.

Each batch logs its files, rows and seconds, and its latency: from the newest file's arrival
(modification time) to the end of its commits. Live user state and the online API build on this
loop (issue 21).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import paths
from shoprec.config import Config
from shoprec.stages.context import JobContext
from shoprec.stages.ingest import run_ingest
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)

# The landing folder's files each format reads (the event-log adapter detects the format).
GLOBS = {"jsonl": "*.json*", "csv": "*.csv*", "parquet": "*.parquet"}
# Spark's binaryFile schema (a streaming source must be given one).
_BINARY_FILE = "path string, modificationTime timestamp, length long, content binary"


@dataclass(frozen=True)
class BatchReport:
    batch_id: int
    files: tuple[str, ...]
    rows_in: int
    rows_kept: int
    rows_quarantined: int
    seconds: float
    latency_s: float  # newest file's arrival -> its rows committed


@dataclass
class StreamReport:
    name: str
    landing: str
    batches: list[BatchReport] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict[str, float]:
        b = self.batches
        return {
            "batches": len(b),
            "files": sum(len(x.files) for x in b),
            "rows_in": sum(x.rows_in for x in b),
            "rows_kept": sum(x.rows_kept for x in b),
            "rows_quarantined": sum(x.rows_quarantined for x in b),
            "max_batch_latency_s": max((x.latency_s for x in b), default=0.0),
        }

    def summary_lines(self) -> list[str]:
        t = self.totals()
        lines = [
            f"stream {self.name} ({self.landing}) finished in {self.seconds:.1f} s: {t['batches']:.0f} batch(es), "
            f"{t['files']:.0f} file(s), rows in {t['rows_in']:,.0f} = kept {t['rows_kept']:,.0f} "
            f"+ quarantined {t['rows_quarantined']:,.0f}"
        ]
        for x in self.batches:
            lines.append(
                f"  batch {x.batch_id}: {len(x.files)} file(s), {x.rows_in:,} rows, {x.seconds:.1f} s, "
                f"latency {x.latency_s:.1f} s"
            )
        return lines


def stream_config(cfg: Config) -> Config:
    """The config the stream ingests with: the event-log adapter, formats detected per file."""
    return dataclasses.replace(cfg, ingest=dataclasses.replace(cfg.ingest, source="event_log", format="auto"))


def landing_dir(cfg: Config) -> str:
    return paths.under_root(cfg.data_root, cfg.stream.landing)


def run_stream(ctx: JobContext, available_now: bool, run: RunLogger | None = None) -> StreamReport:
    """Run the stream until it has nothing left (``available_now``) or is stopped."""
    scfg = ctx.cfg.stream
    landing = landing_dir(ctx.cfg)
    if paths.is_local(landing):
        os.makedirs(paths.local_path(landing), exist_ok=True)  # Spark's file source needs the folder
    icfg = stream_config(ctx.cfg)
    report = StreamReport(scfg.name, landing)
    started = time.perf_counter()

    def each_batch(batch: DataFrame, batch_id: int) -> None:
        report.batches.append(_ingest_batch(ctx, icfg, batch, batch_id, run))

    files = (
        ctx.spark.readStream.format("binaryFile")
        .schema(_BINARY_FILE)
        .option("pathGlobFilter", GLOBS[scfg.format])
        .option("maxFilesPerTrigger", scfg.max_files_per_trigger)
        .load(landing)
        .select("path", "modificationTime")  # never the content: the ingest reads the files
    )
    writer = (
        files.writeStream.queryName(scfg.name)
        .option("checkpointLocation", paths.stream_checkpoint(ctx.cfg.data_root, scfg.name))
        .foreachBatch(each_batch)
    )
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime=f"{scfg.trigger_seconds} seconds")
    )
    query = writer.start()
    try:
        query.awaitTermination()
    finally:
        if query.isActive:
            query.stop()
    report.seconds = time.perf_counter() - started
    return report


def _ingest_batch(ctx: JobContext, icfg: Config, batch: DataFrame, batch_id: int, run: RunLogger | None) -> BatchReport:
    """One micro-batch: its files through the batch ingest (resumed when a crash left it staged)."""
    t0 = time.perf_counter()
    rows = batch.select("path", F.col("modificationTime").alias("_at")).collect()  # small: one row per file
    if not rows:
        return BatchReport(batch_id, (), 0, 0, 0, 0.0, 0.0)
    inputs = sorted({paths.local_path(r["path"]) for r in rows})
    newest = max(r["_at"] for r in rows)
    log.info("stream batch %d: %d file(s)", batch_id, len(inputs))
    ingested = run_ingest(ctx.spark, icfg, ctx.tables, None, inputs)
    # PySpark returns timestamps naive, in this process's zone: .timestamp() reads them back so.
    latency = max(0.0, time.time() - newest.timestamp())
    out = BatchReport(
        batch_id,
        tuple(inputs),
        ingested.rows_in,
        ingested.rows_kept,
        ingested.rows_quarantined,
        time.perf_counter() - t0,
        latency,
    )
    if run is not None:
        run.step_metrics(
            {"batch.rows_in": out.rows_in, "batch.seconds": out.seconds, "batch.latency_s": out.latency_s}, batch_id
        )
    log.info(
        "stream batch %d: rows in %d = kept %d + quarantined %d in %.1f s (latency %.1f s)",
        batch_id,
        out.rows_in,
        out.rows_kept,
        out.rows_quarantined,
        out.seconds,
        out.latency_s,
    )
    return out


def stream_stage(ctx: JobContext, available_now: bool = False) -> StreamReport:
    """``shoprec stream``: ingest event-log files as they land."""
    from shoprec.tracking import job_run

    with job_run(ctx.cfg, "stream", tags={"shoprec.stream": ctx.cfg.stream.name}) as run:
        report = run_stream(ctx, available_now, run)
        run.counts(report.totals())
    for line in report.summary_lines():
        ctx.say(line)
    return report
