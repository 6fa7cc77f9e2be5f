"""``shoprec pipeline``: every stage in order under one parent MLflow run, then a summary."""

from __future__ import annotations

from datetime import date

from shoprec import columns as C
from shoprec.stages.bundles import BundlesReport, bundles_stage
from shoprec.stages.context import JobContext, resolve_run_split
from shoprec.stages.evaluate import EvaluationReport, evaluate_stage
from shoprec.stages.features import features_stage
from shoprec.stages.ingest import ingest_stage
from shoprec.stages.recommend import recommend_stage
from shoprec.stages.train_als import train_als_stage
from shoprec.stages.train_hybrid import train_hybrid_stage


def pipeline_stage(ctx: JobContext, as_of: date | None = None) -> None:
    """``shoprec pipeline``: every stage in order under one parent MLflow run.

    ingest -> features -> train-als -> train-hybrid -> bundles -> recommend -> evaluate, then a
    summary:
    tables written, registered models and their aliases, the evaluation table, the MLflow UI.
    """
    import mlflow

    from shoprec.tracking import configure, git_tags

    configure(ctx.cfg)
    tags = {
        "shoprec.stage": "pipeline",
        "shoprec.env": ctx.cfg.env,
        "shoprec.source": ctx.cfg.ingest.source,
        **git_tags(ctx.cfg),
    }
    with mlflow.start_run(run_name="pipeline", tags=tags):
        ingest_stage(ctx)
        split = resolve_run_split(ctx, as_of)
        mlflow.set_tags({"shoprec.as_of": split.as_of.isoformat(), "mlflow.runName": f"pipeline {split.as_of}"})
        ctx.say(
            f"\nsplit: history < {split.as_of} (validation from {split.validation_start}), "
            f"evaluation {split.as_of} .. {split.evaluation_end} (exclusive)"
        )
        features_stage(ctx, split=split)
        train_als_stage(ctx, split=split)
        train_hybrid_stage(ctx, split=split)
        bundles = bundles_stage(ctx, split=split)  # before recommend: its rules are a candidate source
        recommend_stage(ctx, split=split)
        evaluation = evaluate_stage(ctx, split=split)
    _print_pipeline_summary(ctx, evaluation, bundles)


SUMMARY_TABLES = (
    C.SILVER_INTERACTIONS,
    C.SILVER_ITEMS,
    C.SILVER_USERS,
    C.GOLD_USER_FEATURES,
    C.GOLD_ITEM_FEATURES,
    C.GOLD_CONFIDENCE,
    C.GOLD_ALS_USER_FACTORS,
    C.GOLD_ALS_ITEM_FACTORS,
    C.GOLD_CANDIDATES,
    C.GOLD_BUNDLES,
    C.GOLD_BUNDLE_RECOMMENDATIONS,
    C.GOLD_RECOMMENDATIONS,
    C.GOLD_COLD_START_LISTS,
    C.GOLD_EVALUATION,
)


def _print_pipeline_summary(ctx: JobContext, evaluation: EvaluationReport, bundles: BundlesReport) -> None:
    from shoprec.config import mask_text
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
    ctx.say(f"  evaluation (NDCG@10, as_of {evaluation.as_of}, repeat purchases count):")
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
    ctx.say(f"MLflow store:  {mask_text(store.tracking_uri)}")
    ctx.say(f"               artifacts in {mask_text(store.artifact_root)}")
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
