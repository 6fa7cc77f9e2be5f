"""One Horovod rank of hybrid training (also the single-process path the benchmark uses).

    horovodrun -np 2 --gloo -H localhost:2 python -m shoprec.hybrid.train <spec.json>

Each rank: ``hvd.init``; CPU threads = cores / ranks; a GPU pinned by local rank when
there are GPUs; its own shards (files ``rank::size``) encoded with ``features.encode``
into a ``tf.data`` pipeline (shuffle, batch, repeat, prefetch) with the same number of
steps on every rank; Adam with the learning rate times the number of ranks wrapped in
``hvd.DistributedOptimizer``; variables broadcast from rank 0 before the first step;
training metrics averaged over ranks. After every epoch each rank scores its validation users (whole users per
shard), the NDCG@10 / AUC sums are all-reduced, so every rank takes the same early-
stopping decision; the best epoch's weights are restored at the end. Rank 0 alone logs
to MLflow, checkpoints, and saves the model; every rank writes ``rank<r>.json`` with a
digest of its final weights.

The spec is JSON written by ``shoprec.stages.train_hybrid``: data folder, output folder, the
training settings and, optionally, the MLflow tracking URI and run id to log into.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shoprec import columns as C
from shoprec.hybrid import features as H
from shoprec.hybrid.dataset import MANIFEST, TRAIN, VALID, rank_files, shard_files

if TYPE_CHECKING:
    import tensorflow as tf

MODEL_DIR = "model"
HISTORY = "history.json"
CHECKPOINT = "checkpoint/best.weights.h5"


class _Single:
    """The Horovod calls this module makes, for one process without Horovod (benchmark baseline)."""

    def rank(self) -> int:
        return 0

    def size(self) -> int:
        return 1

    def local_rank(self) -> int:
        return 0

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        return values

    def allreduce_min(self, value: int) -> int:
        return value

    def broadcast(self, variables: list[Any]) -> None:
        return None


class _Horovod(_Single):
    def __init__(self) -> None:
        import horovod.tensorflow as hvd_tf  # ops and broadcast_variables
        import horovod.tensorflow.keras as hvd

        hvd.init()
        self.hvd, self.ops = hvd, hvd_tf

    def rank(self) -> int:
        return self.hvd.rank()

    def size(self) -> int:
        return self.hvd.size()

    def local_rank(self) -> int:
        return self.hvd.local_rank()

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(self.hvd.allreduce(values.astype(np.float64), op=self.ops.Sum))

    def allreduce_min(self, value: int) -> int:
        return int(self.hvd.allreduce(np.array([value], dtype=np.int64), op=self.ops.Min)[0])

    def broadcast(self, variables: list[Any]) -> None:
        self.ops.broadcast_variables(variables, root_rank=0)


# ------------------------------------------------------------------------------ data
def load_examples(files: list[str], manifest: Mapping) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Encoded inputs, labels and user groups of some shards (read with pyarrow).

    Groups come from the raw user ids: users unknown to the vocabulary all encode to 0
    but are still separate lists for NDCG.
    """
    import pyarrow.parquet as pq

    if not files:
        return {}, np.zeros(0, np.float32), np.zeros(0, np.int64)
    pdf = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    x = H.encode(pdf, manifest)
    return x, pdf[C.LABEL].to_numpy(np.float32), pd.factorize(pdf[C.USER_ID])[0].astype(np.int64)


def dataset(x: Mapping[str, np.ndarray], y: np.ndarray, batch: int, seed: int) -> tf.data.Dataset:
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((dict(x), y))
    ds = ds.shuffle(min(len(y), 200_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------ validation metrics
def ranking_sums(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 10) -> np.ndarray:
    """``[sum NDCG@k, sum AUC, users with NDCG, users with AUC]`` over the groups (users).

    Each user's list is their validation positives plus sampled negatives, ranked by
    score (ties: positives last, so ties never flatter the model). NDCG@k with binary
    relevance and log2 discount as EVALUATION.md; AUC = share of (positive, negative)
    pairs of the user ordered correctly, ties counting half.
    """
    if len(labels) == 0:
        return np.zeros(4)
    df = pd.DataFrame({"g": groups, "y": labels, "s": scores})
    df = df.sort_values(["g", "s", "y"], ascending=[True, False, True], kind="mergesort")
    df["pos"] = df.groupby("g").cumcount() + 1
    df["gain"] = np.where((df["y"] > 0) & (df["pos"] <= k), 1.0 / np.log2(df["pos"] + 1.0), 0.0)
    per = df.groupby("g").agg(dcg=("gain", "sum"), p=("y", "sum"), n=("y", "size"))
    per["n"] = per["n"] - per["p"]
    ideal = np.array([np.sum(1.0 / np.log2(np.arange(2, min(int(p), k) + 2))) for p in per["p"]])
    has_pos = per["p"] > 0
    ndcg = np.where(has_pos, per["dcg"] / np.where(ideal > 0, ideal, 1.0), 0.0)
    df["r"] = df.groupby("g")["s"].rank(method="average")  # ascending, ties averaged
    pos_rank = df[df["y"] > 0].groupby("g")["r"].sum().reindex(per.index, fill_value=0.0)
    both = has_pos & (per["n"] > 0)
    auc = np.where(both, (pos_rank - per["p"] * (per["p"] + 1) / 2) / np.maximum(per["p"] * per["n"], 1), 0.0)
    return np.array([ndcg[has_pos].sum(), auc[both].sum(), float(has_pos.sum()), float(both.sum())])


def _validation_callback(
    hv: _Single,
    x_val: Mapping[str, np.ndarray],
    y_val: np.ndarray,
    g_val: np.ndarray,
    patience: int,
    logger: Callable[[dict], None],
    started: float,
) -> tf.keras.callbacks.Callback:
    import tensorflow as tf

    class Validation(tf.keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best = -math.inf
            self.best_epoch = -1
            self.best_weights = None
            self.wait = 0
            self.epochs: list[dict[str, float]] = []
            self.epoch_started = time.perf_counter()

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            train_seconds = time.perf_counter() - self.epoch_started
            scores = self.model.predict(x_val, batch_size=8192, verbose=0) if len(y_val) else np.zeros(0)
            sums = hv.allreduce_sum(ranking_sums(g_val, y_val, np.asarray(scores).ravel()))
            ndcg = sums[0] / max(sums[2], 1.0)
            auc = sums[1] / max(sums[3], 1.0)
            row = {
                "epoch": epoch + 1,
                "loss": float((logs or {}).get("loss", float("nan"))),
                "auc": float((logs or {}).get("auc", float("nan"))),
                "val_ndcg_at_10": float(ndcg),
                "val_auc": float(auc),
                "val_users": int(sums[2]),
                "epoch_seconds": train_seconds,
                "elapsed_seconds": time.perf_counter() - started,
            }
            self.epochs.append(row)
            if ndcg > self.best:
                self.best, self.best_epoch, self.wait = ndcg, epoch + 1, 0
                self.best_weights = self.model.get_weights()
                row["best"] = True
            else:
                self.wait += 1
                if self.wait >= patience:
                    self.model.stop_training = True  # same sums on every rank: same decision
            logger(row)

    return Validation()


# ------------------------------------------------------------------------------ setup
def _configure_threads(threads: int | None, size: int, local_rank: int) -> int:
    import tensorflow as tf

    per_rank = threads or max(1, (os.cpu_count() or 1) // size)
    tf.config.threading.set_intra_op_parallelism_threads(per_rank)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, per_rank)))
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:  # one GPU per local rank
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
        tf.config.experimental.set_memory_growth(gpus[local_rank % len(gpus)], True)
    return per_rank


def _mlflow_logger(spec: Mapping, rank: int) -> Callable[[dict], None]:
    """Rank 0 logs each epoch to the job's MLflow run; other ranks log nothing."""
    target = spec.get("mlflow")
    if rank != 0 or not target:
        return lambda row: None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=target["tracking_uri"])

    def log(row: dict) -> None:
        step = int(row["epoch"])
        for key in ("loss", "auc", "val_ndcg_at_10", "val_auc", "epoch_seconds"):
            value = row[key]
            if value == value:  # not NaN
                client.log_metric(target["run_id"], f"epoch.{key}", float(value), step=step)

    return log


def _load_als(spec: Mapping) -> dict[str, np.ndarray] | None:
    path = spec.get("als_factors")
    if not path:
        return None
    data = np.load(path)
    return {"user": data["user"], "item": data["item"]}


# ------------------------------------------------------------------------------ main
def train(spec: Mapping[str, Any], distributed: bool = True) -> dict:
    """Train on this rank; returns (and writes) ``rank<r>.json``. See the module docstring."""
    import tensorflow as tf

    from shoprec.config import HybridModelConfig, _build
    from shoprec.hybrid.model import build_model, weights_digest

    started = time.perf_counter()
    hv = _Horovod() if distributed else _Single()
    rank, size = hv.rank(), hv.size()
    threads = _configure_threads(spec.get("threads_per_rank"), size, hv.local_rank())
    seed = int(spec.get("seed", 42))
    tf.keras.utils.set_random_seed(seed)  # same initial weights everywhere (and broadcast anyway)
    folder, out = spec["data_folder"], spec["out_dir"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(folder, MANIFEST)) as fh:
        manifest = json.load(fh)

    x, y, _ = load_examples(rank_files(shard_files(os.path.join(folder, TRAIN)), rank, size), manifest)
    x_val, y_val, g_val = load_examples(rank_files(shard_files(os.path.join(folder, VALID)), rank, size), manifest)
    batch = int(spec["batch_size"])
    steps = hv.allreduce_min(max(1, len(y) // batch)) if len(y) >= batch else hv.allreduce_min(0)
    if steps < 1:
        raise SystemExit(f"rank {rank}: {len(y)} training rows, fewer than one batch of {batch}")

    mcfg = _build(HybridModelConfig, spec.get("model", {}), "hybrid.model", {})
    model = build_model(manifest, mcfg, _load_als(spec))
    optimizer = tf.keras.optimizers.legacy.Adam(learning_rate=float(spec["learning_rate"]) * size)
    callbacks: list = []
    if distributed:
        assert isinstance(hv, _Horovod)
        hvd = hv.hvd
        optimizer = hvd.DistributedOptimizer(optimizer)
        # Epoch-end only: a per-batch callback (like BroadcastGlobalVariablesCallback) makes
        # Keras sync every batch's logs to numpy, which stalls the input pipeline.
        callbacks.append(hvd.callbacks.MetricAverageCallback())
    # Rank 0's initial weights everywhere; the optimizer's slots start at zero on every rank.
    hv.broadcast(model.variables)
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=[tf.keras.metrics.AUC(name="auc")])
    validation = _validation_callback(
        hv, x_val, y_val, g_val, int(spec.get("patience", 2)), _mlflow_logger(spec, rank), started
    )
    callbacks.append(validation)
    if rank == 0:
        os.makedirs(os.path.dirname(os.path.join(out, CHECKPOINT)), exist_ok=True)
        callbacks.append(tf.keras.callbacks.ModelCheckpoint(os.path.join(out, CHECKPOINT), save_weights_only=True))

    fit_started = time.perf_counter()
    model.fit(
        dataset(x, y, batch, seed + rank),
        epochs=int(spec["epochs"]),
        steps_per_epoch=steps,
        callbacks=callbacks,
        verbose=0,
    )
    fit_seconds = time.perf_counter() - fit_started
    if validation.best_weights is not None:
        model.set_weights(validation.best_weights)

    epochs = validation.epochs
    train_seconds = sum(e["epoch_seconds"] for e in epochs)
    result = {
        "rank": rank,
        "size": size,
        "threads": threads,
        "train_rows": len(y),
        "valid_rows": len(y_val),
        "steps_per_epoch": steps,
        "batch_size": batch,
        "epochs_run": len(epochs),
        "best_epoch": validation.best_epoch,
        "val_ndcg_at_10": validation.best,
        "val_auc": next((e["val_auc"] for e in epochs if e["epoch"] == validation.best_epoch), None),
        "fit_seconds": fit_seconds,
        "train_seconds": train_seconds,
        "samples_per_second": steps * batch * size * len(epochs) / max(train_seconds, 1e-9),
        "seconds_to_best": next((e["elapsed_seconds"] for e in epochs if e["epoch"] == validation.best_epoch), None),
        "weights_digest": weights_digest(model),
    }
    if rank == 0:
        model.save(os.path.join(out, MODEL_DIR), include_optimizer=False)
        with open(os.path.join(out, HISTORY), "w") as fh:
            json.dump({"epochs": epochs, "result": result}, fh, indent=1)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m shoprec.hybrid.train <spec.json>", file=sys.stderr)
        return 2
    from shoprec.hybrid.loopback import load_secrets

    load_secrets()  # credentials the launcher kept off the command line
    with open(argv[0]) as fh:
        spec = json.load(fh)
    train(spec, distributed=spec.get("distributed", True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
