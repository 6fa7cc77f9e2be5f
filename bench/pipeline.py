"""Wall time of every stage of ``shoprec pipeline`` and the peak memory, on Online Retail and a
synthetic event log.

    python bench/pipeline.py                                   # both datasets
    python bench/pipeline.py --datasets online-retail
    python bench/pipeline.py --datasets synthetic --events 10000000
    python bench/pipeline.py --smoke                           # 30,000 events, small models: checks it runs

Each dataset runs ``shoprec pipeline`` as users run it (a fresh process, the local
config, a fresh data root), while a sampler adds up the resident memory of that process
and all its children (the Spark JVM, Python workers, Horovod ranks) every 0.5 s. Stage
times come from the pipeline's MLflow runs (start to end of each nested stage run), so
they are the times the MLflow UI shows. The synthetic log is written with
``shoprec generate`` first (not timed) and ingested as an event log; its settings are
printed with the table (``--synthetic-set`` adds overrides, e.g. fewer ALS trials).
Writes bench/results/pipeline.json. ``--smoke`` runs the synthetic dataset only, 30,000
events with one ALS trial and a small hybrid (what bench/scoring.py and
bench/train_throughput.py --smoke then read from ``<work>/synthetic``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import threading
import time

import psutil

from _common import (
    SMOKE_AS_OF,
    SMOKE_EVENTS,
    SMOKE_PIPELINE,
    SMOKE_WORK,
    add_output_args,
    as_set_args,
    bench_env,
    event_log_settings,
    generate_events,
    json_path,
    machine_info,
    mark_smoke_lakehouse,
    now,
    say,
    shoprec_bin,
    smoke_defaults,
    write_json,
)

STAGES = ("ingest", "features", "train-als", "train-hybrid", "bundles", "recommend", "evaluate")
SYNTHETIC_AS_OF = SMOKE_AS_OF  # the generator's default year: 2023-01-01 onwards
SMOKE = {
    "datasets": "synthetic",
    "events": SMOKE_EVENTS["events"],
    "users": SMOKE_EVENTS["users"],
    "items": SMOKE_EVENTS["items"],
    "seed": SMOKE_EVENTS["seed"],
    "work": SMOKE_WORK,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="online-retail,synthetic")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1, help="generator seed of the synthetic log")
    p.add_argument("--work", default="/tmp/shoprec-bench-pipeline")
    p.add_argument("--synthetic-set", dest="synthetic_overrides", action="append", default=[])
    add_output_args(p)
    args = smoke_defaults(p, p.parse_args(argv), **SMOKE)
    if args.smoke:
        args.synthetic_overrides = [*SMOKE_PIPELINE, *args.synthetic_overrides]
    return args


class PeakMemory:
    """Peak summed RSS of a process tree, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)


def run_pipeline(root: str, args: list[str], log_path: str) -> tuple[float, int]:
    env = bench_env()
    cmd = [
        shoprec_bin(),
        "pipeline",
        "--data-root",
        root,
        *args,
    ]
    say("  " + " ".join(cmd))
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        with PeakMemory(proc.pid) as mem:
            code = proc.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"shoprec pipeline failed (exit {code}); see {log_path}")
    return wall, mem.peak


def stage_seconds(root: str) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{os.path.abspath(root)}/mlflow.db")
    experiment = client.get_experiment_by_name("shoprec")
    pipeline = client.search_runs(
        experiment.experiment_id,
        filter_string="tags.`shoprec.stage` = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    stages = client.search_runs(
        experiment.experiment_id, filter_string=f"tags.mlflow.parentRunId = '{pipeline.info.run_id}'"
    )
    out = {r.data.tags["shoprec.stage"]: (r.info.end_time - r.info.start_time) / 1000 for r in stages}
    out["pipeline (MLflow run)"] = (pipeline.info.end_time - pipeline.info.start_time) / 1000
    return out


def online_retail(args) -> dict:
    root = os.path.join(args.work, "online-retail")
    shutil.rmtree(root, ignore_errors=True)
    say("Online Retail (the shipped copy, embedded default) ...")
    wall, peak = run_pipeline(root, [], os.path.join(args.work, "online-retail.log"))
    return {
        "dataset": "Online Retail (541,909 lines)",
        "overrides": [],
        "wall_seconds": round(wall, 1),
        "peak_rss_gb": round(peak / 2**30, 2),
        "stages": stage_seconds(root),
    }


def synthetic(args) -> dict:
    gen = generate_events(
        os.path.join(args.work, f"events-{args.events}"), args.events, args.users, args.items, args.seed
    )
    root = os.path.join(args.work, "synthetic")
    shutil.rmtree(root, ignore_errors=True)
    overrides = [*event_log_settings(gen), *args.synthetic_overrides]
    say(f"synthetic event log, {args.events:,} events ...")
    wall, peak = run_pipeline(
        root, ["--as-of", SYNTHETIC_AS_OF, *as_set_args(overrides)], os.path.join(args.work, "synthetic.log")
    )
    if args.smoke:
        mark_smoke_lakehouse(root)  # bench/scoring.py and train_throughput.py --smoke reuse it
    return {
        "dataset": f"synthetic event log ({args.events:,} events, {args.users:,} users, {args.items:,} items)",
        "overrides": args.synthetic_overrides,
        "wall_seconds": round(wall, 1),
        "peak_rss_gb": round(peak / 2**30, 2),
        "stages": stage_seconds(root),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    out = json_path(args, "pipeline")
    load_before = os.getloadavg()
    os.makedirs(args.work, exist_ok=True)
    runs = {"online-retail": online_retail, "synthetic": synthetic}
    results = [runs[name.strip()](args) for name in args.datasets.split(",") if name.strip()]

    print(f"\nshoprec pipeline, stage wall times (s), {os.cpu_count()} cores")
    print(f"{'stage':<24}" + "".join(f"{r['dataset'][:34]:>36}" for r in results))
    for stage in (*STAGES, "pipeline (MLflow run)"):
        print(f"{stage:<24}" + "".join(f"{r['stages'].get(stage, float('nan')):>36.1f}" for r in results))
    print(f"{'process wall time':<24}" + "".join(f"{r['wall_seconds']:>36.1f}" for r in results))
    print(f"{'peak RSS, all processes':<24}" + "".join(f"{str(r['peak_rss_gb']) + ' GB':>36}" for r in results))
    for r in results:
        if r["overrides"]:
            print(f"{r['dataset']}: --set " + " --set ".join(r["overrides"]))
    write_json(
        {
            "benchmark": "pipeline",
            "at": now(),
            "smoke": args.smoke,
            "results": results,
            "machine": machine_info(None, load_before),
        },
        out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
