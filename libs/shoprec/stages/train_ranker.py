"""``shoprec train-ranker``: the learned second-stage ranker, trained at the validation start.

    cutoff = validation start (split.for_tuning()); window = the validation window
    buyers of the window who bought before it (ranker.max_users, seeded sample)
        ─► their pool at the cutoff, every source's rows kept (ALS of gold.als_validation_*,
           repeat, co-occurrence, content, popular in context, bundle rules mined as of the
           cutoff when gold.bundles has them), cf_score and the champion hybrid's deep_score
        ─► ranker.features at the cutoff (history before it only) + labels (bought in the window)
        ─► held-out users (ranker.validation_share) ─► SparkXGBRanker, early stopping on them
        ─► validation NDCG@10: the ranker vs the pool's own orders (ALS score, best source rank,
           deep score) on the held-out users
    MLflow (this stage's run, nested under the pipeline's): params, per-round NDCG, feature
    importance (gain) as CSV/JSON and a plot, the Spark model ─► registered shoprec-ranker
    (challenger; champion when its validation NDCG@10 beats the champion's, never a backfill)

Serving at as_of (the same features recomputed from all history before as_of) is not wired
into ``shoprec recommend`` yet (docs/ranker.md).
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.candidates import sources as S
from shoprec.config import Config
from shoprec.hybrid import serving
from shoprec.hybrid.scoring import scoring_features
from shoprec.ranker import features as RF
from shoprec.ranker import labels as RL
from shoprec.ranker import model as RM
from shoprec.split import TemporalSplit, purchases
from shoprec.stages.context import JobContext, model_stage, resolve_run_split
from shoprec.stages.recommend import Als, Inputs, as_of_inputs, bundle_source, factors, keep_in, pool_globals
from shoprec.tables import Tables
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)

METRIC = RM.METRIC


@dataclass
class RankerReport:
    as_of: str
    cutoff: str
    counts: dict[str, int] = field(default_factory=dict)
    workers: int = 0
    best_iteration: int = 0
    rounds: int = 0
    orders: dict[str, dict[str, float]] = field(default_factory=dict)  # validation metrics per order
    importance: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    registration: str = ""
    model_version: str = ""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ndcg(self) -> float:
        return self.orders.get("ranker", {}).get(f"ndcg_at_{RM.K}", 0.0)

    def summary_lines(self) -> list[str]:
        c = self.counts
        lines = [
            f"train-ranker (as_of {self.as_of}, trained at the validation start {self.cutoff}) finished in "
            f"{self.seconds:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in self.stage_seconds.items())})",
            f"  training table: {c.get('rows', 0):,} candidates of {c.get('users', 0):,} users "
            f"({c.get('positives', 0):,} bought in the window; {c.get('validation_users', 0):,} users held out)",
            f"  SparkXGBRanker on {self.workers} worker(s): {self.rounds} rounds, best {self.best_iteration}",
            f"  validation NDCG@{RM.K} (held-out users, the same candidates in every order):",
        ]
        for name, m in sorted(self.orders.items(), key=lambda kv: -kv[1][f"ndcg_at_{RM.K}"]):
            lines.append(
                f"    {name:<8} NDCG@{RM.K} {m[f'ndcg_at_{RM.K}']:.4f}  Recall@{RM.K} {m[f'recall_at_{RM.K}']:.4f}"
            )
        top = ", ".join(f"{r['feature']} {float(r['gain']):.2f}" for r in self.importance[:5])
        lines.append(f"  top features by gain: {top}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.registration:
            lines.append(f"  registry: {self.registration}")
        return lines


# ------------------------------------------------------------------------------ the training table
def training_pool(
    inputs: Inputs, users: DataFrame, split: TemporalSplit, als: Als, bundles: DataFrame | None
) -> DataFrame:
    """Every source's rows for ``users`` at ``split.as_of`` (a pair several sources propose is
    several rows), plus ``cf_score`` and ``deep_score`` per pair (null where unknown)."""
    cfg = inputs.cfg
    history_all = split.history(inputs.interactions)
    history = purchases(history_all)
    shared = pool_globals(inputs, split)
    parts = S.pool_parts(
        history,
        S.user_countries(history_all, users),
        als.top_n,
        inputs.neighbours,
        inputs.fresh,
        shared.lists,
        cfg.recommend,
        cfg.candidates,
        bundles,
        shared.similarity,
    )
    if not parts:
        raise ValueError("recommend.pool turns every source off: the ranker has no candidates")
    rows = functools.reduce(DataFrame.unionByName, parts)
    pairs = rows.select(C.USER_ID, C.ITEM_ID).distinct()
    if als.known:
        assert als.user_factors is not None and als.item_factors is not None  # known: both written
        pairs = S.cf_scores(pairs, als.user_factors, als.item_factors, C.CF_SCORE)
    else:
        pairs = pairs.withColumn(C.CF_SCORE, F.lit(None).cast("double"))
    if inputs.model is not None:
        feats = scoring_features(
            pairs,
            inputs.interactions,
            inputs.user_features,
            inputs.items,
            split,
            cfg.features.holidays,
            with_text=False,
        )
        deep = serving.score(feats, inputs.model, inputs.items).withColumnRenamed(C.SCORE, C.DEEP_SCORE)
        pairs = deep.select(C.USER_ID, C.ITEM_ID, C.CF_SCORE, C.DEEP_SCORE)
    else:
        pairs = pairs.withColumn(C.DEEP_SCORE, F.lit(None).cast("double"))
    return rows.join(pairs, on=[C.USER_ID, C.ITEM_ID], how="inner")


def training_table(
    tables: Tables, cfg: Config, inputs: Inputs, split: TemporalSplit, notes: list[str]
) -> tuple[DataFrame, DataFrame]:
    """(the labelled feature table of the training users at the validation start, the window's
    truth of those users)."""
    tuning = split.for_tuning()
    rcfg = cfg.ranker
    truth = RL.window_truth(inputs.interactions, tuning)
    users = RL.training_users(inputs.interactions, tuning, truth, rcfg.max_users, rcfg.seed).persist()
    als = factors(tables, C.GOLD_ALS_VALIDATION_USER_FACTORS, C.GOLD_ALS_VALIDATION_ITEM_FACTORS, split)
    if als.known:
        assert als.user_factors is not None and als.item_factors is not None  # known: both written
        top = S.als_candidates(
            als.user_factors, als.item_factors, users, cfg.recommend.pool.als, cfg.candidates.block_mb
        )
        als = Als(top, als.user_factors, als.item_factors)
    else:
        notes.append(f"no {C.GOLD_ALS_VALIDATION_USER_FACTORS} for as_of {split.as_of}: no ALS source, no cf_score")
    # Rules mined as of the cutoff only (those of as_of saw the validation window).
    bundles, bundle_note = bundle_source(tables, cfg, inputs.interactions, tuning)
    notes.append(f"bundle source: {bundle_note}")
    if inputs.model is None:
        notes.append(f"no {cfg.hybrid.registered_model} serves {split.as_of}: no deep_score")
    pool = training_pool(inputs, users, tuning, als, bundles)
    table = RF.ranker_features(pool, inputs.interactions, tuning, cfg.recommend.rerank, rcfg.trend_days)
    sample_truth = truth.join(users, on=C.USER_ID, how="left_semi")
    return RL.labelled(table, sample_truth), sample_truth


# ------------------------------------------------------------------------------ the job
def run_train_ranker(
    spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, run: RunLogger
) -> RankerReport:
    started = time.perf_counter()
    stages: dict[str, float] = {}
    rcfg = cfg.ranker
    report = RankerReport(split.as_of.isoformat(), split.validation_start.isoformat())
    cached: list[DataFrame] = []
    try:
        t0 = time.perf_counter()
        inputs = as_of_inputs(spark, cfg, tables, split, keep_in(cached))
        labelled, truth = training_table(tables, cfg, inputs, split, report.notes)
        grouped = RM.with_groups(labelled, rcfg.validation_share, rcfg.seed).persist()
        cached.append(grouped)
        report.counts = _counts(grouped)
        stages["table"] = time.perf_counter() - t0
        if report.counts["rows"] == 0:
            raise ValueError(f"no candidates for the validation window's buyers before {split.validation_start}")

        t0 = time.perf_counter()
        train = grouped
        if rcfg.drop_users_without_positives:
            with_positive = grouped.groupBy(C.USER_ID).agg(F.max(C.LABEL).alias("_any")).where(F.col("_any") > 0)
            train = grouped.join(with_positive.select(C.USER_ID), on=C.USER_ID, how="left_semi")
        trained = RM.fit(train, RF.feature_names(), rcfg, RM.num_workers(spark, rcfg.max_workers))
        report.workers, report.best_iteration, report.rounds = trained.workers, trained.best_iteration, trained.rounds
        stages["training"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        held_out = grouped.where(F.col(C.IS_VALIDATION))
        scored = RM.score(trained.model, held_out)
        report.orders = RM.order_metrics(
            scored, truth.join(held_out.select(C.USER_ID).distinct(), on=C.USER_ID, how="left_semi"), _orders(grouped)
        )
        report.importance = RM.importance(trained.booster(), trained.features)
        stages["validation"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        _log(run, cfg, report, trained)
        report.registration, report.model_version = _log_and_register(cfg, run, report, trained, split)
        stages["mlflow"] = time.perf_counter() - t0
    finally:
        for df in cached:
            df.unpersist()
    report.stage_seconds = stages
    report.seconds = time.perf_counter() - started
    run.metrics({"seconds": report.seconds, **{f"seconds.{k}": v for k, v in stages.items()}})
    return report


def _orders(grouped: DataFrame) -> dict:
    """The orderings of the held-out pools the ranker is compared with: itself, the ALS score,
    the best source rank (the pool's own order), the deep score (when a hybrid scored it)."""
    orders = {
        "ranker": F.col(C.RANKER_SCORE),
        "pool": -F.col(C.BEST_SOURCE_RANK),
    }
    has = grouped.agg(F.count(C.CF_SCORE).alias("cf"), F.count(C.DEEP_SCORE).alias("deep")).first()
    assert has is not None  # a global aggregate: one row
    if has["cf"]:
        orders["als"] = F.col(C.CF_SCORE)
    if has["deep"]:
        orders["deep"] = F.col(C.DEEP_SCORE)
    return orders


def _counts(grouped: DataFrame) -> dict[str, int]:
    row = grouped.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct(C.USER_ID).alias("users"),
        F.sum(C.LABEL).alias("positives"),
        F.count_distinct(F.when(F.col(C.IS_VALIDATION), F.col(C.USER_ID))).alias("validation_users"),
        F.sum(F.when(F.col(C.IS_VALIDATION), 1).otherwise(0)).alias("validation_rows"),
    ).first()
    assert row is not None  # a global aggregate: one row
    return {k: int(row[k] or 0) for k in ("rows", "users", "positives", "validation_users", "validation_rows")}


# ------------------------------------------------------------------------------ MLflow
def _log(run: RunLogger, cfg: Config, report: RankerReport, trained: RM.TrainedRanker) -> None:
    run.params(
        {
            "ranker.cutoff": report.cutoff,
            "ranker.features": len(trained.features),
            "ranker.workers": trained.workers,
            "ranker.notes": " | ".join(report.notes),
        }
    )
    metrics: dict[str, float] = {f"table.{k}": float(v) for k, v in report.counts.items()}
    metrics.update({"best_iteration": float(trained.best_iteration), "rounds": float(trained.rounds)})
    for name, m in report.orders.items():
        for key, value in m.items():  # val_ndcg_at_10 (the ranker), val_ndcg_at_10.pool, ...
            metrics[f"val_{key}" + ("" if name == "ranker" else f".{name}")] = value
    metrics[METRIC] = report.ndcg
    run.metrics(metrics)
    for i, (tr, va) in enumerate(
        zip(trained.history.get("train", []), trained.history.get("validation", []), strict=False)
    ):
        run.step_metrics({"round.train_ndcg_at_10": tr, "round.validation_ndcg_at_10": va}, i)
    run.dict({"features": list(trained.features)}, "ranker/features.json")
    run.dict({"importance": report.importance}, "ranker/feature_importance.json")
    with tempfile.TemporaryDirectory() as tmp:
        table = os.path.join(tmp, "feature_importance.csv")
        with open(table, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["feature", "gain", "total_gain", "splits"])
            writer.writeheader()
            writer.writerows(report.importance)
        run.artifact(table, "ranker")
        run.artifact(_plot_importance(report.importance, os.path.join(tmp, "feature_importance.png")), "ranker")


def _plot_importance(rows: list[dict], path: str, top: int = 25) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if float(r["gain"]) > 0][:top][::-1]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(shown) + 1)))
    ax.barh([str(r["feature"]) for r in shown], [float(r["gain"]) for r in shown])
    ax.set_xlabel("average gain per split")
    ax.set_title("shoprec-ranker: feature importance (gain)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _log_and_register(
    cfg: Config, run: RunLogger, report: RankerReport, trained: RM.TrainedRanker, split: TemporalSplit
) -> tuple[str, str]:
    import mlflow
    import pyspark
    import xgboost
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from shoprec.registry import register_and_promote

    signature = ModelSignature(
        inputs=Schema([ColSpec("double", f) for f in trained.features]),
        outputs=Schema([ColSpec("double", C.PREDICTION)]),
    )
    info = mlflow.spark.log_model(
        trained.model,
        "model",
        signature=signature,
        pip_requirements=[f"xgboost=={xgboost.__version__}", f"pyspark=={pyspark.__version__}"],
    )
    baseline = ", ".join(
        f"{name} {m[f'ndcg_at_{RM.K}']:.4f}" for name, m in sorted(report.orders.items()) if name != "ranker"
    )
    registration = register_and_promote(
        info.model_uri,
        cfg.ranker.registered_model,
        METRIC,
        report.ndcg,
        tags={"shoprec.cutoff": report.cutoff, "shoprec.features": str(len(trained.features))},
        as_of=split.as_of.isoformat(),
        description=f"as_of {split.as_of} (trained at {report.cutoff}): validation NDCG@10 {report.ndcg:.4f} "
        f"on {report.counts.get('validation_users', 0):,} held-out users (same candidates: {baseline})",
    )
    return registration.describe(), registration.version


# ------------------------------------------------------------------------------ the stage
def train_ranker_stage(ctx: JobContext, as_of: date | None = None, split: TemporalSplit | None = None) -> RankerReport:
    """``shoprec train-ranker``: the XGBoost ranker over the candidate pool, registered in MLflow."""
    return model_stage(ctx, "train-ranker", split or resolve_run_split(ctx, as_of), run_train_ranker)
