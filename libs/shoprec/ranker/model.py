"""The gradient-boosted ranker, trained and scored in Spark with XGBoost's PySpark estimator.

    labelled feature table ─► qid (an integer per user) + held-out users (is_validation)
        ─► SparkXGBRanker (rank:ndcg, one query group per user; num_workers barrier tasks, rows
           range-partitioned by qid and sorted within each partition, so a user's rows are one
           group on one worker), early stopping on the held-out users' NDCG@10
        ─► SparkXGBRankerModel: ``score`` is its transform (a pandas UDF per partition: no collect)

The booster the model predicts with is the one at the best iteration (XGBoost's sklearn
predict uses ``best_iteration``): :func:`best_booster` is that booster, sliced, whose own
``predict`` equals the Spark scores.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.als.ids import new_indices
from shoprec.config import RankerConfig
from shoprec.evaluation.metrics import mean_ranking_metrics_by

if TYPE_CHECKING:
    import xgboost
    from xgboost.spark import SparkXGBRankerModel

log = logging.getLogger(__name__)

K = 10
METRIC = f"val_ndcg_at_{K}"


def num_workers(spark: SparkSession, cap: int) -> int:
    """XGBoost workers: the session's default parallelism (its task slots), at most ``cap``.
    Training runs them as one barrier stage, so there must be a slot for each."""
    return max(1, min(int(spark.sparkContext.defaultParallelism), cap))


def with_groups(table: DataFrame, validation_share: float, seed: int) -> DataFrame:
    """``table`` plus ``qid`` (int, consecutive per user in user order) and ``is_validation``
    (a seeded hash of the user: the same users held out on every rerun)."""
    qids = new_indices(table.select(C.USER_ID), None, C.USER_ID, C.QID)
    bucket = F.abs(F.xxhash64(F.col(C.USER_ID), F.lit(seed))) % F.lit(10_000)
    held_out = bucket < F.lit(round(validation_share * 10_000))
    return table.join(qids, on=C.USER_ID, how="inner").withColumn(C.IS_VALIDATION, held_out)


@dataclass(frozen=True)
class TrainedRanker:
    """A fitted ranker: the Spark model, its feature columns, and how training went."""

    model: SparkXGBRankerModel
    features: tuple[str, ...]
    workers: int
    best_iteration: int
    rounds: int  # boosting rounds run (early stopping stops after best + early_stopping_rounds)
    history: Mapping[str, Sequence[float]] = field(default_factory=dict)  # "train"/"validation" per round

    def booster(self) -> xgboost.Booster:
        return best_booster(self.model)


def best_booster(model: SparkXGBRankerModel) -> xgboost.Booster:
    """The booster of ``model`` cut at its best iteration: what ``model.transform`` predicts with."""
    booster = model.get_booster()
    best = booster.attr("best_iteration")
    return booster[: int(best) + 1] if best is not None else booster


def xgb_params(rcfg: RankerConfig) -> dict[str, Any]:
    """SparkXGBRanker's XGBoost parameters from config (``ranker.params``, ``ranker.seed``)."""
    p = rcfg.params
    return {
        "objective": p.objective,
        "eval_metric": p.eval_metric,
        "n_estimators": p.n_estimators,
        "early_stopping_rounds": p.early_stopping_rounds,
        "learning_rate": p.learning_rate,
        "max_depth": p.max_depth,
        "min_child_weight": p.min_child_weight,
        "subsample": p.subsample,
        "colsample_bytree": p.colsample_bytree,
        "reg_lambda": p.reg_lambda,
        "lambdarank_pair_method": p.lambdarank_pair_method,
        "lambdarank_num_pair_per_sample": p.lambdarank_num_pair_per_sample,
        "random_state": rcfg.seed,
    }


def fit(grouped: DataFrame, features: Sequence[str], rcfg: RankerConfig, workers: int) -> TrainedRanker:
    """Train on ``grouped`` (:func:`with_groups` of a labelled feature table): the rows with
    ``is_validation`` false train, the others early-stop. ``force_repartition``: XGBoost then
    range-partitions by qid into ``workers`` partitions and sorts each by qid (it skips both
    when the input already has ``workers`` partitions, and a user's rows could then be split)."""
    from xgboost.spark import SparkXGBRanker

    estimator = SparkXGBRanker(
        features_col=list(features),
        label_col=C.LABEL,
        qid_col=C.QID,
        validation_indicator_col=C.IS_VALIDATION,
        num_workers=workers,
        force_repartition=True,
        **xgb_params(rcfg),
    )
    log.info("training the ranker on %d XGBoost worker(s), %d features", workers, len(features))
    model = estimator.fit(grouped)
    booster = model.get_booster()
    best = booster.attr("best_iteration")
    summary = model.training_summary
    metric = rcfg.params.eval_metric
    history = {}
    if summary is not None:
        history = {
            "train": list(summary.train_objective_history.get(metric, [])),
            "validation": list(summary.validation_objective_history.get(metric, [])),
        }
    rounds = booster.num_boosted_rounds()
    return TrainedRanker(
        model, tuple(features), workers, int(best) if best is not None else rounds - 1, rounds, history
    )


def score(model: SparkXGBRankerModel, table: DataFrame, out: str = C.RANKER_SCORE) -> DataFrame:
    """``table`` plus ``out``: the ranker's score of every row, computed in Spark."""
    return model.transform(table).withColumnRenamed(C.PREDICTION, out)


def importance(booster: xgboost.Booster, features: Sequence[str]) -> list[dict[str, float | str]]:
    """Per feature: average and total gain and the number of splits (0 for an unused feature),
    highest average gain first."""
    gain = booster.get_score(importance_type="gain")
    total = booster.get_score(importance_type="total_gain")
    weight = booster.get_score(importance_type="weight")
    rows: list[dict[str, float | str]] = [
        {
            "feature": f,
            "gain": float(gain.get(f, 0.0)),  # type: ignore[arg-type]
            "total_gain": float(total.get(f, 0.0)),  # type: ignore[arg-type]
            "splits": float(weight.get(f, 0.0)),  # type: ignore[arg-type]
        }
        for f in features
    ]
    return sorted(rows, key=lambda r: (-float(r["gain"]), str(r["feature"])))


def order_metrics(scored: DataFrame, truth: DataFrame, orders: Mapping[str, Column]) -> dict[str, dict[str, float]]:
    """NDCG@10 and Recall@10 of ``scored`` (user_id, item_id, ...) ranked per user by each of
    ``orders`` (name -> a score column, higher first; ties by item id), against ``truth``'s
    users and items, in one Spark pass: ``{name: {"ndcg_at_10": .., "recall_at_10": .., "n_users": ..}}``."""
    stacked = None
    for name, column in orders.items():
        part = scored.select(C.USER_ID, C.ITEM_ID, F.lit(name).alias(C.ORDER), column.cast("double").alias("_s"))
        stacked = part if stacked is None else stacked.unionByName(part)
    if stacked is None:
        return {}
    w = Window.partitionBy(C.ORDER, C.USER_ID).orderBy(F.col("_s").desc_nulls_last(), F.col(C.ITEM_ID))
    top = stacked.withColumn(C.RANK, F.row_number().over(w)).where(F.col(C.RANK) <= K).drop("_s")
    rows = mean_ranking_metrics_by(top, truth, ks=(K,), by=(C.ORDER,)).collect()  # small: one row per order
    return {
        r[C.ORDER]: {
            f"ndcg_at_{K}": float(r[f"ndcg_at_{K}"] or 0.0),
            f"recall_at_{K}": float(r[f"recall_at_{K}"] or 0.0),
            C.N_USERS: float(r[C.N_USERS]),
        }
        for r in rows
    }
