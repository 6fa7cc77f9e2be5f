"""Stage runners: load config, get the session and tables, open the MLflow run, call the library.

The CLI and the ``jobs/*.py`` scripts both end up here, so ``shoprec ingest`` and
``spark-submit jobs/ingest.py`` do exactly the same thing.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import date
from typing import TextIO

from pyspark.sql import SparkSession

from shoprec import columns as C
from shoprec.config import Config
from shoprec.errors import ShoprecError
from shoprec.tables import Tables, open_tables

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Everything a stage needs; built once per process."""

    cfg: Config
    spark: SparkSession
    tables: Tables
    out: TextIO | None = None   # None: sys.stdout as it is when printing

    @classmethod
    def create(cls, cfg: Config, out: TextIO | None = None) -> "JobContext":
        from shoprec.spark import get_spark

        spark = get_spark(cfg.spark)
        # sys.stdout looked up now, not at import: it may have been replaced since (pytest, notebooks).
        return cls(cfg, spark, open_tables(spark, cfg.data_root, cfg.storage.delta_backend), out or sys.stdout)

    def say(self, text: str = "") -> None:
        print(text, file=self.out or sys.stdout, flush=True)


def ingest_stage(ctx: JobContext, inputs: list[str] | None = None) -> "object":
    """``shoprec ingest``: source files -> bronze, quarantine and silver tables."""
    from shoprec.ingest.job import run_ingest
    from shoprec.tracking import job_run

    with job_run(ctx.cfg, "ingest", tags={"shoprec.source": ctx.cfg.ingest.source}) as run:
        report = run_ingest(ctx.spark, ctx.cfg, ctx.tables, run, inputs)
    _print_ingest(ctx, report)
    return report


def resolve_run_split(ctx: JobContext, as_of: date | None = None):
    """The temporal split of this run (``--as-of`` or ``split.as_of``), checked against silver."""
    from shoprec.split import resolve_split

    if not ctx.tables.exists(C.SILVER_INTERACTIONS):
        raise ShoprecError(f"{C.SILVER_INTERACTIONS} does not exist under {ctx.tables.root}",
                           hint="run shoprec ingest first (or shoprec pipeline)")
    return resolve_split(ctx.cfg, ctx.tables.read(C.SILVER_INTERACTIONS), as_of)


def _model_stage(ctx: JobContext, stage: str, split, runner) -> "object":
    """Open the stage's MLflow run (tagged with the cutoff), run it, print its summary."""
    from shoprec.tracking import job_run

    with job_run(ctx.cfg, stage, tags={"shoprec.as_of": split.as_of.isoformat()}) as run:
        run.params({f"resolved.{k}": v for k, v in split.describe().items()})
        report = runner(ctx.spark, ctx.cfg, ctx.tables, split, run)
    for line in report.summary_lines():
        ctx.say(line)
    return report


def features_stage(ctx: JobContext, as_of: date | None = None, split=None) -> "object":
    """``shoprec features``: silver -> gold user/item/context features and implicit confidence."""
    from shoprec.features.job import run_features

    return _model_stage(ctx, "features", split or resolve_run_split(ctx, as_of), run_features)


def train_als_stage(ctx: JobContext, as_of: date | None = None, split=None) -> "object":
    """``shoprec train-als``: tuned ALS, factors in gold, model registered, ALS candidates."""
    from shoprec.als.job import run_train_als

    return _model_stage(ctx, "train-als", split or resolve_run_split(ctx, as_of), run_train_als)


def train_hybrid_stage(ctx: JobContext, as_of: date | None = None, split=None) -> "object":
    """``shoprec train-hybrid``: Horovod-trained hybrid model, registered, its candidates in gold."""
    from shoprec.hybrid.job import run_train_hybrid

    return _model_stage(ctx, "train-hybrid", split or resolve_run_split(ctx, as_of), run_train_hybrid)


def bundles_stage(ctx: JobContext, as_of: date | None = None, split=None) -> "object":
    """``shoprec bundles``: FPGrowth rules, partners per item, basket completion per user."""
    from shoprec.bundles.job import run_bundles

    return _model_stage(ctx, "bundles", split or resolve_run_split(ctx, as_of), run_bundles)


def time_report_stage(ctx: JobContext, items: list[str] | None = None, min_lines: int = 100) -> "object":
    """``shoprec time-report``: seasonal profiles and the example items' place in every
    as_of partition of gold.recommendations (plots + JSON, in MLflow and on disk)."""
    import os

    from shoprec.reports.seasonality import build
    from shoprec.tracking import job_run

    if not ctx.tables.exists(C.GOLD_RECOMMENDATIONS):
        raise ShoprecError(f"{C.GOLD_RECOMMENDATIONS} does not exist under {ctx.tables.root}",
                           hint="run shoprec pipeline --as-of <date> for two or more dates first")
    out_dir = os.path.join(ctx.cfg.data_root, "_reports", "time")
    with job_run(ctx.cfg, "time-report") as run:
        report = build(ctx.tables.read(C.SILVER_INTERACTIONS), ctx.tables.read(C.GOLD_RECOMMENDATIONS),
                       ctx.tables.read(C.SILVER_ITEMS).select(C.ITEM_ID, C.DESCRIPTION), out_dir,
                       ctx.cfg.recommend.rerank.season_days, min_lines=min_lines, items=items)
        for path in report.files:
            run.artifact(path, "time_report")
        run.metrics({f"seasonal_share.{a}": v for a, v in report.seasonal_share.items()})
    for line in report.summary_lines():
        ctx.say(line)
    return report


def maintain_stage(ctx: JobContext) -> list:
    """``shoprec maintain``: table properties, OPTIMIZE (ZORDER BY the lookup key), VACUUM."""
    from shoprec.tables.maintenance import maintain_tables
    from shoprec.tracking import job_run

    with job_run(ctx.cfg, "maintain", tags={"shoprec.delta_backend": ctx.tables.backend.name}) as run:
        done = maintain_tables(ctx.tables, ctx.cfg.maintain)
        for m in done:
            run.counts({"files_before": m.files_before, "files_after": m.files_after,
                        "files_vacuumed": m.files_vacuumed}, prefix=f"{m.table}.")
        run.dict({m.table: vars(m) for m in done}, "maintain/tables.json")
    ctx.say(f"maintained {len(done)} tables under {ctx.tables.root} ({ctx.tables.backend.name} Delta backend; "
            f"vacuum keeps {ctx.cfg.maintain.vacuum_retention_hours} h of versions)")
    ctx.say(f"  {'table':<34}{'files before':>13}{'after':>8}{'vacuumed':>10}  zorder / cdf")
    for m in done:
        extra = ", ".join([*(["zorder " + "+".join(m.zorder_by)] if m.zorder_by else []),
                           *(["change data feed"] if m.change_data_feed else [])])
        ctx.say(f"  {m.table:<34}{m.files_before:>13}{m.files_after:>8}{m.files_vacuumed:>10}  {extra}")
    return done


def recommend_stage(ctx: JobContext, as_of: date | None = None, split=None) -> "object":
    """``shoprec recommend``: candidates, deep scoring, fusion, re-ranking -> gold.recommendations."""
    from shoprec.recommend.job import run_recommend

    return _model_stage(ctx, "recommend", split or resolve_run_split(ctx, as_of), run_recommend)


def evaluate_stage(ctx: JobContext, as_of: date | None = None, split=None) -> "object":
    """``shoprec evaluate``: baselines + every candidate source scored on the evaluation window."""
    from shoprec.evaluation.job import run_evaluate

    return _model_stage(ctx, "evaluate", split or resolve_run_split(ctx, as_of), run_evaluate)


def pipeline_stage(ctx: JobContext, as_of: date | None = None) -> None:
    """``shoprec pipeline``: every stage in order under one parent MLflow run.

    ingest -> features -> train-als -> train-hybrid -> bundles -> recommend -> evaluate, then a
    summary:
    tables written, registered models and their aliases, the evaluation table, the MLflow UI.
    """
    import mlflow

    from shoprec.tracking import configure, git_tags

    configure(ctx.cfg)
    tags = {"shoprec.stage": "pipeline", "shoprec.env": ctx.cfg.env, "shoprec.source": ctx.cfg.ingest.source,
            **git_tags(ctx.cfg)}
    with mlflow.start_run(run_name="pipeline", tags=tags):
        ingest_stage(ctx)
        split = resolve_run_split(ctx, as_of)
        mlflow.set_tags({"shoprec.as_of": split.as_of.isoformat(), "mlflow.runName": f"pipeline {split.as_of}"})
        ctx.say(f"\nsplit: history < {split.as_of} (validation from {split.validation_start}), "
                f"evaluation {split.as_of} .. {split.evaluation_end} (exclusive)")
        features_stage(ctx, split=split)
        train_als_stage(ctx, split=split)
        train_hybrid_stage(ctx, split=split)
        bundles = bundles_stage(ctx, split=split)   # before recommend: its rules are a candidate source
        recommend_stage(ctx, split=split)
        evaluation = evaluate_stage(ctx, split=split)
    _print_pipeline_summary(ctx, evaluation, bundles)


SUMMARY_TABLES = (C.SILVER_INTERACTIONS, C.SILVER_ITEMS, C.SILVER_USERS, C.GOLD_USER_FEATURES, C.GOLD_ITEM_FEATURES,
                  C.GOLD_CONFIDENCE, C.GOLD_ALS_USER_FACTORS, C.GOLD_ALS_ITEM_FACTORS, C.GOLD_CANDIDATES,
                  C.GOLD_BUNDLES, C.GOLD_BUNDLE_RECOMMENDATIONS, C.GOLD_RECOMMENDATIONS, C.GOLD_EVALUATION)


def _print_pipeline_summary(ctx: JobContext, evaluation, bundles) -> None:
    from shoprec.tracking import store_for

    store = store_for(ctx.cfg)
    ctx.say()
    ctx.say("=" * 78)
    ctx.say("pipeline summary")
    ctx.say("  tables written (latest version):")
    for name, version in ctx.tables.versions(SUMMARY_TABLES).items():
        if version is not None:
            ctx.say(f"    {name:<28} v{version:<4} {ctx.tables.path(name)}")
    for line in _model_lines(ctx):
        ctx.say(line)
    ctx.say("  evaluation (NDCG@10, as_of %s, repeat purchases count):" % evaluation.as_of)
    for segment in ("warm", "cold"):
        cells = []
        for source in evaluation.sources:
            value = evaluation.value(source, segment, "repeat", "ndcg", 10)
            if value is not None:
                cells.append(f"{source} {value:.4f}")
        ctx.say(f"    {segment:<5} " + ", ".join(cells))
    k = max(ctx.cfg.bundles.ks)
    rates = [(s, bundles.hit_rate(s, k)) for s in (C.SRC_BUNDLE, C.SRC_POPULAR_BASKET, C.SRC_POPULAR_RANDOM)]
    if all(v is not None for _, v in rates):
        ctx.say(f"  bundles: next-basket hit rate@{k} " + ", ".join(f"{s} {v:.4f}" for s, v in rates))
    ctx.say(f"Delta tables:  {ctx.tables.root}/<layer>/<table>  (backend: {ctx.tables.backend.name})")
    ctx.say(f"MLflow store:  {store.tracking_uri}")
    ctx.say(f"               artifacts in {store.artifact_root}")
    ctx.say(f"Open the MLflow UI with:  shoprec ui --data-root {ctx.cfg.data_root}")


def _model_lines(ctx: JobContext) -> list[str]:
    """Registered models with their aliases and the version each alias points at."""
    from mlflow import MlflowClient

    lines = ["  registered models:"]
    client = MlflowClient()
    for name in (ctx.cfg.als.registered_model, ctx.cfg.hybrid.registered_model):
        try:
            model = client.get_registered_model(name)
        except Exception:  # not registered (a stage was skipped or failed to register)
            lines.append(f"    {name:<20} not registered")
            continue
        aliases = ", ".join(f"{alias} -> v{version}" for alias, version in sorted((model.aliases or {}).items()))
        latest = max((int(v.version) for v in client.search_model_versions(f"name = '{name}'")), default=0)
        lines.append(f"    {name:<20} {latest} version(s); {aliases or 'no aliases'}")
    return lines


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
