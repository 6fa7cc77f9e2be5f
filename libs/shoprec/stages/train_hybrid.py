"""``shoprec train-hybrid``: training data in Spark, Horovod training, MLflow, registry, candidates.

    silver + gold.item_features (as_of) ─► dataset.write_training_data ─► <work>/data (shards, manifest)
    horovodrun -np N (local) | horovod.spark.run (cluster) ─► shoprec.hybrid.train on every rank
        ─► <work>/out: SavedModel, history, rank<r>.json (weights digests must agree)
    MLflow: params, per-epoch metrics (rank 0), manifest, history, training-curve plot,
            pyfunc model with signature ─► registered shoprec-hybrid (challenger; champion if better)
    re-rank pool (ALS top-N + own purchases + popular) scored in Spark ─► gold.candidates (source hybrid)

``<work>`` is ``<data_root>/<hybrid.work_dir>/<as_of>``; it is replaced on every run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession

from shoprec import columns as C
from shoprec import paths
from shoprec.config import Config
from shoprec.errors import ShoprecError
from shoprec.hybrid import dataset, loopback, scoring
from shoprec.hybrid.train import HISTORY, MODEL_DIR
from shoprec.split import TemporalSplit
from shoprec.stages.candidate_store import read_candidates, write_candidates
from shoprec.stages.context import (
    JobContext,
    model_stage,
    required_as_of,
    resolve_run_split,
)
from shoprec.tables import Tables
from shoprec.tracking import RunLogger, store_for

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SRC_HYBRID = C.SRC_HYBRID
METRIC = "val_ndcg_at_10"


@dataclass
class HybridReport:
    as_of: str
    counts: dict
    launcher: str
    num_proc: int
    result: dict
    epochs: list[dict]
    registration: str = ""
    model_version: str = ""
    n_candidates: int = 0
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        r = self.result
        lines = [
            f"train-hybrid (as_of {self.as_of}) finished in {self.seconds:.1f} s "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in self.stage_seconds.items())})",
            f"  examples: train {self.counts['train_rows']:,} ({self.counts['train_positives']:,} positives, "
            f"{self.counts['train_users']:,} users), validation {self.counts['valid_rows']:,} "
            f"({self.counts['valid_positives']:,} positives, {self.counts['valid_users']:,} users)",
            f"  {self.launcher} with {self.num_proc} process(es): {r['epochs_run']} epochs, "
            f"{r['samples_per_second']:,.0f} samples/s, best epoch {r['best_epoch']}",
            "    epoch      loss   train AUC  val NDCG@10  val AUC   seconds",
        ]
        for e in self.epochs:
            mark = "  <- best" if e["epoch"] == r["best_epoch"] else ""
            lines.append(
                f"    {e['epoch']:>5} {e['loss']:>9.4f} {e['auc']:>11.4f} {e['val_ndcg_at_10']:>12.4f}"
                f" {e['val_auc']:>8.4f} {e['epoch_seconds']:>9.1f}{mark}"
            )
        if self.registration:
            lines.append(f"  registry: {self.registration}")
        lines.append(f"  hybrid candidates (re-ranked pool): {self.n_candidates:,}")
        return lines


def work_folder(cfg: Config, split: TemporalSplit) -> str:
    return paths.hybrid_work(cfg.data_root, cfg.hybrid.work_dir, split.as_of)


def run_train_hybrid(
    spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, run: RunLogger
) -> HybridReport:
    started = time.perf_counter()
    stages: dict[str, float] = {}
    hcfg = cfg.hybrid
    item_features = required_as_of(tables, C.GOLD_ITEM_FEATURES, split.as_of)
    interactions = tables.read(C.SILVER_INTERACTIONS)
    work = work_folder(cfg, split)
    shutil.rmtree(work, ignore_errors=True)

    t0 = time.perf_counter()
    data = dataset.write_training_data(interactions, item_features, split, cfg, os.path.join(work, "data"))
    stages["data"] = time.perf_counter() - t0
    run.counts(data.manifest["counts"], prefix="data.")
    run.artifact(data.manifest_path, "hybrid")

    spec = training_spec(cfg, data.folder, os.path.join(work, "out"), run.run_id)
    spec["as_of"] = split.as_of.isoformat()
    if hcfg.model.warm_start_als:
        spec["als_factors"] = _als_init(tables, split, data.manifest, os.path.join(work, "als_init.npz"))
    t0 = time.perf_counter()
    launcher = _launcher(cfg, spark)
    result, epochs = launch(spec, hcfg.num_proc, launcher, spark)
    stages["training"] = time.perf_counter() - t0

    report = HybridReport(split.as_of.isoformat(), data.manifest["counts"], launcher, hcfg.num_proc, result, epochs)
    _log_training(run, cfg, spec, result, epochs)
    model_dir = os.path.join(spec["out_dir"], MODEL_DIR)
    t0 = time.perf_counter()
    report.registration, report.model_version = _log_and_register(cfg, run, spec, data.manifest_path, result)
    stages["mlflow"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with tables.all_or_nothing([C.GOLD_CANDIDATES]):
        scored = _score_pool(cfg, tables, interactions, item_features, split, model_dir, data.manifest_path)
        write_candidates(tables, scoring.top_n(scored, cfg.candidates.n), SRC_HYBRID, split.as_of)
    report.n_candidates = read_candidates(tables, split.as_of, [SRC_HYBRID]).count()
    stages["candidates"] = time.perf_counter() - t0
    report.stage_seconds = stages
    report.seconds = time.perf_counter() - started
    run.metrics(
        {"seconds": report.seconds, "candidates": report.n_candidates, **{f"seconds.{k}": v for k, v in stages.items()}}
    )
    return report


# ------------------------------------------------------------------------------ launching
def training_spec(cfg: Config, data_folder: str, out_dir: str, run_id: str | None) -> dict:
    """What every rank needs, as JSON (the same for horovodrun and horovod.spark.run)."""
    hcfg = cfg.hybrid
    store = store_for(cfg)
    return {
        "data_folder": data_folder,
        "out_dir": out_dir,
        "epochs": hcfg.epochs,
        "batch_size": hcfg.batch_size,
        "learning_rate": hcfg.learning_rate,
        "patience": hcfg.patience,
        "seed": hcfg.seed,
        "threads_per_rank": hcfg.threads_per_rank,
        "model": json.loads(json.dumps(cfg.to_dict()["hybrid"]["model"])),
        "mlflow": {"tracking_uri": store.tracking_uri, "run_id": run_id} if run_id else None,
    }


def _launcher(cfg: Config, spark: SparkSession) -> str:
    if cfg.hybrid.launcher != "auto":
        return cfg.hybrid.launcher
    return "horovodrun" if (spark.sparkContext.master or "").startswith("local") else "spark"


def launch(spec: dict, num_proc: int, launcher: str, spark: SparkSession | None = None) -> tuple[dict, list]:
    """Run ``shoprec.hybrid.train`` on ``num_proc`` Horovod ranks; rank 0's result and epochs.

    Fails when a rank fails or when the ranks end with different weights.
    """
    out = spec["out_dir"]
    os.makedirs(out, exist_ok=True)
    spec_path = os.path.join(out, "spec.json")
    with open(spec_path, "w") as fh:
        json.dump(spec, fh, indent=1)
    if launcher == "horovodrun":
        _horovodrun(spec_path, num_proc, out)
    elif launcher == "spark":
        import horovod.spark

        horovod.spark.run(_spark_rank, args=(spec,), num_proc=num_proc, use_gloo=True, use_mpi=False)
    else:
        raise ShoprecError(f"hybrid.launcher {launcher!r} is not one of auto, horovodrun, spark")
    ranks = [_read_json(os.path.join(out, f"rank{r}.json")) for r in range(num_proc)]
    digests = {r["weights_digest"] for r in ranks}
    if len(digests) != 1:
        raise ShoprecError(
            f"Horovod ranks ended with different weights ({len(digests)} distinct digests)",
            hint="a rank did not receive the broadcast or skipped steps; see the training log",
        )
    with open(os.path.join(out, HISTORY)) as fh:
        history = json.load(fh)
    return history["result"], history["epochs"]


def _read_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def horovodrun_command(spec_path: str, num_proc: int) -> list[str]:
    """horovodrun (on loopback: shoprec.hybrid.loopback) of ``num_proc`` training ranks."""
    return loopback.horovodrun_command([sys.executable, "-m", "shoprec.hybrid.train", spec_path], num_proc)


def _horovodrun(spec_path: str, num_proc: int, out: str) -> None:
    log_path = os.path.join(out, "horovodrun.log")
    cmd = horovodrun_command(spec_path, num_proc)
    log.info("launching: %s (log: %s)", " ".join(cmd), log_path)
    # Horovod puts its environment on each rank's command line: only what a rank needs goes
    # there; credentials (a tracking server's token) travel in a file only the user reads.
    env = loopback.rank_environment(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    secrets = loopback.write_secrets(os.environ, os.path.join(out, "rank-secrets.json"))
    if secrets:
        env[loopback.SECRETS_ENV] = secrets
    try:
        with open(log_path, "w") as fh:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    finally:
        if secrets:
            os.remove(secrets)
    if code != 0:
        with open(log_path) as fh:
            tail = fh.read()[-3000:]
        raise ShoprecError(
            f"horovodrun exited with {code}; the last lines of {log_path}:\n{tail}",
            hint="see the whole log; --set hybrid.num_proc=1 trains in one process",
        )


def _spark_rank(spec: dict) -> dict:
    """One rank inside a Spark executor (horovod.spark.run)."""
    from shoprec.hybrid.train import train

    return train(spec, distributed=True)


# ------------------------------------------------------------------------------ warm start
def _als_init(tables: Tables, split: TemporalSplit, manifest: dict, path: str) -> str:
    """ALS factors of as_of aligned with the manifest vocabularies (row 0 and unknowns: small noise)."""
    import numpy as np

    out = {}
    for key, table, id_col in (
        ("user", C.GOLD_ALS_USER_FACTORS, C.USER_ID),
        ("item", C.GOLD_ALS_ITEM_FACTORS, C.ITEM_ID),
    ):
        factors = required_as_of(tables, table, split.as_of).select(id_col, C.FACTORS)
        pdf: pd.DataFrame = factors.toPandas()  # small: one row per user or item id
        vocab = manifest["vocab"][id_col]
        rank = len(pdf[C.FACTORS].iloc[0])
        rng = np.random.default_rng(0)
        matrix = rng.normal(0, 0.01, (len(vocab) + 1, rank)).astype(np.float32)
        position = {v: i + 1 for i, v in enumerate(vocab)}
        for ident, vec in zip(pdf[id_col], pdf[C.FACTORS], strict=True):
            if ident in position:
                matrix[position[ident]] = vec
        out[key] = matrix
    np.savez(path, **out)
    return path


# ------------------------------------------------------------------------------ MLflow
def _log_training(run: RunLogger, cfg: Config, spec: dict, result: dict, epochs: list[dict]) -> None:
    run.params(
        {
            "hybrid.launcher_processes": cfg.hybrid.num_proc,
            "hybrid.steps_per_epoch": result["steps_per_epoch"],
            "hybrid.resolved_threads_per_rank": result["threads"],
        }
    )
    run.metrics(
        {
            k: float(result[k])
            for k in (
                "val_ndcg_at_10",
                "val_auc",
                "samples_per_second",
                "fit_seconds",
                "seconds_to_best",
                "best_epoch",
                "epochs_run",
            )
            if result.get(k) is not None
        }
    )
    run.dict({"epochs": epochs, "result": result}, "hybrid/history.json")
    plot = _plot_curves(epochs, os.path.join(spec["out_dir"], "training_curves.png"))
    if plot:
        run.artifact(plot, "hybrid")


def _plot_curves(epochs: list[dict], path: str) -> str | None:
    if not epochs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [e["epoch"] for e in epochs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(x, [e["loss"] for e in epochs], marker="o", label="train loss")
    a.set_xlabel("epoch"), a.set_title("binary cross-entropy"), a.legend()
    b.plot(x, [e["auc"] for e in epochs], marker="o", label="train AUC")
    b.plot(x, [e["val_auc"] for e in epochs], marker="o", label="validation AUC")
    b.plot(x, [e["val_ndcg_at_10"] for e in epochs], marker="o", label="validation NDCG@10")
    b.set_xlabel("epoch"), b.set_title("ranking quality"), b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _log_and_register(cfg: Config, run: RunLogger, spec: dict, manifest_path: str, result: dict) -> tuple[str, str]:
    import mlflow

    import shoprec
    from shoprec.hybrid import pyfunc
    from shoprec.registry import register_and_promote

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=pyfunc.HybridPyfunc(),
        artifacts={pyfunc.KERAS_MODEL: os.path.join(spec["out_dir"], MODEL_DIR), pyfunc.MANIFEST: manifest_path},
        code_paths=[os.path.dirname(shoprec.__file__)],
        signature=pyfunc.signature(),
        pip_requirements=pyfunc.pip_requirements(),
    )
    registration = register_and_promote(
        info.model_uri,
        cfg.hybrid.registered_model,
        METRIC,
        float(result["val_ndcg_at_10"]),
        tags={"val_auc": str(result.get("val_auc"))},
        as_of=spec.get("as_of") or None,
        description=f"as_of {spec.get('as_of', '')}: validation NDCG@10 {float(result['val_ndcg_at_10']):.4f}, "
        f"AUC {float(result['val_auc']):.4f}",
    )
    return registration.describe(), registration.version


# ------------------------------------------------------------------------------ candidates
def _score_pool(
    cfg: Config,
    tables: Tables,
    interactions: DataFrame,
    item_features: DataFrame,
    split: TemporalSplit,
    model_dir: str,
    manifest_path: str,
) -> DataFrame:
    confidence = required_as_of(tables, C.GOLD_CONFIDENCE, split.as_of)
    users = required_as_of(tables, C.GOLD_USER_FEATURES, split.as_of)
    als = read_candidates(tables, split.as_of, [C.SRC_ALS])
    pool = scoring.rerank_pool(als, confidence, item_features, cfg.hybrid.rerank_pool)
    feats = scoring.scoring_features(
        pool, interactions, users, item_features, split, cfg.features.holidays, with_text=False
    )
    return scoring.score_pairs(feats, model_dir, manifest_path, item_features=item_features)


# ------------------------------------------------------------------------------ the stage
def train_hybrid_stage(ctx: JobContext, as_of: date | None = None, split: TemporalSplit | None = None) -> HybridReport:
    """``shoprec train-hybrid``: Horovod-trained hybrid model, registered, its candidates in gold."""
    return model_stage(ctx, "train-hybrid", split or resolve_run_split(ctx, as_of), run_train_hybrid)
