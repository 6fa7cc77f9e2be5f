"""What every benchmark shares: the machine and the load it ran under, where its JSON goes,
and the tiny data a ``--smoke`` run uses (seconds, so a test can run every bench)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psutil

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# Smoke runs write here unless told otherwise: bench/results holds the full-size numbers.
SMOKE_RESULTS = os.path.join(tempfile.gettempdir(), "shoprec-bench-smoke", "results")
SMOKE_WORK = os.path.join(tempfile.gettempdir(), "shoprec-bench-smoke")

# The tiny event log of a smoke run (the size the spark-submit chain test uses) and its cutoff.
SMOKE_EVENTS = {"users": 400, "items": 150, "events": 30_000, "seed": 3}
SMOKE_AS_OF = "2023-11-01"
# Spark for a smoke run: two cores, a small heap, few partitions, no UI (a test box runs several).
SMOKE_SPARK = [
    "spark.master=local[2]",
    "spark.settings.spark.sql.shuffle.partitions=2",
    "spark.launch_settings.spark.driver.memory=2g",
    "spark.launch_settings.spark.ui.enabled=false",
]
# Models small enough for seconds per stage: one ALS trial, a small hybrid, no weight searches.
# The tests' small pipelines (notebooks, the cluster test: tests/integration/test_jobs.SMALL)
# use these too; the searches are tested on their own (test_recommend, test_time_profiles) and
# run in full in the main-job test.
SMOKE_MODELS = [
    "als.rank=8",
    "als.max_iter=4",
    "als.search.rank=[8]",
    "als.search.reg_param=[0.1]",
    "als.search.alpha=[10.0]",
    "als.search.max_trials=1",
    "hybrid.epochs=2",
    "hybrid.batch_size=256",
    "hybrid.model.embedding_dim=8",
    "hybrid.model.mlp_layers=[16]",
    "recommend.fusion.tuning_users=500",
    # Fixed weights: no search on the validation window (two thirds of recommend's time at this size).
    "recommend.fusion.weight=0.5",
    "recommend.rerank.season_weight=0.05",
    "recommend.rerank.time_weight=0.03",
]
SMOKE_PIPELINE = [*SMOKE_SPARK, *SMOKE_MODELS]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds ``fn()`` took, what it returned)."""
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def machine_info(spark=None, load_before: tuple[float, ...] | None = None) -> dict:
    """CPU, memory, versions, Spark settings and the load average (a busy box skews every ratio)."""
    import pyspark

    info = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "spark": pyspark.__version__,
        "load_average_after": list(os.getloadavg()),
    }
    if load_before is not None:
        info["load_average_before"] = list(load_before)
    if spark is not None:
        conf = spark.sparkContext.getConf()
        info.update(
            {
                "spark_master": spark.sparkContext.master,
                "driver_memory": conf.get("spark.driver.memory", None),
                "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
            }
        )
    return info


# ----------------------------------------------------------------------------- output
def add_output_args(parser: argparse.ArgumentParser) -> None:
    """``--smoke``, ``--results-dir`` and ``--json``: every bench takes the same three."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny generated data, seconds: checks the bench runs (numbers mean nothing); "
        f"JSON goes to {SMOKE_RESULTS} unless --results-dir says otherwise",
    )
    parser.add_argument(
        "--results-dir", default=None, help=f"folder for the JSON (default {RESULTS}; with --smoke {SMOKE_RESULTS})"
    )
    parser.add_argument("--json", default=None, help="the JSON file itself (overrides --results-dir)")


def smoke_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace, **values) -> argparse.Namespace:
    """With ``--smoke``, the tiny ``values`` for every option the command line left at its default."""
    if args.smoke:
        for name, value in values.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    return args


def json_path(args: argparse.Namespace, name: str) -> str:
    """Where this run's JSON goes: ``--json``, else ``<results-dir>/<name>.json``.

    A smoke run never writes into bench/results: those files are the full-size numbers
    the docs quote."""
    folder = args.results_dir or (SMOKE_RESULTS if args.smoke else RESULTS)
    path = os.path.abspath(args.json or os.path.join(folder, f"{name}.json"))
    if args.smoke and os.path.dirname(path) == RESULTS:
        raise SystemExit(f"--smoke would overwrite {path} (a full-size result): pass another --results-dir")
    return path


def write_json(report: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2, default=str)
        fh.write("\n")
    print(f"results written to {path}")


def say(text: str) -> None:
    """Progress on stderr, so stdout holds only the result table."""
    print(text, file=sys.stderr, flush=True)


def cell(v, float_format: str = "{}") -> str:
    """A table cell: "-" for None, yes / NO for booleans, thousands separators for integers."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    return float_format.format(v) if isinstance(v, float) else str(v)


def print_rows(rows: list[tuple[str, object]]) -> None:
    """A two-column table: names left, values after them."""
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


# ----------------------------------------------------------------------------- servers
def free_port() -> int:
    """A free TCP port on loopback (for a server the bench starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, log: str, timeout: float = 300.0) -> float:
    """Seconds until ``url`` answers 200 (a server's health or ping route); exits when the
    server process ends first or the timeout passes, naming its log."""
    import urllib.request

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server not ready in {timeout:.0f} s; see {log}")


# ----------------------------------------------------------------------------- tiny data
def shoprec_bin() -> str:
    """The ``shoprec`` command of the interpreter running the bench."""
    return os.path.join(os.path.dirname(sys.executable), "shoprec")


def bench_env() -> dict[str, str]:
    """The environment for shoprec subprocesses: loopback Spark, quiet TensorFlow."""
    return dict(os.environ, SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"), TF_CPP_MIN_LOG_LEVEL="2")


def generate_events(out: str, events: int, users: int, items: int, seed: int) -> str:
    """``shoprec generate`` into ``out`` unless its catalog is already there; returns ``out``."""
    if not os.path.exists(os.path.join(out, "catalog.csv")):
        say(f"generating {events:,} events (not timed) ...")
        subprocess.run(
            [
                shoprec_bin(),
                "generate",
                "--users",
                str(users),
                "--items",
                str(items),
                "--events",
                str(events),
                "--seed",
                str(seed),
                "--out",
                out,
            ],
            check=True,
            env=bench_env(),
            stdout=subprocess.DEVNULL,
        )
    return out


def event_log_settings(generated: str) -> list[str]:
    """The ``--set`` overrides that point ingest at a generator's output folder."""
    return [
        "ingest.source=event_log",
        f"ingest.inputs=[{os.path.join(generated, 'events')}]",
        f"ingest.catalog={os.path.join(generated, 'catalog.csv')}",
    ]


def as_set_args(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def smoke_lakehouse(work: str = SMOKE_WORK) -> str:
    """A data root with every stage run on the tiny event log (a registered hybrid champion
    included), built with ``shoprec pipeline`` the first time and reused after; its path.

    What bench/pipeline.py --smoke leaves in ``<work>/synthetic`` is the same lakehouse."""
    root = os.path.join(work, "synthetic")
    done = os.path.join(root, "_smoke_complete")
    if os.path.exists(done):
        return root
    generated = generate_events(os.path.join(work, f"events-{SMOKE_EVENTS['events']}"), **SMOKE_EVENTS)
    say(f"building the smoke lakehouse in {root} (shoprec pipeline, not timed) ...")
    log = os.path.join(work, "smoke-lakehouse.log")
    with open(log, "w") as fh:
        code = subprocess.run(
            [
                shoprec_bin(),
                "pipeline",
                "--data-root",
                root,
                "--as-of",
                SMOKE_AS_OF,
                *as_set_args([*SMOKE_PIPELINE, *event_log_settings(generated)]),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=bench_env(),
        ).returncode
    if code != 0:
        raise SystemExit(f"shoprec pipeline failed (exit {code}); see {log}")
    mark_smoke_lakehouse(root)
    return root


def mark_smoke_lakehouse(root: str) -> None:
    """Record that ``root`` holds a complete smoke pipeline run (so it is reused)."""
    with open(os.path.join(root, "_smoke_complete"), "w") as fh:
        fh.write(now() + "\n")
