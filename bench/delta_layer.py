"""Benchmark of both Delta backends against plain Parquet, side by side in one run.

    python bench/delta_layer.py                      # 10M rows, both backends
    python bench/delta_layer.py --rows 2000000 --repeat 3
    python bench/delta_layer.py --backends local     # the delta-rs backend only
    python bench/delta_layer.py --smoke              # 20k rows, results to a temp file (the tests)

The same data is written and read through ``Tables`` on each backend (``spark``: Spark's
own Delta; ``local``: delta-rs log + Spark Parquet I/O) and through Spark's own Parquet
writer/reader, in the same session and the same run:

    1. write, unpartitioned            Tables.overwrite     vs  df.write.parquet
    2. write, partitioned by date      Tables.overwrite     vs  df.write.partitionBy(...).parquet
    3. read + aggregate (full scan)    Tables.read          vs  spark.read.parquet   (both tables)
    4. append of 10% more rows         Tables.append        vs  mode("append")
    5. merge (upsert) of 1% of rows    Tables.merge         (no Parquet equivalent)
    6. time travel: count of version 0 Tables.read(version=0)
    7. validity: delta-rs (pyarrow dataset) row count == Spark's row count

Then the per-operation latency on a tiny table (--small-rows, 200 by default), where the
fixed cost of each backend dominates (what a stage test or a small gold table pays): the
median of --small-repeat rounds of overwrite, append, read + count, merge and partition
replace, each backend on its own fresh tables, and the ratio spark / local.

The data is generated in Spark and written once as plain Parquet under --root/source
before anything is timed, so generation is never inside a timed section; an untimed
warm-up pass of the whole sequence on 20k rows runs first so that the first timed
operation does not pay for a cold JVM. Every run starts from empty tables (with
--repeat N the whole sequence runs N times; the table shows the median, the JSON every
run). Prints a table and writes the numbers as JSON (default
bench/results/delta_layer.json). --root is deleted at the start and, unless --keep,
at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import deltalake
import psutil
import pyspark
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec.config import load_config
from shoprec.spark import get_spark
from shoprec.tables import Tables, open_tables

DEFAULT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "delta_layer.json")

FLAT = "bench.events"  # unpartitioned Delta table
BY_DATE = "bench.events_by_date"  # Delta table partitioned by event_date
DAYS = 30
COUNTRIES = (
    "United Kingdom",
    "Germany",
    "France",
    "Ireland",
    "Netherlands",
    "Spain",
    "Belgium",
    "United States",
    "Switzerland",
    "Portugal",
    "Italy",
    "Australia",
    "Norway",
    "Sweden",
    "Denmark",
)
# Session settings for a quiet benchmark; anything else comes from conf/ (local env).
BENCH_OVERRIDES = [
    "spark.launch_settings.spark.ui.enabled=false",
    "spark.launch_settings.spark.ui.showConsoleProgress=false",
    "spark.launch_settings.spark.driver.memory=6g",
]
BACKENDS = ("spark", "local")
SMOKE_ROWS = 20_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument(
        "--root",
        default="/tmp/shoprec-bench-delta",
        help="scratch folder for the source data and all tables (deleted first)",
    )
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--repeat", type=int, default=1, help="run the whole sequence this many times")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override, as shoprec --set (e.g. spark.settings.spark.sql.shuffle.partitions=4)",
    )
    parser.add_argument("--keep", action="store_true", help="leave --root in place afterwards")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="Delta backends to measure (default: both)",
    )
    parser.add_argument("--small-rows", type=int, default=200, help="rows of the tiny-table latency section")
    parser.add_argument("--small-repeat", type=int, default=5, help="rounds of the tiny-table section (median)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny run (20k rows) that checks the bench works; JSON to a temp folder unless --json",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows = SMOKE_ROWS
        args.small_repeat = 1
        if args.json == DEFAULT_JSON:
            args.json = os.path.join(tempfile.mkdtemp(prefix="shoprec-bench-"), "delta_layer.json")
    if args.rows < 1000:
        parser.error("--rows must be at least 1000 (the merge uses 1% of them)")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


# ----------------------------------------------------------------------------- data
def _h(col: str, salt: int, modulo: int) -> F.Column:
    """A well-mixed value in ``[0, modulo)`` derived from ``col`` (deterministic)."""
    return F.pmod(F.xxhash64(F.col(col), F.lit(salt)), F.lit(modulo))


def synthetic(spark: SparkSession, start: int, end: int, users: int, items: int) -> DataFrame:
    """Rows ``start <= id < end`` with a handful of realistic columns."""
    day0 = datetime(2024, 1, 1, tzinfo=UTC)
    countries = F.array(*[F.lit(c) for c in COUNTRIES])
    return (
        spark.range(start, end)
        .select(
            F.col("id"),
            F.format_string("u%08d", _h("id", 1, users)).alias("user_id"),
            F.format_string("i%06d", _h("id", 2, items)).alias("item_id"),
            F.timestamp_seconds(F.lit(int(day0.timestamp())) + _h("id", 3, DAYS * 86400)).alias("event_time"),
            F.round(_h("id", 4, 10_000) / 100.0 + 0.5, 2).alias("price"),
            (F.lit(1) + _h("id", 5, 5)).cast("int").alias("quantity"),
            F.element_at(countries, (_h("id", 6, len(COUNTRIES)) + 1).cast("int")).alias("country"),
        )
        .withColumn("event_date", F.to_date("event_time"))
    )


def materialise(spark: SparkSession, df: DataFrame, path: str) -> DataFrame:
    df.write.mode("overwrite").parquet(path)
    return spark.read.parquet(path)


# ----------------------------------------------------------------------------- timing
def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def parquet_files(path: str) -> int:
    return sum(1 for _, _, files in os.walk(path) for f in files if f.endswith(".parquet"))


def aggregate(df: DataFrame) -> dict:
    """count and sums by country: a full scan of the table, a 15-row result."""
    rows = (
        df.groupBy("country")
        .agg(F.count("*").alias("n"), F.sum("price").alias("price"), F.sum("quantity").alias("quantity"))
        .collect()
    )  # small: one row per country
    return {r["country"]: (r["n"], r["price"], r["quantity"]) for r in rows}


def same_aggregates(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(
        a[k][0] == b[k][0] and a[k][2] == b[k][2] and abs(a[k][1] - b[k][1]) <= 1e-6 * max(1.0, abs(a[k][1])) for k in a
    )


def make_data(spark: SparkSession, folder: str, rows: int) -> dict:
    """The base rows, 10% more to append and a 1% upsert source, each written once as Parquet."""
    n_extra = rows // 10
    n_updates = rows // 200  # 0.5% of the table: existing keys spread over every file
    n_inserts = rows // 200  # 0.5%: keys not in the table yet
    users, items = max(1, rows // 50), 20_000
    src = materialise(spark, synthetic(spark, 0, rows, users, items), os.path.join(folder, "base"))
    extra = materialise(spark, synthetic(spark, rows, rows + n_extra, users, items), os.path.join(folder, "append"))
    fresh_from = rows + n_extra
    updates = (
        synthetic(spark, 0, rows, users, items)
        .filter((F.col("id") % 200 == 7) & (F.col("id") < 200 * n_updates))  # exactly n_updates keys
        .withColumn("price", F.col("price") + F.lit(1.0))
        .withColumn("quantity", F.col("quantity") + F.lit(100))  # marks updated rows (normally 1..5)
    )
    inserts = synthetic(spark, fresh_from, fresh_from + n_inserts, users, items)
    upsert = materialise(spark, updates.unionByName(inserts), os.path.join(folder, "upsert"))
    counts = {
        "rows": rows,
        "extra": n_extra,
        "updates": n_updates,
        "inserts": n_inserts,
        "upsert": n_updates + n_inserts,
        "table": rows + n_extra,
        "after": rows + n_extra + n_inserts,
    }
    return {"src": src, "extra": extra, "upsert": upsert, "counts": counts}


def one_run(spark: SparkSession, backends: dict[str, Tables], data: dict, root: str) -> dict:
    """The whole sequence once on plain Parquet and on each backend, every one on empty tables."""
    out: dict = {"parquet": parquet_run(spark, data, root), "delta": {}, "checks": {}, "sizes": {}}
    out["sizes"].update(out["parquet"].pop("sizes"))
    for name, tables in backends.items():
        seconds, checks, sizes = delta_run(spark, tables, data)
        out["delta"][name], out["checks"][name] = seconds, checks
        out["sizes"].update({f"{name}_{k}": v for k, v in sizes.items()})
        assert same_aggregates(out["parquet"]["_agg"], checks.pop("_agg")), f"{name}: Delta and Parquet reads disagree"
        checks["aggregates_match"] = True
    out["parquet"].pop("_agg")
    return out


def parquet_run(spark: SparkSession, data: dict, root: str) -> dict:
    """The baseline: Spark's own Parquet writer and reader on the same data."""
    src, extra = data["src"], data["extra"]
    pq_flat = os.path.join(root, "parquet", "events")
    pq_by_date = os.path.join(root, "parquet", "events_by_date")
    for path in (pq_flat, pq_by_date):
        shutil.rmtree(path, ignore_errors=True)
    p: dict = {}
    p["write"], _ = timed(lambda: src.write.mode("overwrite").parquet(pq_flat))
    p["write_partitioned"], _ = timed(lambda: src.write.mode("overwrite").partitionBy("event_date").parquet(pq_by_date))
    p["sizes"] = {
        key: {"mb": round(folder_bytes(path) / 2**20, 1), "files": parquet_files(path)}
        for key, path in (("parquet_flat", pq_flat), ("parquet_partitioned", pq_by_date))
    }
    p["read_agg"], p["_agg"] = timed(lambda: aggregate(spark.read.parquet(pq_flat)))
    p["read_agg_partitioned"], agg_pp = timed(lambda: aggregate(spark.read.parquet(pq_by_date)))
    assert same_aggregates(p["_agg"], agg_pp), "flat and partitioned Parquet disagree"
    p["append"], _ = timed(lambda: extra.write.mode("append").parquet(pq_flat))
    return p


def delta_run(spark: SparkSession, tables: Tables, data: dict) -> tuple[dict, dict, dict]:
    """The sequence through ``Tables`` on one backend: seconds per operation, checks, sizes."""
    src, extra, upsert, c = data["src"], data["extra"], data["upsert"], data["counts"]
    rows, n_extra, n_updates, n_inserts = c["rows"], c["extra"], c["updates"], c["inserts"]
    for path in (tables.path(FLAT), tables.path(BY_DATE)):
        shutil.rmtree(path, ignore_errors=True)
    d: dict = {}
    checks: dict = {}

    # 1. write, unpartitioned; 2. write, partitioned by event_date
    d["write"], w = timed(lambda: tables.overwrite(src, FLAT))
    checks["write_rows_committed"] = w.rows_written
    assert w.rows_written == rows, f"Delta write committed {w.rows_written} rows, expected {rows}"
    d["write_partitioned"], w = timed(lambda: tables.overwrite(src, BY_DATE, partition_by=["event_date"]))
    assert w.rows_written == rows, f"partitioned Delta write committed {w.rows_written} rows, expected {rows}"
    sizes = {
        key: {"mb": round(folder_bytes(tables.path(name)) / 2**20, 1), "files": tables.file_count(name)}
        for key, name in (("flat", FLAT), ("partitioned", BY_DATE))
    }

    # 3. full read + aggregate (both layouts)
    d["read_agg"], checks["_agg"] = timed(lambda: aggregate(tables.read(FLAT)))
    d["read_agg_partitioned"], agg_dp = timed(lambda: aggregate(tables.read(BY_DATE)))
    assert same_aggregates(checks["_agg"], agg_dp) and sum(v[0] for v in agg_dp.values()) == rows

    # 4. append 10% more rows
    d["append"], _ = timed(lambda: tables.append(extra, FLAT))

    # 5. merge (upsert) 1%: half updates of existing keys, half new keys
    before_merge = rows + n_extra
    d["merge"], m = timed(lambda: tables.merge(upsert, FLAT, keys=["id"]))
    checks["merge_inserted"], checks["merge_updated"] = m.inserted, m.updated
    after = (
        tables.read(FLAT)
        .agg(F.count("*").alias("n"), F.count(F.when(F.col("quantity") > 100, True)).alias("updated"))
        .collect()[0]
    )  # small: one row
    checks["rows_after_merge"], checks["updated_rows_seen"] = after["n"], after["updated"]
    assert m.inserted == n_inserts and m.updated == n_updates, f"merge reported {m}"
    assert after["n"] == before_merge + n_inserts, f"{after['n']} rows after merge, expected {before_merge + n_inserts}"
    assert after["updated"] == n_updates, f"{after['updated']} updated rows visible, expected {n_updates}"

    # 6. time travel: version 0
    d["time_travel_v0"], n_v0 = timed(lambda: tables.read(FLAT, version=0).count())
    assert n_v0 == rows, f"version 0 has {n_v0} rows, expected {rows}"
    checks["versions"] = tables.version(FLAT)

    # 7. validity: delta-rs / pyarrow sees exactly what Spark sees, whichever backend wrote
    counts = {}
    for name in (FLAT, BY_DATE):
        spark_n = tables.read(name).count()
        secs, arrow_n = timed(
            lambda name=name: deltalake.DeltaTable(tables.path(name)).to_pyarrow_dataset().count_rows()
        )
        counts[name] = {"spark_rows": spark_n, "pyarrow_rows": arrow_n, "pyarrow_count_s": round(secs, 3)}
        assert arrow_n == spark_n, f"{name}: pyarrow counts {arrow_n} rows, Spark {spark_n}"
    d["pyarrow_count"] = counts[FLAT]["pyarrow_count_s"]
    checks["pyarrow_vs_spark"] = counts
    checks["rows_before_merge"] = before_merge
    return d, checks, sizes


# ----------------------------------------------------------------------------- report
# (key, label, rows the operation handles: "rows" | "extra" | "table" | "upsert")
OPERATIONS = (
    ("write", "1. write (unpartitioned)", "rows"),
    ("write_partitioned", "2. write (partitioned by date)", "rows"),
    ("read_agg", "3. read + aggregate", "rows"),
    ("read_agg_partitioned", "3b. read + aggregate (partitioned)", "rows"),
    ("append", "4. append 10%", "extra"),
    ("merge", "5. merge 1% (rows/s of table)", "table"),
    ("time_travel_v0", "6. time travel v0 count", "rows"),
    ("pyarrow_count", "7. delta-rs/pyarrow count", "after"),
)


def summarise(runs: list[dict], counts: dict, backends: list[str]) -> list[dict]:
    """Median seconds per operation: Parquet, each backend, and each backend's ratio to Parquet."""
    ops = []
    for key, label, basis in OPERATIONS:
        n = counts[basis]
        p_all = [r["parquet"][key] for r in runs if key in r["parquet"]]
        p_s = statistics.median(p_all) if p_all else None
        op: dict = {
            "operation": key,
            "label": label,
            "rows": n,
            "parquet_s": round(p_s, 3) if p_s is not None else None,
            "parquet_runs_s": [round(x, 3) for x in p_all],
        }
        for b in backends:
            b_all = [r["delta"][b][key] for r in runs]
            b_s = statistics.median(b_all)
            op[f"{b}_s"] = round(b_s, 3)
            op[f"{b}_vs_parquet"] = round(b_s / p_s, 2) if p_s else None
            op[f"{b}_rows_per_s"] = round(n / b_s) if b_s > 0 else None
            op[f"{b}_runs_s"] = [round(x, 3) for x in b_all]
        if set(BACKENDS) <= set(backends):
            op["spark_vs_local"] = round(op["spark_s"] / op["local_s"], 2) if op["local_s"] else None
        ops.append(op)
    return ops


SMALL_OPS = ("overwrite", "append", "read + count", "merge", "replace partition")


def small_table_round(spark: SparkSession, tables: Tables, rows: int, name: str) -> dict[str, float]:
    """One round of the tiny-table operations on fresh tables; seconds per operation."""
    df = spark.range(rows).select(
        F.col("id").alias("k"), (F.col("id") * 2).alias("v"), (F.col("id") % 3).cast("int").alias("p")
    )
    tables.overwrite(df, f"{name}_a")  # create first: the timed ops work on an existing table
    tables.merge(df, f"{name}_b", ["k"])
    tables.replace_partition(df.where("p = 1"), f"{name}_c", {"p": 1})
    ops = {
        "overwrite": lambda: tables.overwrite(df, f"{name}_a"),
        "append": lambda: tables.append(df, f"{name}_a"),
        "read + count": lambda: tables.read(f"{name}_a").count(),
        "merge": lambda: tables.merge(df, f"{name}_b", ["k"]),
        "replace partition": lambda: tables.replace_partition(df.where("p = 1"), f"{name}_c", {"p": 1}),
    }
    return {op: timed(fn)[0] for op, fn in ops.items()}


def small_table_latency(
    spark: SparkSession, backends: dict[str, Tables], rows: int, repeat: int, warm_up: bool = True
) -> dict:
    """Median seconds per tiny-table operation and backend (after an untimed round unless
    ``warm_up`` is off: the smoke run), and spark / local."""
    seconds: dict[str, dict[str, list[float]]] = {b: {op: [] for op in SMALL_OPS} for b in backends}
    for round_ in range(0 if warm_up else 1, repeat + 1):
        for backend, tables in backends.items():
            times = small_table_round(spark, tables, rows, f"small.r{round_}_{backend}")
            if round_:  # round 0 warms up
                for op, t in times.items():
                    seconds[backend][op].append(t)
    medians = {b: {op: round(statistics.median(ts), 3) for op, ts in ops.items()} for b, ops in seconds.items()}
    ratio = {}
    if {"spark", "local"} <= set(medians):
        ratio = {op: round(medians["spark"][op] / medians["local"][op], 2) for op in SMALL_OPS}
    return {"rows": rows, "repeat": repeat, "warm_up": warm_up, "median_s": medians, "spark_vs_local": ratio}


def print_small_table(small: dict) -> None:
    backends = list(small["median_s"])
    header = (f"tiny table ({small['rows']} rows)", *(f"{b} s" for b in backends))
    header += ("spark/local",) if small["spark_vs_local"] else ()
    lines = [header]
    for op in SMALL_OPS:
        row = (op, *(f"{small['median_s'][b][op]:.3f}" for b in backends))
        row += (f"{small['spark_vs_local'][op]:.2f}x",) if small["spark_vs_local"] else ()
        lines.append(row)
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(header))]
    print()
    for j, row in enumerate(lines):
        print("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    after = "after an untimed one" if small["warm_up"] else "without a warm-up round (smoke)"
    print(f"median of {small['repeat']} rounds {after}, each backend on its own fresh tables")


def print_table(report: dict) -> None:
    backends = report["args"]["backends"]
    header = (
        "operation",
        "parquet s",
        *(f"{b} s" for b in backends),
        *(f"{b}/parquet" for b in backends),
        *(f"{b} rows/s" for b in backends),
    )
    lines = [header]

    def num(v, fmt):
        return "-" if v is None else fmt.format(v)

    for op in report["operations"]:
        lines.append(
            (
                op["label"],
                num(op["parquet_s"], "{:.2f}"),
                *(num(op[f"{b}_s"], "{:.2f}") for b in backends),
                *(num(op[f"{b}_vs_parquet"], "{:.2f}x") for b in backends),
                *(num(op[f"{b}_rows_per_s"], "{:,}") for b in backends),
            )
        )
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    for j, row in enumerate(lines):
        print("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    c = report["counts"]
    print()
    print(
        f"rows {c['rows']:,}; append {c['extra']:,}; merge source {c['upsert']:,} "
        f"({c['updates']:,} updates + {c['inserts']:,} inserts) into {c['table']:,}; "
        f"runs {report['args']['repeat']}; "
        "backends: spark = Spark's own Delta (delta-spark), local = delta-rs log + Spark Parquet I/O"
    )
    sizes = report["runs"][-1]["sizes"]
    print("on disk after write: " + "; ".join(f"{k} {v['mb']} MB in {v['files']} files" for k, v in sizes.items()))
    m = report["machine"]
    print(f"load average (1 min) before {m['load_average_before'][0]:.2f}, after {m['load_average_after'][0]:.2f}")


def _delta_spark_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("delta-spark")
    except Exception:  # not installed: the spark backend was not measured
        return None


def java_version() -> str | None:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()
    root = os.path.abspath(args.root)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    cfg = load_config("local", [*BENCH_OVERRIDES, *args.overrides], data_root=os.path.join(root, "lakehouse"))
    spark = get_spark(cfg.spark)
    backends = {b: open_tables(spark, cfg.data_root, b) for b in args.backends}

    setup_started = time.perf_counter()
    data = make_data(spark, os.path.join(root, "source"), args.rows)
    # Untimed warm-up: the whole sequence once on a small data set (JIT, codegen, delta-rs,
    # the Parquet writers) and one scan of the real source (page cache), so the first
    # timed operation does not pay for the session being cold.
    warm = make_data(spark, os.path.join(root, "warmup", "source"), min(args.rows, 20_000))
    warm_tables = {b: open_tables(spark, os.path.join(root, "warmup", "lakehouse"), b) for b in args.backends}
    one_run(spark, warm_tables, warm, os.path.join(root, "warmup"))
    shutil.rmtree(os.path.join(root, "warmup"), ignore_errors=True)
    data["src"].write.format("noop").mode("overwrite").save()
    setup_s = time.perf_counter() - setup_started

    runs = []
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
        runs.append(one_run(spark, backends, data, root))
    print("tiny-table latency ...", file=sys.stderr, flush=True)
    small = small_table_latency(spark, backends, args.small_rows, args.small_repeat, warm_up=not args.smoke)

    counts = data["counts"]
    load_after = os.getloadavg()
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "spark": pyspark.__version__,
            "deltalake": deltalake.__version__,
            "java": java_version(),
            "delta_spark": _delta_spark_version(),
            "spark_master": spark.sparkContext.master,
            "driver_memory": spark.sparkContext.getConf().get("spark.driver.memory", None),
            "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
            "load_average_before": list(load_before),
            "load_average_after": list(load_after),
        },
        "args": {
            "rows": args.rows,
            "repeat": args.repeat,
            "root": root,
            "overrides": list(args.overrides),
            "backends": list(args.backends),
            "smoke": args.smoke,
        },
        "counts": counts,
        "setup_s": round(setup_s, 2),
        "operations": summarise(runs, counts, list(args.backends)),
        "small_table": small,
        "runs": [
            {
                "delta_s": {b: {k: round(v, 3) for k, v in ops.items()} for b, ops in r["delta"].items()},
                "parquet_s": {k: round(v, 3) for k, v in r["parquet"].items()},
                "checks": r["checks"],
                "sizes": r["sizes"],
            }
            for r in runs
        ],
    }
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print_table(report)
    print_small_table(report["small_table"])
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
