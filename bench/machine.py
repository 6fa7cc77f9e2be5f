"""How fast is this machine today? Fixed units of work whose code never changes.

    python bench/machine.py            # about a minute
    python bench/machine.py --smoke    # seconds: checks the bench runs

Stage times moved 1.7-2.9x between days with the same code (docs/BENCHMARKS.md), so a stage
time means little without the speed of the machine that day. This bench measures that speed
on the kinds of work shoprec's stages are made of: the Python interpreter, numpy arithmetic,
a fresh interpreter importing TensorFlow (what each new Python worker that scores the hybrid
pays), starting Spark, a Spark query on tiny data (the floor under every Spark action), and an
Arrow UDF on tiny data (the floor under every Python UDF). CI prints it before the tests, so a
slow CI run can be told apart from slow code. The ratios compare the floors measured in the
same run: how much a Python UDF adds to a query, how much the first UDF call (worker start)
adds to the next.

Prints a table and writes JSON (default bench/results/machine.json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from _common import (
    SMOKE_SPARK,
    SMOKE_WORK,
    add_output_args,
    json_path,
    machine_info,
    now,
    print_rows,
    say,
    smoke_defaults,
    timed,
    write_json,
)

SMOKE = {"loop": 1_000_000, "matrix": 300, "reps": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loop", type=int, default=10_000_000, help="iterations of the pure-Python loop")
    parser.add_argument("--matrix", type=int, default=2000, help="side of the square float64 matrices multiplied")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each measure (the best or median is kept)")
    add_output_args(parser)
    return smoke_defaults(parser, parser.parse_args(argv), **SMOKE)


def _add_up(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def python_loop(n: int) -> float:
    """Seconds for ``n`` additions in a plain Python loop."""
    return timed(lambda: _add_up(n))[0]


def matmul_gflops(side: int) -> float:
    """GFLOP/s of one ``side`` x ``side`` float64 matrix product."""
    import numpy as np

    a = np.random.default_rng(0).random((side, side))
    return 2 * side**3 / timed(lambda: a @ a)[0] / 1e9


def tensorflow_import() -> float:
    """Seconds for a fresh interpreter to import TensorFlow (and exit)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-c", "import tensorflow"]
    return timed(lambda: subprocess.run(cmd, env=env, check=True, capture_output=True))[0]


def _identity(batches):
    yield from batches


def spark_floors(reps: int, load_before: tuple[float, ...]) -> tuple[dict[str, float], dict]:
    """Session start, then the median of ``reps`` tiny queries with and without an Arrow UDF;
    and the machine and Spark settings they ran on."""
    from shoprec.config import load_config
    from shoprec.spark import get_spark

    # The smoke Spark settings at every size: 2 cores, few partitions, no UI.
    cfg = load_config("local", SMOKE_SPARK, data_root=os.path.join(SMOKE_WORK, "machine"))
    started, spark = timed(lambda: get_spark(cfg.spark))
    spark.sparkContext.setLogLevel("ERROR")
    tiny = spark.range(1000).repartition(2)

    def seconds(action) -> float:
        return timed(action)[0]

    def arrow() -> None:
        tiny.mapInArrow(_identity, tiny.schema).count()

    first_arrow = seconds(arrow)  # starts the Python workers
    query = statistics.median(seconds(tiny.count) for _ in range(reps))
    udf = statistics.median(seconds(arrow) for _ in range(reps))
    info = machine_info(spark, load_before)
    spark.stop()
    return {"spark_start_s": started, "query_s": query, "arrow_udf_s": udf, "first_arrow_udf_s": first_arrow}, info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    say(f"python loop of {args.loop:,}, {args.matrix}x{args.matrix} matmul, {args.reps} reps")
    loop_s = min(python_loop(args.loop) for _ in range(args.reps))
    gflops = max(matmul_gflops(args.matrix) for _ in range(args.reps))
    tf_s = min(tensorflow_import() for _ in range(min(args.reps, 2)))
    spark, info = spark_floors(args.reps, load_before)
    rows = [
        (f"python loop, {args.loop:,} additions", f"{loop_s:.3f} s"),
        (f"numpy matmul {args.matrix}x{args.matrix} float64", f"{gflops:.1f} GFLOP/s"),
        ("import tensorflow, fresh interpreter", f"{tf_s:.2f} s"),
        ("Spark session start", f"{spark['spark_start_s']:.2f} s"),
        ("Spark query, 1,000 rows in 2 partitions (median)", f"{spark['query_s']:.3f} s"),
        ("same with an Arrow UDF (median)", f"{spark['arrow_udf_s']:.3f} s"),
        ("first Arrow UDF call (starts the Python workers)", f"{spark['first_arrow_udf_s']:.2f} s"),
        ("Arrow UDF query / plain query", f"{spark['arrow_udf_s'] / spark['query_s']:.2f}x"),
        ("first Arrow UDF call / later ones", f"{spark['first_arrow_udf_s'] / spark['arrow_udf_s']:.2f}x"),
        ("load average before", " ".join(f"{v:.2f}" for v in load_before)),
    ]
    print_rows(rows)
    report = {
        "bench": "machine",
        "when": now(),
        "smoke": args.smoke,
        "python_loop": {"iterations": args.loop, "seconds": loop_s},
        "matmul": {"side": args.matrix, "gflops": gflops},
        "tensorflow_import_s": tf_s,
        "spark": spark,
        "ratios": {
            "arrow_udf_over_query": spark["arrow_udf_s"] / spark["query_s"],
            "first_arrow_udf_over_later": spark["first_arrow_udf_s"] / spark["arrow_udf_s"],
        },
        "machine": info,
    }
    write_json(report, json_path(args, "machine"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
