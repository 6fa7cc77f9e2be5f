"""Wall time of every stage of ``shoprec pipeline`` and the peak memory, on Online Retail and a
synthetic event log.

    python bench/pipeline.py                                   # both datasets
    python bench/pipeline.py --datasets online-retail
    python bench/pipeline.py --datasets synthetic --events 10000000

Each dataset runs ``shoprec pipeline`` as users run it (a fresh process, the local
config, a fresh data root), while a sampler adds up the resident memory of that process
and all its children (the Spark JVM, Python workers, Horovod ranks) every 0.5 s. Stage
times come from the pipeline's MLflow runs (start to end of each nested stage run), so
they are the times the MLflow UI shows. The synthetic log is written with
``shoprec generate`` first (not timed) and ingested as an event log; its settings are
printed with the table (``--synthetic-set`` adds overrides, e.g. fewer ALS trials).
Writes bench/results/pipeline.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time

import psutil

from _common import RESULTS, machine_info, now, say, write_json

STAGES = ("ingest", "features", "train-als", "train-hybrid", "bundles", "recommend", "evaluate")
SYNTHETIC_AS_OF = "2023-11-01"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="online-retail,synthetic")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--work", default="/tmp/shoprec-bench-pipeline")
    p.add_argument("--synthetic-set", dest="synthetic_overrides", action="append", default=[])
    p.add_argument("--json", default=os.path.join(RESULTS, "pipeline.json"))
    return p.parse_args(argv)


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
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)


def shoprec_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "shoprec")


def run_pipeline(root: str, args: list[str], log_path: str) -> tuple[float, int]:
    env = dict(os.environ, SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"), TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [shoprec_bin(), "pipeline", "--data-root", root, "--set", "spark.launch_settings.spark.ui.showConsoleProgress=false",
           *args]
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
    pipeline = client.search_runs(experiment.experiment_id, filter_string="tags.`shoprec.stage` = 'pipeline'",
                                  order_by=["attributes.start_time DESC"], max_results=1)[0]
    stages = client.search_runs(experiment.experiment_id,
                                filter_string=f"tags.mlflow.parentRunId = '{pipeline.info.run_id}'")
    out = {r.data.tags["shoprec.stage"]: (r.info.end_time - r.info.start_time) / 1000 for r in stages}
    out["pipeline (MLflow run)"] = (pipeline.info.end_time - pipeline.info.start_time) / 1000
    return out


def online_retail(args) -> dict:
    root = os.path.join(args.work, "online-retail")
    shutil.rmtree(root, ignore_errors=True)
    say("Online Retail (the shipped copy, embedded default) ...")
    wall, peak = run_pipeline(root, [], os.path.join(args.work, "online-retail.log"))
    return {"dataset": "Online Retail (541,909 lines)", "overrides": [], "wall_seconds": round(wall, 1),
            "peak_rss_gb": round(peak / 2**30, 2), "stages": stage_seconds(root)}


def synthetic(args) -> dict:
    gen = os.path.join(args.work, f"events-{args.events}")
    if not os.path.exists(os.path.join(gen, "catalog.csv")):
        say(f"generating {args.events:,} events (not timed) ...")
        subprocess.run([shoprec_bin(), "generate", "--users", str(args.users), "--items", str(args.items),
                        "--events", str(args.events), "--seed", "1", "--out", gen], check=True,
                       env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1"), stdout=subprocess.DEVNULL)
    root = os.path.join(args.work, "synthetic")
    shutil.rmtree(root, ignore_errors=True)
    overrides = ["ingest.source=event_log", f"ingest.inputs=[{os.path.join(gen, 'events')}]",
                 f"ingest.catalog={os.path.join(gen, 'catalog.csv')}", *args.synthetic_overrides]
    say(f"synthetic event log, {args.events:,} events ...")
    wall, peak = run_pipeline(root, ["--as-of", SYNTHETIC_AS_OF, *sum((["--set", o] for o in overrides), [])],
                              os.path.join(args.work, "synthetic.log"))
    return {"dataset": f"synthetic event log ({args.events:,} events, {args.users:,} users, {args.items:,} items)",
            "overrides": args.synthetic_overrides, "wall_seconds": round(wall, 1), "peak_rss_gb": round(peak / 2**30, 2),
            "stages": stage_seconds(root)}


def main(argv=None) -> int:
    args = parse_args(argv)
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
    write_json({"benchmark": "pipeline", "at": now(), "results": results, "machine": machine_info(None, load_before)},
               args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
