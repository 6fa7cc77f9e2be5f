"""Stage runners: load config, get the session and tables, open the MLflow run, call the library.

The CLI and the ``jobs/*.py`` scripts both end up here, so ``shoprec ingest`` and
``spark-submit jobs/ingest.py`` do exactly the same thing.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TextIO

from pyspark.sql import SparkSession

from shoprec.config import Config
from shoprec.tables import Tables, open_tables

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Everything a stage needs; built once per process."""

    cfg: Config
    spark: SparkSession
    tables: Tables
    out: TextIO = sys.stdout

    @classmethod
    def create(cls, cfg: Config, out: TextIO = sys.stdout) -> "JobContext":
        from shoprec.spark import get_spark

        spark = get_spark(cfg.spark)
        return cls(cfg, spark, open_tables(spark, cfg.data_root, cfg.storage.delta_backend), out)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


def ingest_stage(ctx: JobContext, inputs: list[str] | None = None) -> "object":
    """``shoprec ingest``: source files -> bronze, quarantine and silver tables."""
    from shoprec.ingest.job import run_ingest
    from shoprec.tracking import job_run

    with job_run(ctx.cfg, "ingest", tags={"shoprec.source": ctx.cfg.ingest.source}) as run:
        report = run_ingest(ctx.spark, ctx.cfg, ctx.tables, run, inputs)
    _print_ingest(ctx, report)
    return report


def pipeline_stage(ctx: JobContext) -> None:
    """``shoprec pipeline``: every stage in order under one parent MLflow run.

    Today the pipeline is ingest; features, ALS, the hybrid model, recommendations and
    evaluation join it as they land.
    """
    import mlflow

    from shoprec.tracking import configure, store_for

    configure(ctx.cfg)
    with mlflow.start_run(run_name="pipeline", tags={"shoprec.stage": "pipeline", "shoprec.env": ctx.cfg.env}):
        ingest_stage(ctx)
    store = store_for(ctx.cfg)
    ctx.say()
    ctx.say(f"Delta tables:  {ctx.tables.root}/<layer>/<table>  (backend: {ctx.tables.backend.name})")
    ctx.say(f"MLflow store:  {store.tracking_uri}")
    ctx.say(f"               artifacts in {store.artifact_root}")
    ctx.say(f"Open the MLflow UI with:  shoprec ui --data-root {ctx.cfg.data_root}")


def _print_ingest(ctx: JobContext, report) -> None:
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
