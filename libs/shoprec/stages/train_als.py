"""``shoprec train-als``: tune, train, register ALS; write its factors and top-N candidates.

gold.confidence (as_of) ─► id maps ─► grid search on the validation window (nested runs)
                                  └─► best params refit on the whole history
                                        ├─► gold.als_user_factors / gold.als_item_factors
                                        ├─► MLflow model shoprec-als (challenger / champion)
                                        └─► blocked top-N ─► gold.candidates (source als)
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec import paths
from shoprec.als import ids
from shoprec.als.model import AlsParams, fit_als, item_factors, user_factors
from shoprec.als.topn import top_n_for_users
from shoprec.als.tuning import Trial, bought_pairs, score_trial, search_space
from shoprec.config import AlsConfig, CandidatesConfig, Config
from shoprec.split import TemporalSplit, purchases
from shoprec.stages import id_maps
from shoprec.stages.candidate_store import write_candidates
from shoprec.stages.context import (
    JobContext,
    model_stage,
    required_as_of,
    resolve_run_split,
)
from shoprec.tables import Tables
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)

WRITES = (
    C.GOLD_USER_ID_MAP,
    C.GOLD_ITEM_ID_MAP,
    C.GOLD_ALS_USER_FACTORS,
    C.GOLD_ALS_ITEM_FACTORS,
    C.GOLD_ALS_VALIDATION_USER_FACTORS,
    C.GOLD_ALS_VALIDATION_ITEM_FACTORS,
    C.GOLD_CANDIDATES,
)


@dataclass
class AlsReport:
    as_of: str
    params: AlsParams
    trials: list[Trial]
    n_users: int
    n_items: int
    n_ratings: int
    n_candidates: int
    fit_seconds: float
    topn_seconds: float
    seconds: float
    model_version: str | None = None
    promotion: str | None = None
    table_versions: dict[str, int | None] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [f"train-als (as_of {self.as_of}) finished in {self.seconds:.1f} s"]
        if self.trials:
            lines.append(f"  search: {len(self.trials)} trials, NDCG@10 on the validation window")
            for t in self.trials:
                p = t.params
                best = "  <- best" if p == self.params else ""
                lines.append(
                    f"    rank {p.rank:>3}  reg {p.reg_param:<6g} alpha {p.alpha:<6g}"
                    f" NDCG@10 {t.ndcg_at_10:.4f}  Recall@10 {t.recall_at_10:.4f}"
                    f"  fit {t.fit_seconds:5.1f} s{best}"
                )
        lines.append(
            f"  final model: rank {self.params.rank}, reg {self.params.reg_param:g},"
            f" alpha {self.params.alpha:g}, {self.params.max_iter} iterations"
            f" on {self.n_ratings:,} (user, item) pairs"
            f" ({self.n_users:,} users x {self.n_items:,} items): fit {self.fit_seconds:.1f} s"
        )
        lines.append(f"  top-N for all users (blocked): {self.n_candidates:,} candidates in {self.topn_seconds:.1f} s")
        if self.promotion:
            lines.append(f"  registry: {self.promotion}")
        return lines


def run_train_als(spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, run: RunLogger) -> AlsReport:
    started = time.perf_counter()
    confidence = _confidence_at(tables, split)
    interactions = tables.read(C.SILVER_INTERACTIONS)
    num_blocks = cfg.als.num_blocks or spark.sparkContext.defaultParallelism
    _set_checkpoint_dir(spark, cfg)

    tuning_confidence = _tuning_confidence(interactions, split, cfg)
    with tables.all_or_nothing(WRITES):
        users, items = _id_maps(tables, confidence, tuning_confidence)
        params, trials = _choose_params(cfg, interactions, split, tuning_confidence, users, items, num_blocks)
        _write_validation_factors(tables, tuning_confidence, users, items, params, num_blocks, cfg, split)
        ratings = ids.to_indices(confidence, users, items).persist()
        fit = fit_als(ratings, params, num_blocks, cfg.als.checkpoint_interval, cfg.als.seed)
        n_ratings = ratings.count()
        ratings.unpersist()

        uf = user_factors(fit.model).persist()
        itf = item_factors(fit.model).persist()
        _write_factors(tables, uf, itf, users, items, split)
        t0 = time.perf_counter()
        exclude = _history_bought(interactions, split, users, items) if cfg.candidates.exclude_bought else None
        top = top_n_for_users(uf, itf, cfg.candidates.n, exclude, cfg.candidates.block_users, cfg.candidates.block_mb)
        recs = _with_ids(top, users, items)
        version = write_candidates(tables, recs, C.SRC_ALS, split.as_of)
        topn_seconds = time.perf_counter() - t0
        n_candidates = (
            tables.read(C.GOLD_CANDIDATES)
            .filter((F.col(C.AS_OF) == F.lit(split.as_of)) & (F.col(C.CANDIDATE_SOURCE) == C.SRC_ALS))
            .count()
        )
        n_users, n_items = uf.count(), itf.count()
        uf.unpersist()
        itf.unpersist()

    report = AlsReport(
        split.as_of.isoformat(),
        params,
        trials,
        n_users,
        n_items,
        n_ratings,
        n_candidates,
        fit.seconds,
        topn_seconds,
        0.0,
        table_versions={C.GOLD_CANDIDATES: version},
    )
    best_ndcg = trials[0].ndcg_at_10 if trials else None
    _log_and_register(cfg, run, fit.model, report, best_ndcg)
    report.seconds = time.perf_counter() - started
    run.metrics({"seconds": report.seconds})
    return report


# ------------------------------------------------------------------------------ inputs
def _confidence_at(tables: Tables, split: TemporalSplit) -> DataFrame:
    return required_as_of(tables, C.GOLD_CONFIDENCE, split.as_of).select(C.USER_ID, C.ITEM_ID, C.CONFIDENCE)


def _tuning_confidence(interactions: DataFrame, split: TemporalSplit, cfg: Config) -> DataFrame:
    """Confidence as the features stage would compute it at the validation start (no validation events)."""
    from shoprec.features.confidence import implicit_confidence

    return implicit_confidence(interactions, split.for_tuning(), cfg.features).select(
        C.USER_ID, C.ITEM_ID, C.CONFIDENCE
    )


def _id_maps(tables: Tables, confidence: DataFrame, tuning: DataFrame) -> tuple[DataFrame, DataFrame]:
    pairs = confidence.unionByName(tuning)
    users = id_maps.user_map(tables, pairs.select(C.USER_ID))
    items = id_maps.item_map(tables, pairs.select(C.ITEM_ID))
    return users, items


def _set_checkpoint_dir(spark: SparkSession, cfg: Config) -> None:
    # ALS truncates its RDD lineage every checkpoint_interval iterations; without a
    # checkpoint directory that setting is silently ignored and lineage grows.
    path = cfg.als.checkpoint_dir or paths.als_checkpoints(cfg.data_root)
    if "://" not in path:
        os.makedirs(path, exist_ok=True)
    spark.sparkContext.setCheckpointDir(path)


# ------------------------------------------------------------------------------ tuning
def _choose_params(
    cfg: Config,
    interactions: DataFrame,
    split: TemporalSplit,
    tuning: DataFrame,
    users: DataFrame,
    items: DataFrame,
    num_blocks: int,
) -> tuple[AlsParams, list[Trial]]:
    """The grid's best on the validation window; with ``als.tune: false`` the configured
    parameters are still scored there (one trial), so every model has a validation number."""
    from shoprec.evaluation.truth import ground_truth

    a = cfg.als
    configured = AlsParams(a.rank, a.reg_param, a.alpha, a.max_iter)

    tuning_split = split.for_tuning()
    truth = ids.to_indices(ground_truth(interactions, tuning_split, window="evaluation"), users, items)
    if truth.limit(1).count() == 0:
        log.warning(
            "no purchases in the validation window %s .. %s: training with the configured parameters",
            tuning_split.as_of,
            split.as_of,
        )
        return configured, []
    ratings = ids.to_indices(tuning, users, items)
    exclude = _history_bought(interactions, tuning_split, users, items) if cfg.candidates.exclude_bought else None
    grid = search_space(a) if a.tune else [configured]
    trials = run_search(ratings, truth.persist(), exclude, grid, num_blocks, a, cfg.candidates)
    truth.unpersist()
    return trials[0].params, trials


def _history_bought(interactions: DataFrame, split: TemporalSplit, users: DataFrame, items: DataFrame) -> DataFrame:
    bought = split.history(purchases(interactions)).select(C.USER_ID, C.ITEM_ID)
    return bought_pairs(ids.to_indices(bought, users, items))


def run_search(
    ratings: DataFrame,
    truth: DataFrame,
    exclude: DataFrame | None,
    grid: list[AlsParams],
    num_blocks: int,
    als: AlsConfig,
    candidates: CandidatesConfig,
) -> list[Trial]:
    """Score every combination of ``grid``; each trial is a nested MLflow run. Best first."""
    import mlflow

    ratings = ratings.persist()
    trials = []
    try:
        for i, params in enumerate(grid, start=1):
            started = time.perf_counter()
            with mlflow.start_run(
                run_name=f"als-trial-{i}", nested=True, tags={"shoprec.stage": "train-als", "shoprec.trial": str(i)}
            ) as run:
                mlflow.log_params({**params.as_dict(), "num_blocks": num_blocks})
                ndcg, recall, fit_seconds = score_trial(ratings, truth, exclude, params, num_blocks, als, candidates)
                mlflow.log_metrics(
                    {
                        "val_ndcg_at_10": ndcg,
                        "val_recall_at_10": recall,
                        "fit_seconds": fit_seconds,
                        "trial_seconds": time.perf_counter() - started,
                    }
                )
            log.info("trial %d/%d %s: NDCG@10 %.4f (fit %.1f s)", i, len(grid), params, ndcg, fit_seconds)
            trials.append(Trial(params, ndcg, recall, fit_seconds, run.info.run_id))
    finally:
        ratings.unpersist()
    return sorted(trials, key=lambda t: (-t.ndcg_at_10, t.params.rank, t.params.reg_param, t.params.alpha))


# ------------------------------------------------------------------------------ outputs
def _with_ids(top: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    return (
        top.join(F.broadcast(items), on=C.ITEM_IDX, how="inner")
        .join(users, on=C.USER_IDX, how="inner")
        .select(C.USER_ID, C.ITEM_ID, C.SCORE, C.RANK)
    )


def _write_factors(
    tables: Tables,
    uf: DataFrame,
    itf: DataFrame,
    users: DataFrame,
    items: DataFrame,
    split: TemporalSplit,
    targets: tuple[str, str] = (C.GOLD_ALS_USER_FACTORS, C.GOLD_ALS_ITEM_FACTORS),
) -> None:
    as_of = F.lit(split.as_of).cast("date").alias(C.AS_OF)
    tables.replace_partition(
        uf.join(users, on=C.USER_IDX, how="inner").select(C.USER_ID, C.USER_IDX, C.FACTORS, as_of),
        targets[0],
        {C.AS_OF: split.as_of},
    )
    tables.replace_partition(
        itf.join(items, on=C.ITEM_IDX, how="inner").select(C.ITEM_ID, C.ITEM_IDX, C.FACTORS, as_of),
        targets[1],
        {C.AS_OF: split.as_of},
    )


def _write_validation_factors(
    tables: Tables,
    tuning: DataFrame,
    users: DataFrame,
    items: DataFrame,
    params: AlsParams,
    num_blocks: int,
    cfg: Config,
    split: TemporalSplit,
) -> None:
    """The chosen parameters refit on the history before the validation window.

    shoprec recommend scores the validation window with these factors when it chooses the
    fusion weight; the final factors have seen that window and would flatter ALS.
    """
    ratings = ids.to_indices(tuning, users, items)
    fit = fit_als(ratings, params, num_blocks, cfg.als.checkpoint_interval, cfg.als.seed)
    _write_factors(
        tables,
        user_factors(fit.model),
        item_factors(fit.model),
        users,
        items,
        split,
        (C.GOLD_ALS_VALIDATION_USER_FACTORS, C.GOLD_ALS_VALIDATION_ITEM_FACTORS),
    )


def _log_and_register(cfg: Config, run: RunLogger, model: ALSModel, report: AlsReport, best_ndcg: float | None) -> None:
    import mlflow
    import pyspark
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from shoprec.registry import register_and_promote

    p = report.params
    run.params({"best.rank": p.rank, "best.reg_param": p.reg_param, "best.alpha": p.alpha, "best.max_iter": p.max_iter})
    run.metrics(
        {
            "n_users": report.n_users,
            "n_items": report.n_items,
            "n_ratings": report.n_ratings,
            "n_candidates": report.n_candidates,
            "fit_seconds": report.fit_seconds,
            "topn_seconds": report.topn_seconds,
            **({"val_ndcg_at_10": best_ndcg} if best_ndcg is not None else {}),
        }
    )
    signature = ModelSignature(
        inputs=Schema([ColSpec("integer", C.USER_IDX), ColSpec("integer", C.ITEM_IDX)]),
        outputs=Schema([ColSpec("float", "prediction")]),
    )
    with tempfile.TemporaryDirectory(prefix="shoprec-als-") as tmp:
        info = mlflow.spark.log_model(
            model,
            artifact_path="model",
            signature=signature,
            dfs_tmpdir=tmp,
            pip_requirements=[f"pyspark=={pyspark.__version__}"],
        )
    if best_ndcg is None:
        log.warning("no validation NDCG (empty validation window): %s logged but not registered", info.model_uri)
        return
    reg = register_and_promote(
        info.model_uri,
        cfg.als.registered_model,
        "val_ndcg_at_10",
        best_ndcg,
        as_of=report.as_of,
        description=f"as_of {report.as_of}: rank {p.rank}, reg_param {p.reg_param}, alpha "
        f"{p.alpha}; {report.n_users:,} users x {report.n_items:,} items; "
        f"validation NDCG@10 {best_ndcg:.4f}",
    )
    report.model_version = reg.version
    report.promotion = reg.describe()


# ------------------------------------------------------------------------------ the stage
def train_als_stage(ctx: JobContext, as_of: date | None = None, split: TemporalSplit | None = None) -> AlsReport:
    """``shoprec train-als``: tuned ALS, factors in gold, model registered, ALS candidates."""
    return model_stage(ctx, "train-als", split or resolve_run_split(ctx, as_of), run_train_als)
