"""ALS fit and top-10 for all users: this project's path vs Spark's recommendForAllUsers vs `implicit`.

    python bench/als_topn.py                                  # Online Retail + 10M generated events
    python bench/als_topn.py --skip-events                    # Online Retail only
    python bench/als_topn.py --events-root /tmp/shoprec-bench-ingest/event_log   # reuse an ingested log
    python bench/als_topn.py --smoke                          # 20,000 generated events, rank 8: checks it runs

For each dataset, in one run and on the same matrix (gold confidence of the history
before as_of, the project's features code):
  1. Spark ALS fit (implicit, --rank, --iterations) with the project's block count (the
     session's parallelism) and, with --mllib-default-blocks, with MLlib's default of 10.
  2. Top-10 for every user: the project's blocked top-N (shoprec.als.topn) versus
     ALSModel.recommendForAllUsers(10) on the same model; both written to Spark's noop
     sink so each runs to the end. The lists are compared (they must agree).
  3. The single-node `implicit` library (same rank, iterations, regularisation, alpha) on
     the same matrix, collected to a scipy CSR matrix: fit, and recommend for all users.
  4. NDCG@10 and Recall@10 of each on the evaluation window (warm users: users with
     factors who bought in the window), repeat purchases included.
Data roots without silver tables are ingested first (not timed here; see bench/ingest.py).
Prints a table; writes bench/results/als_topn.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from pyspark.sql import functions as F

from _common import (
    SMOKE_SPARK,
    SMOKE_WORK,
    add_output_args,
    json_path,
    machine_info,
    now,
    say,
    smoke_defaults,
    write_json,
)
from shoprec import columns as C
from shoprec.als import ids
from shoprec.als.model import AlsParams, fit_als, item_factors, user_factors
from shoprec.als.topn import top_n_for_users
from shoprec.config import load_config
from shoprec.spark import get_spark
from shoprec.split import resolve_split
from shoprec.stages import id_maps
from shoprec.tables import open_tables

BENCH_OVERRIDES = [
    "spark.launch_settings.spark.ui.enabled=false",
    "spark.launch_settings.spark.ui.showConsoleProgress=false",
]
RETAIL_FILE = os.path.join("data", "online-retail", "online_retail.csv.gz")
SMOKE = {
    "skip_retail": True,
    "events": 20_000,
    "items": 150,
    "rank": 8,
    "iterations": 3,
    "mllib_default_blocks": "none",
    "root": os.path.join(SMOKE_WORK, "als_topn"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="/tmp/shoprec-bench-als", help="data roots created here when needed")
    p.add_argument("--retail-root", default=None, help="a data root with Online Retail already ingested")
    p.add_argument("--events-root", default=None, help="a data root with a generated event log already ingested")
    p.add_argument("--events", type=int, default=10_000_000, help="events to generate when --events-root is not given")
    p.add_argument("--items", type=int, default=20_000, help="catalog size of the generated events")
    p.add_argument("--skip-retail", action="store_true")
    p.add_argument("--skip-events", action="store_true")
    p.add_argument("--retail-as-of", default="2011-11-01")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--reg-param", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=10.0)
    p.add_argument("--n", type=int, default=10)
    p.add_argument(
        "--mllib-default-blocks",
        choices=["retail", "all", "none"],
        default="retail",
        help="also fit with MLlib's default 10 blocks (slow at 10M events)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    add_output_args(p)
    args = smoke_defaults(p, p.parse_args(argv), **SMOKE)
    if args.smoke:
        args.overrides = [*SMOKE_SPARK, *args.overrides]
    return args


# ----------------------------------------------------------------------------- data
def prepare(args, name: str, data_root: str | None) -> tuple:
    """Config, session, tables and split of a data root, ingesting into it when it has no silver."""
    root = os.path.abspath(data_root or os.path.join(args.root, name))
    extra = ["ingest.source=online_retail"] if name == "online_retail" else ["ingest.source=event_log"]
    cfg = load_config("local", [*BENCH_OVERRIDES, *extra, *args.overrides], data_root=root)
    spark = get_spark(cfg.spark)
    tables = open_tables(spark, cfg.data_root, cfg.storage.delta_backend)
    if not tables.exists(C.SILVER_INTERACTIONS):
        _ingest(args, name, cfg, spark, tables)
    interactions = tables.read(C.SILVER_INTERACTIONS)
    as_of = None
    if name == "online_retail":
        from datetime import date

        as_of = date.fromisoformat(args.retail_as_of)
    split = resolve_split(cfg if name == "online_retail" else _auto(cfg), interactions, as_of)
    return cfg, spark, tables, interactions, split


def _auto(cfg):
    import dataclasses

    return dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, as_of="auto"))


def _ingest(args, name, cfg, spark, tables) -> None:
    from shoprec.stages.ingest import run_ingest
    from shoprec.tracking import job_run

    if name == "online_retail":
        inputs = [os.path.join(str(cfg.project_root), RETAIL_FILE)]
    else:
        from shoprec.ingest.generator import generate

        out = os.path.join(args.root, "generated")
        say(f"{name}: generating {args.events:,} events (not timed) ...")
        result = generate(out, users=max(1, args.events // 50), items=args.items, events=args.events, seed=42)
        inputs = [os.path.dirname(result.event_files[0])]
        cfg = load_config(
            "local",
            [*BENCH_OVERRIDES, "ingest.source=event_log", f"ingest.catalog={result.catalog_file}", *args.overrides],
            data_root=cfg.data_root,
        )
    say(f"{name}: ingesting (not timed) ...")
    with job_run(cfg, "ingest") as run:
        run_ingest(spark, cfg, tables, run, inputs)


def indexed_matrix(cfg, tables, interactions, split):
    """Confidence of the history, with integer ids, persisted; plus the id maps and the truth."""
    from shoprec.evaluation.truth import ground_truth
    from shoprec.features.confidence import implicit_confidence

    conf = implicit_confidence(interactions, split, cfg.features).select(C.USER_ID, C.ITEM_ID, C.CONFIDENCE)
    conf = conf.persist()
    users = id_maps.user_map(tables, conf.select(C.USER_ID)).persist()
    items = id_maps.item_map(tables, conf.select(C.ITEM_ID)).persist()
    ratings = ids.to_indices(conf, users, items).persist()
    n = ratings.count()
    truth = ids.to_indices(ground_truth(interactions, split, window="evaluation"), users, items)
    return ratings, n, truth.persist()


# ----------------------------------------------------------------------------- timed parts
def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - started, 2)


def spark_part(args, spark, ratings, blocks: int) -> dict:
    params = AlsParams(args.rank, args.reg_param, args.alpha, args.iterations)
    fit = fit_als(ratings, params, blocks, seed=42)
    return {"blocks": blocks, "fit_s": round(fit.seconds, 2), "model": fit.model}


def topn_parts(args, model) -> dict:
    uf, itf = user_factors(model).persist(), item_factors(model).persist()
    uf.count(), itf.count()
    ours = top_n_for_users(uf, itf, args.n)
    theirs = model.recommendForAllUsers(args.n)
    # Each twice: the first run of ours also starts Spark's Python workers; the second is
    # the steady state a pipeline sees (both numbers are reported).
    _, ours_cold_s = timed(lambda: ours.write.format("noop").mode("overwrite").save())
    _, theirs_cold_s = timed(lambda: theirs.write.format("noop").mode("overwrite").save())
    _, ours_s = timed(lambda: ours.write.format("noop").mode("overwrite").save())
    _, theirs_s = timed(lambda: theirs.write.format("noop").mode("overwrite").save())
    # Same lists? (compare as sets per user: float ties may order differently)
    ours_sets = ours.groupBy(C.USER_IDX).agg(F.array_sort(F.collect_list(C.ITEM_IDX)).alias("a"))
    theirs_sets = theirs.select(C.USER_IDX, F.array_sort(F.col("recommendations.item_idx")).alias("b"))
    agree = (
        ours_sets.join(theirs_sets, on=C.USER_IDX, how="inner")
        .agg(F.avg((F.col("a") == F.col("b")).cast("double")).alias("agree"), F.count("*").alias("users"))
        .first()
    )
    return {
        "ours": ours,
        "ours_s": ours_s,
        "theirs_s": theirs_s,
        "ours_cold_s": ours_cold_s,
        "theirs_cold_s": theirs_cold_s,
        "lists_identical_share": round(agree["agree"], 4),
        "users": agree["users"],
        "_uf": uf,
        "_itf": itf,
    }


def implicit_part(args, spark, ratings, n_users: int, n_items: int) -> dict:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    pdf = ratings.select(C.USER_IDX, C.ITEM_IDX, C.CONFIDENCE).toPandas()  # bench only: the outside reference
    matrix = sp.csr_matrix(
        (pdf[C.CONFIDENCE].to_numpy(np.float32), (pdf[C.USER_IDX].to_numpy(), pdf[C.ITEM_IDX].to_numpy())),
        shape=(n_users, n_items),
    )
    with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, not BLAS's
        model = AlternatingLeastSquares(
            factors=args.rank,
            regularization=args.reg_param,
            alpha=args.alpha,
            iterations=args.iterations,
            calculate_training_loss=False,
            random_state=42,
        )
        _, fit_s = timed(lambda: model.fit(matrix, show_progress=False))
        users = np.arange(n_users)
        (top, _), rec_s = timed(
            lambda: model.recommend(users, matrix[users], N=args.n, filter_already_liked_items=False)
        )
    import pandas as pd

    keep = (top >= 0).ravel()
    pdf = pd.DataFrame(
        {
            C.USER_IDX: np.repeat(users, top.shape[1]).astype(np.int32)[keep],
            C.ITEM_IDX: top.astype(np.int32).ravel()[keep],
            C.RANK: np.tile(np.arange(1, top.shape[1] + 1, dtype=np.int32), n_users)[keep],
        }
    )
    recs = spark.createDataFrame(pdf)
    return {"fit_s": fit_s, "recommend_s": rec_s, "recs": recs}


def quality(recs, truth, users_with_factors) -> dict:
    """NDCG@10 / Recall@10 over warm users of the window (truth users who have factors)."""
    from shoprec.evaluation.metrics import mean_ranking_metrics

    warm_truth = truth.join(users_with_factors.select(C.USER_IDX), on=C.USER_IDX, how="inner")
    rename = {C.USER_IDX: C.USER_ID, C.ITEM_IDX: C.ITEM_ID}
    m = mean_ranking_metrics(_renamed(recs, rename), _renamed(warm_truth, rename), ks=(10,))
    return {
        "ndcg_at_10": round(m["ndcg_at_10"], 4),
        "recall_at_10": round(m["recall_at_10"], 4),
        "users": int(m["n_users"]),
    }


def _renamed(df, mapping):
    for old, new in mapping.items():
        df = df.withColumnRenamed(old, new)
    return df


def run_dataset(args, name: str, data_root: str | None, default_blocks: bool) -> dict:
    say(f"{name}: preparing ...")
    cfg, spark, tables, interactions, split = prepare(args, name, data_root)
    ratings, n_ratings, truth = indexed_matrix(cfg, tables, interactions, split)
    n_users = ratings.agg(F.max(C.USER_IDX)).first()[0] + 1
    n_items = ratings.agg(F.max(C.ITEM_IDX)).first()[0] + 1
    blocks = spark.sparkContext.defaultParallelism
    out = {
        "data_root": cfg.data_root,
        "as_of": split.as_of.isoformat(),
        "ratings": n_ratings,
        "users": ratings.select(C.USER_IDX).distinct().count(),
        "items": ratings.select(C.ITEM_IDX).distinct().count(),
        "params": {"rank": args.rank, "iterations": args.iterations, "reg_param": args.reg_param, "alpha": args.alpha},
    }

    say(f"{name}: Spark ALS fit, {blocks} blocks ...")
    ours_fit = spark_part(args, spark, ratings, blocks)
    out["spark_fit_s"] = ours_fit["fit_s"]
    out["spark_blocks"] = blocks
    if default_blocks:
        say(f"{name}: Spark ALS fit, MLlib default 10 blocks ...")
        out["spark_fit_default_blocks_s"] = spark_part(args, spark, ratings, 10)["fit_s"]

    say(f"{name}: top-{args.n} for all users: blocked vs recommendForAllUsers ...")
    top = topn_parts(args, ours_fit["model"])
    out.update(
        {
            "topn_blocked_s": top["ours_s"],
            "recommend_for_all_users_s": top["theirs_s"],
            "topn_blocked_first_run_s": top["ours_cold_s"],
            "recommend_for_all_users_first_run_s": top["theirs_cold_s"],
            "topn_speedup": round(top["theirs_s"] / max(top["ours_s"], 1e-9), 2),
            "lists_identical_share": top["lists_identical_share"],
        }
    )
    out["spark_quality"] = quality(top["ours"], truth, top["_uf"])

    say(f"{name}: implicit ...")
    imp = implicit_part(args, spark, ratings, n_users, n_items)
    out.update(
        {
            "implicit_fit_s": imp["fit_s"],
            "implicit_recommend_s": imp["recommend_s"],
            "fit_ratio_spark_vs_implicit": round(out["spark_fit_s"] / max(imp["fit_s"], 1e-9), 2),
        }
    )
    if "spark_fit_default_blocks_s" in out:
        out["fit_ratio_default_blocks_vs_implicit"] = round(
            out["spark_fit_default_blocks_s"] / max(imp["fit_s"], 1e-9), 2
        )
    out["implicit_quality"] = quality(imp["recs"], truth, top["_uf"])
    ratings.unpersist()
    return out


def print_table(report: dict) -> None:
    for name in ("online_retail", "event_log"):
        r = report.get(name)
        if not r:
            continue
        print(
            f"\n{name}: {r['ratings']:,} (user, item) pairs, {r['users']:,} users x {r['items']:,} items, "
            f"as_of {r['as_of']}, rank {r['params']['rank']}, {r['params']['iterations']} iterations"
        )
        print(f"  {'':<34}{'fit s':>9}{'top-10 s':>10}{'NDCG@10':>9}{'Recall@10':>10}")
        sq, iq = r["spark_quality"], r["implicit_quality"]
        print(
            f"  {'Spark ALS + blocked top-N (ours)':<34}{r['spark_fit_s']:>9.1f}{r['topn_blocked_s']:>10.1f}"
            f"{sq['ndcg_at_10']:>9.4f}{sq['recall_at_10']:>10.4f}"
        )
        print(
            f"  {'Spark ALS + recommendForAllUsers':<34}{r['spark_fit_s']:>9.1f}"
            f"{r['recommend_for_all_users_s']:>10.1f}{sq['ndcg_at_10']:>9.4f}{sq['recall_at_10']:>10.4f}"
        )
        print(
            f"  {'implicit (single node)':<34}{r['implicit_fit_s']:>9.1f}{r['implicit_recommend_s']:>10.1f}"
            f"{iq['ndcg_at_10']:>9.4f}{iq['recall_at_10']:>10.4f}"
        )
        if "spark_fit_default_blocks_s" in r:
            print(
                f"  Spark fit with MLlib's default 10 blocks: {r['spark_fit_default_blocks_s']:.1f} s "
                f"({r['fit_ratio_default_blocks_vs_implicit']}x implicit)"
            )
        print(
            f"  top-10 first runs (ours starts the Python workers): blocked {r['topn_blocked_first_run_s']:.1f} s, "
            f"recommendForAllUsers {r['recommend_for_all_users_first_run_s']:.1f} s"
        )
        print(
            f"  blocked top-N vs recommendForAllUsers (second runs): {r['topn_speedup']}x faster "
            f"(identical lists for {r['lists_identical_share']:.1%} of users)"
        )
        print(
            f"  Spark fit ({r['spark_blocks']} blocks) vs implicit: {r['fit_ratio_spark_vs_implicit']}x "
            f"(NDCG over {sq['users']:,} warm users of the window)"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    out = json_path(args, "als_topn")
    load_before = os.getloadavg()
    report: dict = {"when": now(), "smoke": args.smoke}
    if not args.skip_retail:
        report["online_retail"] = run_dataset(
            args, "online_retail", args.retail_root, args.mllib_default_blocks in ("retail", "all")
        )
    if not args.skip_events:
        report["event_log"] = run_dataset(args, "event_log", args.events_root, args.mllib_default_blocks == "all")
    from pyspark.sql import SparkSession

    report["machine"] = machine_info(SparkSession.getActiveSession(), load_before)
    print_table(report)
    print(f"\nload average: before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    write_json(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
