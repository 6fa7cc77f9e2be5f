"""Hybrid training throughput: plain model.fit vs Horovod with 1 and 2 processes, same model and data.

    python bench/train_throughput.py --data-root /tmp/lh-or          # after `shoprec pipeline` there
    python bench/train_throughput.py --data-root DIR --epochs 3
    python bench/train_throughput.py --smoke          # 1 epoch on the smoke lakehouse: checks it runs

All three run the same code (``shoprec.hybrid.train``) in a fresh process on the same
shards and manifest (``<data_root>/_hybrid/<as_of>/data``, built with Spark first when
missing, not timed), for a fixed number of epochs (no early stop):
  (a) plain: one process, no Horovod, tf.keras ``model.fit`` with every core;
  (b) horovodrun -np 1 (Gloo): the same with Horovod's optimizer and all-reduces;
  (c) horovodrun -np 2: two ranks, cores split between them, each on half the shards.
Samples/s counts training steps only (validation excluded). Also reported: the best
validation NDCG@10 and the time from start to reaching it; and, when the data root has
gold.evaluation for its as_of, the quality table of the hybrid next to ALS and the
baselines (warm users, NDCG@10 and Recall@20). Target: (b) within 10% of (a).
Writes bench/results/train_throughput.json. ``--smoke`` trains the small hybrid of
bench/pipeline.py --smoke for one epoch on its tiny lakehouse (built first when --data-root
is not given).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date

from _common import (
    SMOKE_AS_OF,
    SMOKE_PIPELINE,
    SMOKE_WORK,
    add_output_args,
    json_path,
    machine_info,
    now,
    say,
    smoke_defaults,
    smoke_lakehouse,
    write_json,
)
from shoprec import paths
from shoprec.config import load_config
from shoprec.hybrid.dataset import MANIFEST
from shoprec.hybrid.train import HISTORY
from shoprec.stages.train_hybrid import horovodrun_command, training_spec

MODES = (
    ("plain model.fit, 1 process", "plain", 1),
    ("Horovod, 1 process", "horovod", 1),
    ("Horovod, 2 processes", "horovod", 2),
)
SMOKE = {"as_of": SMOKE_AS_OF, "epochs": 1, "out": os.path.join(SMOKE_WORK, "train")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="a data root after `shoprec pipeline` (required unless --smoke)")
    p.add_argument("--as-of", default="2011-11-01")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default="/tmp/shoprec-bench-train")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    add_output_args(p)
    args = smoke_defaults(p, p.parse_args(argv), **SMOKE)
    if args.data_root is None and not args.smoke:
        p.error("--data-root is required (a data root after `shoprec pipeline`), or pass --smoke")
    if args.smoke:  # the small network the smoke pipeline trained, on two cores
        args.overrides = [*SMOKE_PIPELINE, *args.overrides]
    return args


def ensure_data(cfg, as_of: date) -> str:
    folder = os.path.join(paths.hybrid_work(cfg.data_root, cfg.hybrid.work_dir, as_of), "data")
    if os.path.exists(os.path.join(folder, MANIFEST)):
        return folder
    say("building training data with Spark (not timed) ...")

    from shoprec import columns as C
    from shoprec.hybrid.dataset import write_training_data
    from shoprec.spark import get_spark
    from shoprec.split import resolve_split
    from shoprec.tables import open_tables

    spark = get_spark(cfg.spark)
    tables = open_tables(spark, cfg.data_root, cfg.storage.delta_backend)
    interactions = tables.read(C.SILVER_INTERACTIONS)
    split = resolve_split(cfg, interactions, as_of)
    items = tables.read_as_of(C.GOLD_ITEM_FEATURES, as_of)
    write_training_data(interactions, items, split, cfg, folder)
    spark.stop()
    return folder


def run_mode(cfg, folder: str, out: str, kind: str, procs: int, epochs: int) -> dict:
    spec = training_spec(cfg, folder, out, None)
    spec.update(epochs=epochs, patience=epochs + 1, distributed=kind == "horovod", threads_per_rank=None)
    os.makedirs(out, exist_ok=True)
    spec_path = os.path.join(out, "spec.json")
    with open(spec_path, "w") as fh:
        json.dump(spec, fh)
    cmd = (
        horovodrun_command(spec_path, procs)
        if kind == "horovod"
        else [sys.executable, "-m", "shoprec.hybrid.train", spec_path]
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.perf_counter()
    with open(os.path.join(out, "run.log"), "w") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{kind} x{procs} failed; see {out}/run.log")
    with open(os.path.join(out, HISTORY)) as fh:
        history = json.load(fh)
    r = history["result"]
    return {
        "processes": procs,
        "threads_per_process": r["threads"],
        "samples_per_second": round(r["samples_per_second"], 1),
        "train_seconds": round(r["train_seconds"], 2),
        "wall_seconds": round(wall, 2),
        "epochs": r["epochs_run"],
        "best_epoch": r["best_epoch"],
        "val_ndcg_at_10": round(r["val_ndcg_at_10"], 4),
        "val_auc": round(r["val_auc"], 4),
        "seconds_to_best": round(r["seconds_to_best"], 1),
        "steps_per_epoch": r["steps_per_epoch"],
        "batch_size_per_process": r["batch_size"],
        "epoch_curve": [
            {k: e[k] for k in ("epoch", "loss", "val_ndcg_at_10", "epoch_seconds")} for e in history["epochs"]
        ],
    }


def quality(cfg, as_of: str) -> dict | None:
    """Warm-user NDCG@10 / Recall@20 per source from gold.evaluation of the data root."""
    from deltalake import DeltaTable

    path = os.path.join(cfg.data_root, "gold", "evaluation")
    if not os.path.isdir(path):
        return None
    rows = DeltaTable(path).to_pyarrow_table().to_pylist()
    out: dict = {}
    for r in rows:
        if str(r["as_of"]) != as_of or r["segment"] not in ("warm", "all") or r["variant"] != "repeat":
            continue
        if (r["metric"], r["k"]) in (("ndcg", 10), ("recall", 20)):
            by_source = out.setdefault(r["segment"], {}).setdefault(r["source"], {})
            by_source[f"{r['metric']}_at_{r['k']}"] = round(r["value"], 4)
    return out or None


def main(argv=None) -> int:
    args = parse_args(argv)
    out = json_path(args, "train_throughput")
    if args.data_root is None:
        args.data_root = smoke_lakehouse()
    load_before = os.getloadavg()
    cfg = load_config(
        "local",
        ["spark.launch_settings.spark.ui.enabled=false", *args.overrides],
        data_root=os.path.abspath(args.data_root),
    )
    as_of = date.fromisoformat(args.as_of)
    folder = ensure_data(cfg, as_of)
    with open(os.path.join(folder, MANIFEST)) as fh:
        counts = json.load(fh)["counts"]
    report = {
        "when": now(),
        "smoke": args.smoke,
        "data": folder,
        "counts": counts,
        "epochs": args.epochs,
        "model": cfg.to_dict()["hybrid"]["model"],
        "modes": {},
    }
    for label, kind, procs in MODES:
        say(f"{label} ...")
        report["modes"][label] = run_mode(
            cfg, folder, os.path.join(args.out, f"{kind}{procs}"), kind, procs, args.epochs
        )
    plain = report["modes"][MODES[0][0]]["samples_per_second"]
    for label, _, _ in MODES:
        report["modes"][label]["ratio_vs_plain"] = round(report["modes"][label]["samples_per_second"] / plain, 3)
    report["quality"] = quality(cfg, args.as_of)
    report["machine"] = machine_info(None, load_before)
    print_report(report)
    write_json(report, out)
    return 0


def print_report(report: dict) -> None:
    c = report["counts"]
    print(
        f"\nhybrid training on {c['train_rows']:,} examples ({c['train_positives']:,} positives), "
        f"validation {c['valid_rows']:,}; {report['epochs']} epochs each"
    )
    print(f"  {'':<28}{'samples/s':>11}{'vs plain':>10}{'train s':>9}{'best val NDCG@10':>18}{'s to best':>11}")
    for label, m in report["modes"].items():
        print(
            f"  {label:<28}{m['samples_per_second']:>11,.0f}{m['ratio_vs_plain']:>10.3f}{m['train_seconds']:>9.1f}"
            f"{m['val_ndcg_at_10']:>18.4f}{m['seconds_to_best']:>11.1f}"
        )
    q = report.get("quality")
    if q:
        for segment, by_source in q.items():
            print(f"\n  quality on the evaluation window, {segment} users (repeat purchases count)")
            for source, m in sorted(by_source.items(), key=lambda kv: -kv[1].get("ndcg_at_10", 0)):
                print(
                    f"    {source:<18} NDCG@10 {m.get('ndcg_at_10', float('nan')):.4f}   "
                    f"Recall@20 {m.get('recall_at_20', float('nan')):.4f}"
                )
    print(
        f"\nload average before {report['machine']['load_average_before'][0]:.2f}, "
        f"after {report['machine']['load_average_after'][0]:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
