"""``shoprec stream``: new events, from files landing in a folder or from a Kafka topic, ingested
micro-batch by micro-batch.

    stream.source=landing: <landing>/*  (stream.landing; producers rename finished files in)
        └─► Spark's file source: every new file once, up to stream.max_files_per_trigger a batch
    stream.source=kafka: the topic(s) stream.kafka_topic (one message, one event: its value the
        event's JSON)
        └─► Spark's Kafka source: up to stream.kafka_max_offsets_per_trigger messages a batch,
            written as ONE file, <data_root>/_staging/stream/<name>/batch-<id>-<offsets>.jsonl
            (a line a message, in topic, partition, offset order)
              └─► (either) foreachBatch: the batch's files -> ``run_ingest`` (the event-log
                  adapter's validation and quarantine, the staged batch and its Txn-keyed
                  commits, under the data root's ingest lock); offsets and commits of the query
                  in <data_root>/_checkpoints/stream/<name>

Exactly once: Spark writes a micro-batch's files, or its Kafka offset ranges, to its offset log
before running it and marks it done in its commit log after. A stream killed mid-batch reruns
that batch with the same files, or the same messages (Kafka keeps them; offsets are their
identity), when it restarts; a Kafka batch is written again byte for byte under the same name.
The ingest's batch key (the files' content hash; a Kafka batch file's name, which holds its
offset ranges, is hashed with it) makes the rerun resume the staged batch and skip every commit
that had landed (``shoprec.stages.ingest_batch``); a batch whose ingest log commit landed is
skipped whole. A Kafka value that is not an event (not JSON, empty, not UTF-8) is a quarantine
row with its reason like a bad line of a file: the batch file is ``framed`` (no file-level format
check refuses it). Its line breaks become spaces so that a message stays one line. The batch
file goes once its ingest committed: every message is in bronze then (the bad ones with their
text in quarantine), and in Kafka for its retention.

``--available-now`` processes what is there and stops (tests, backfills); otherwise a
micro-batch starts every stream.trigger_seconds. Each batch logs its files or offsets, rows and
seconds, and its latency: from the newest file's arrival (modification time), or the newest
message's Kafka timestamp, to the end of its commits. Live user state and the online API build
on this loop (issue 21).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec import paths
from shoprec.config import Config
from shoprec.errors import ConfigError
from shoprec.stages.context import JobContext
from shoprec.stages.ingest import run_ingest
from shoprec.stages.live import LiveReport, LiveState, refresh_live
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)

# The landing folder's files each format reads (the event-log adapter detects the format).
GLOBS = {"jsonl": "*.json*", "csv": "*.csv*", "parquet": "*.parquet"}
# Spark's binaryFile schema (a streaming source must be given one).
_BINARY_FILE = "path string, modificationTime timestamp, length long, content binary"
# What a Kafka batch keeps of each message (key and headers are not the event's).
_KAFKA_COLUMNS = ("topic", "partition", "offset", "timestamp", "value")


@dataclass(frozen=True)
class BatchReport:
    batch_id: int
    files: tuple[str, ...]  # landing: the batch's files; kafka: the one file it was written to
    rows_in: int
    rows_kept: int
    rows_quarantined: int
    seconds: float
    latency_s: float  # newest file's arrival (message's Kafka timestamp) -> its rows committed
    offsets: str = ""  # kafka: the batch's offsets, "topic/partition:first-last, ..."
    live_users: int = 0  # users given a fresh gold.live_recommendations list
    live_seconds: float = 0.0
    live_latency_s: float | None = None  # newest arrival -> the live lists committed


@dataclass
class StreamReport:
    name: str
    origin: str  # the landing folder, or kafka:<topic>@<bootstrap servers>
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
            f"stream {self.name} ({self.origin}) finished in {self.seconds:.1f} s: {t['batches']:.0f} batch(es), "
            f"{t['files']:.0f} file(s), rows in {t['rows_in']:,.0f} = kept {t['rows_kept']:,.0f} "
            f"+ quarantined {t['rows_quarantined']:,.0f}"
        ]
        for x in self.batches:
            what = f"offsets {x.offsets}" if x.offsets else f"{len(x.files)} file(s)"
            live = (
                f"; live lists for {x.live_users:,} user(s) in {x.live_seconds:.1f} s, latency {x.live_latency_s:.1f} s"
                if x.live_latency_s is not None
                else ""
            )
            lines.append(
                f"  batch {x.batch_id}: {what}, {x.rows_in:,} rows, {x.seconds:.1f} s, "
                f"latency {x.latency_s:.1f} s{live}"
            )
        return lines


@dataclass(frozen=True)
class _Inputs:
    """What one micro-batch hands the ingest."""

    files: tuple[str, ...]
    newest: datetime  # the newest file's modification time, or message's Kafka timestamp
    framed: bool = False  # files written here from Kafka messages (``SourceFile.framed``)
    offsets: str = ""


def stream_config(cfg: Config) -> Config:
    """The config the stream ingests with: the event-log adapter, formats detected per file."""
    return dataclasses.replace(cfg, ingest=dataclasses.replace(cfg.ingest, source="event_log", format="auto"))


def landing_dir(cfg: Config) -> str:
    return paths.under_root(cfg.data_root, cfg.stream.landing)


def kafka_batches_dir(cfg: Config) -> str:
    """Where a Kafka micro-batch is written as one file before its ingest (local: the ingest
    fingerprints its inputs on the driver)."""
    if not paths.is_local(cfg.data_root):
        raise ConfigError(
            f"stream.source=kafka writes each batch to a file under the data root, and {cfg.data_root} is not local",
            hint="use a local or mounted data root (e.g. /dbfs/...) for the stream",
        )
    return paths.staging(paths.local_path(cfg.data_root), os.path.join("stream", cfg.stream.name))


def run_stream(ctx: JobContext, available_now: bool, run: RunLogger | None = None) -> StreamReport:
    """Run the stream until it has nothing left (``available_now``) or is stopped."""
    scfg = ctx.cfg.stream
    icfg = stream_config(ctx.cfg)
    if scfg.source == "kafka":
        source = _kafka_source(ctx)
        origin = f"kafka:{scfg.kafka_topic}@{scfg.kafka_bootstrap_servers}"
    else:
        source = _landing_source(ctx)
        origin = landing_dir(ctx.cfg)
    report = StreamReport(scfg.name, origin)
    started = time.perf_counter()
    # The all-users parts of the live lists, computed by the first batch and reused by the
    # next ones until a recommend run replaces the batch lists (``stages.live.Shared``).
    live = LiveState()

    def each_batch(batch: DataFrame, batch_id: int) -> None:
        report.batches.append(_ingest_batch(ctx, icfg, batch, batch_id, run, live))

    writer = (
        source.writeStream.queryName(scfg.name)
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
        live.close()
    report.seconds = time.perf_counter() - started
    return report


def _landing_source(ctx: JobContext) -> DataFrame:
    scfg = ctx.cfg.stream
    landing = landing_dir(ctx.cfg)
    if paths.is_local(landing):
        os.makedirs(paths.local_path(landing), exist_ok=True)  # Spark's file source needs the folder
    return (
        ctx.spark.readStream.format("binaryFile")
        .schema(_BINARY_FILE)
        .option("pathGlobFilter", GLOBS[scfg.format])
        .option("maxFilesPerTrigger", scfg.max_files_per_trigger)
        .load(landing)
        .select("path", "modificationTime")  # never the content: the ingest reads the files
    )


def _kafka_source(ctx: JobContext) -> DataFrame:
    scfg = ctx.cfg.stream
    kafka_batches_dir(ctx.cfg)  # a data root the batches cannot be written under fails here
    reader = (
        ctx.spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", scfg.kafka_bootstrap_servers)
        .option("subscribe", scfg.kafka_topic)
        .option("startingOffsets", scfg.kafka_starting_offsets)
        .option("maxOffsetsPerTrigger", scfg.kafka_max_offsets_per_trigger)
        .option("failOnDataLoss", str(scfg.kafka_fail_on_data_loss).lower())
    )
    for name, value in scfg.kafka_options.items():  # values may be secrets: never logged here
        reader = reader.option(name if name.startswith("kafka.") else f"kafka.{name}", value)
    return reader.load().select(*_KAFKA_COLUMNS)


def _ingest_batch(
    ctx: JobContext, icfg: Config, batch: DataFrame, batch_id: int, run: RunLogger | None, state: LiveState
) -> BatchReport:
    """One micro-batch: its files through the batch ingest (resumed when a crash left it staged)."""
    t0 = time.perf_counter()
    inputs = _kafka_inputs(ctx.cfg, batch, batch_id) if ctx.cfg.stream.source == "kafka" else _landed_inputs(batch)
    if inputs is None:
        return BatchReport(batch_id, (), 0, 0, 0, 0.0, 0.0)
    what = f"offsets {inputs.offsets}" if inputs.offsets else f"{len(inputs.files)} file(s)"
    log.info("stream batch %d: %s", batch_id, what)
    ingested = run_ingest(ctx.spark, icfg, ctx.tables, None, list(inputs.files), framed=inputs.framed)
    # PySpark returns timestamps naive, in this process's zone: .timestamp() reads them back so.
    latency = max(0.0, time.time() - inputs.newest.timestamp())
    out = BatchReport(
        batch_id,
        inputs.files,
        ingested.rows_in,
        ingested.rows_kept,
        ingested.rows_quarantined,
        time.perf_counter() - t0,
        latency,
        inputs.offsets,
    )
    live = _refresh_live(ctx, inputs, batch_id, state) if ctx.cfg.stream.live_lists and out.rows_kept else None
    if live is not None:
        out = dataclasses.replace(
            out,
            live_users=live.users,
            live_seconds=live.seconds,
            live_latency_s=max(0.0, time.time() - inputs.newest.timestamp()),
        )
    if inputs.framed:
        for path in inputs.files:  # committed: its messages are in bronze (and in Kafka)
            os.remove(path)
    if run is not None:
        metrics = {"batch.rows_in": out.rows_in, "batch.seconds": out.seconds, "batch.latency_s": out.latency_s}
        if live is not None:
            metrics.update({**live.metrics(), "batch.live_latency_s": out.live_latency_s or 0.0})
        run.step_metrics(metrics, batch_id)
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


def _refresh_live(ctx: JobContext, inputs: _Inputs, batch_id: int, state: LiveState) -> LiveReport | None:
    """Fresh live lists for the users whose events this batch kept (``stages.live``), keyed by
    (stream, batch id): a batch rerun after a crash refreshes at most once. None: no batch
    lists to start from yet, or no kept event has a user."""
    if not ctx.tables.exists(C.GOLD_RECOMMENDATIONS):  # no batch lists to start from (refresh_live says so too)
        return None
    kept = ctx.tables.read(C.SILVER_INTERACTIONS).where(F.col(C.SOURCE_FILE).isin(list(inputs.files)))
    kept = kept.where(F.col(C.USER_ID).isNotNull()).persist()
    try:
        row = kept.agg(F.max(C.EVENT_TS).alias("through")).first()
        if row is None or row["through"] is None:
            return None
        users = kept.select(C.USER_ID).distinct()
        return refresh_live(ctx, users, row["through"], txn=(ctx.cfg.stream.name, batch_id), state=state)
    finally:
        kept.unpersist()


def _landed_inputs(batch: DataFrame) -> _Inputs | None:
    rows = batch.select("path", F.col("modificationTime").alias("_at")).collect()  # small: one row per file
    if not rows:
        return None
    return _Inputs(tuple(sorted({paths.local_path(r["path"]) for r in rows})), max(r["_at"] for r in rows))


def _kafka_inputs(cfg: Config, batch: DataFrame, batch_id: int) -> _Inputs | None:
    """The batch's messages as one JSON-lines file, the same bytes every time the batch runs.

    A line a message, in (topic, partition, offset) order; a null value is a blank line and
    line breaks inside a value become spaces (JSON allows whitespace between its tokens), so
    line n is the batch's n-th message. The name holds the batch id and a hash of its offset
    ranges, and the ingest hashes it with the content (``fingerprint``). Written to a temporary
    name and renamed: a file of that name is whole.
    """
    rows = batch.select(*_KAFKA_COLUMNS).collect()  # small: at most kafka_max_offsets_per_trigger messages
    if not rows:
        return None
    rows.sort(key=lambda r: (r["topic"], r["partition"], r["offset"]))
    ranges: dict[tuple[str, int], list[int]] = {}
    for r in rows:
        span = ranges.setdefault((r["topic"], r["partition"]), [r["offset"], r["offset"]])
        span[1] = r["offset"]
    offsets = ", ".join(f"{t}/{p}:{a}-{b}" for (t, p), (a, b) in ranges.items())
    digest = hashlib.sha256(offsets.encode()).hexdigest()[:16]
    folder = kafka_batches_dir(cfg)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"batch-{batch_id:012d}-{digest}.jsonl")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    with open(tmp, "wb") as fh:
        for r in rows:
            value = bytes(r["value"]) if r["value"] is not None else b""
            fh.write(value.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return _Inputs((path,), max(r["timestamp"] for r in rows), framed=True, offsets=offsets)


def stream_stage(ctx: JobContext, available_now: bool = False) -> StreamReport:
    """``shoprec stream``: ingest events as they land in the folder or arrive on the topic."""
    from shoprec.tracking import job_run

    scfg = ctx.cfg.stream
    with job_run(ctx.cfg, "stream", tags={"shoprec.stream": scfg.name, "shoprec.stream.source": scfg.source}) as run:
        report = run_stream(ctx, available_now, run)
        run.counts(report.totals())
    for line in report.summary_lines():
        ctx.say(line)
    return report
