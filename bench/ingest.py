"""Benchmark of the ingest job end to end: wall time, rows/s, counts and peak memory.

    python bench/ingest.py                                  # Online Retail + 10M generated events
    python bench/ingest.py --events 2000000
    python bench/ingest.py --skip-events                    # Online Retail only
    python bench/ingest.py --skip-retail --events-dir /tmp/shoprec-bench-gen
    python bench/ingest.py --smoke                          # the first 2,000 lines + 20,000 events

Part A ingests the shipped Online Retail file (data/online-retail/online_retail.csv.gz)
into a fresh data root, then runs again on the same file, which must be skipped.
Part B generates an event log with the synthetic generator (Parquet, users = N/50,
20,000 items, bad_row_rate 0.001; generation is not timed) or reuses --events-dir, and
ingests it with ``ingest.source=event_log`` and the generated catalog; it checks
rows_in == kept + quarantined and quarantined == the generator's bad rows.

Both parts call ``shoprec.stages.ingest.run_ingest`` exactly as ``shoprec ingest`` does,
minus MLflow logging (run=None). Memory: the Python driver and the JVM it launched (a
child process) are sampled together with psutil every 100 ms, Spark's Python workers
apart; the kernel's own peaks (VmHWM, reset before each run) and ru_maxrss are reported
beside them. The Spark session is shared by both parts, so the JVM's heap after part A
is part B's starting point.

Each part uses its own data root under --root, deleted at the start (./lakehouse is
never touched). Prints a table and writes the numbers as JSON (default
bench/results/ingest.json). ``--smoke`` ingests the first 2,000 lines of the shipped file
and 20,000 generated events: it checks the bench runs, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import os
import platform
import resource
import shutil
import sys
import threading
import time
from datetime import UTC, datetime

import deltalake
import psutil
import pyspark

from _common import SMOKE_SPARK, SMOKE_WORK, add_output_args, cell, json_path, print_rows, smoke_defaults, write_json
from shoprec.config import load_config
from shoprec.ingest.generator import generate
from shoprec.spark import get_spark
from shoprec.stages.ingest import IngestReport, run_ingest
from shoprec.tables import open_tables

RETAIL_FILE = os.path.join("data", "online-retail", "online_retail.csv.gz")
GENERATED_META = "bench-ingest-generated.json"
BENCH_OVERRIDES = [
    "spark.launch_settings.spark.ui.enabled=false",
    "spark.launch_settings.spark.ui.showConsoleProgress=false",
]
SMOKE_RETAIL_LINES = 2_000
SMOKE = {"events": 20_000, "items": 150, "root": os.path.join(SMOKE_WORK, "ingest")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default="/tmp/shoprec-bench-ingest",
        help="scratch folder: <root>/online_retail and <root>/event_log are the data roots",
    )
    parser.add_argument("--retail-file", default=None, help=f"Online Retail file (default: {RETAIL_FILE})")
    parser.add_argument("--skip-retail", action="store_true", help="skip part A (Online Retail)")
    parser.add_argument("--events", type=int, default=10_000_000, help="events to generate for part B")
    parser.add_argument("--skip-events", action="store_true", help="skip part B (generated event log)")
    parser.add_argument(
        "--events-dir",
        default=None,
        help="generator output to reuse (events/ + catalog.csv); generated there when empty",
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--bad-row-rate", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override, as shoprec --set",
    )
    parser.add_argument("--keep", action="store_true", help="leave the data roots and generated data afterwards")
    parser.add_argument("--verbose", action="store_true", help="also print shoprec's log lines of each run, timed")
    add_output_args(parser)
    args = smoke_defaults(parser, parser.parse_args(argv), **SMOKE)
    if args.skip_retail and args.skip_events:
        parser.error("nothing to do: both parts skipped")
    if args.events < 1:
        parser.error("--events must be at least 1")
    return args


# ----------------------------------------------------------------------------- memory
def _mb(n: int | float | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def _vm_hwm(pid: int) -> int | None:
    """The kernel's peak resident set of ``pid`` in bytes (VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class TreeRssSampler:
    """Peak resident memory of this Python process plus the JVM it launched, sampled every
    ``interval`` seconds (the peak of the sum, and of each alone). Spark's Python workers
    (pyspark.daemon and its forks) are tracked apart: forked workers share pages, so the
    sum of their RSS overstates them. Other short-lived children are ignored: the JVM
    forks shell helpers (Hadoop without native libraries), and between fork and exec such
    a child shows the whole JVM's RSS, which would count the JVM twice."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.me = psutil.Process()
        self.peak_total = self.peak_python = self.peak_jvm = self.peak_workers = 0
        self.samples = 0
        self.jvm: psutil.Process | None = None
        self.hwm_reset = False
        self._workers: dict[int, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeRssSampler:
        self.jvm = self._find_jvm()
        self.hwm_reset = _reset_hwm(self.me.pid) and (self.jvm is None or _reset_hwm(self.jvm.pid))
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _find_jvm(self) -> psutil.Process | None:
        for p in self.me.children(recursive=True):
            try:
                if p.name() == "java" and any("SparkSubmit" in a for a in p.cmdline()):
                    parent = p.parent()
                    if parent is None or parent.name() != "java":
                        return p
            except psutil.Error:
                continue
        return None

    def _is_worker(self, p: psutil.Process) -> bool:
        if p.pid not in self._workers:
            try:
                self._workers[p.pid] = p.name().startswith("python") and any("pyspark" in a for a in p.cmdline())
            except psutil.Error:
                return False
        return self._workers[p.pid]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @staticmethod
    def _rss(p: psutil.Process | None) -> int:
        if p is None:
            return 0
        try:
            return p.memory_info().rss
        except psutil.Error:
            return 0

    def _sample(self) -> None:
        python, jvm = self._rss(self.me), self._rss(self.jvm)
        workers = 0
        if self.jvm is not None:
            try:
                children = self.jvm.children(recursive=True)
            except psutil.Error:
                children = []
            workers = sum(self._rss(p) for p in children if self._is_worker(p))
        self.samples += 1
        self.peak_total = max(self.peak_total, python + jvm)
        self.peak_python = max(self.peak_python, python)
        self.peak_jvm = max(self.peak_jvm, jvm)
        self.peak_workers = max(self.peak_workers, workers)

    def report(self) -> dict:
        hwm_py = _vm_hwm(self.me.pid)
        hwm_jvm = _vm_hwm(self.jvm.pid) if self.jvm is not None else None
        return {
            "peak_rss_mb": _mb(self.peak_total),  # python driver + JVM, sampled
            "peak_python_rss_mb": _mb(self.peak_python),
            "peak_jvm_rss_mb": _mb(self.peak_jvm),
            "peak_python_workers_rss_mb": _mb(self.peak_workers),  # sum of RSS (shared pages counted per worker)
            # Kernel peaks over this run (when the reset worked; else since process start).
            "vmhwm_python_mb": _mb(hwm_py),
            "vmhwm_jvm_mb": _mb(hwm_jvm),
            "vmhwm_reset": self.hwm_reset,
            # ru_maxrss is in KiB on Linux and covers the whole process life. RUSAGE_CHILDREN
            # only counts children that have exited and been waited for: it does NOT
            # include the running JVM (use the sampled / VmHWM numbers for that).
            "ru_maxrss_self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "ru_maxrss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "samples": self.samples,
        }


# ----------------------------------------------------------------------------- helpers
def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def fresh_root(path: str) -> str:
    path = os.path.abspath(path)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    never = {os.path.abspath("lakehouse"), os.path.join(repo, "lakehouse"), repo, "/", os.path.expanduser("~")}
    if path in never:
        raise SystemExit(f"refusing to delete {path}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


class LogTimeline(logging.Handler):
    """shoprec's own INFO log lines during a run, with seconds since the run started
    (where the time goes: the job logs its steps and every table write)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.started = time.perf_counter()
        self.lines: list[tuple[float, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # never let the benchmark's bookkeeping break the job
            self.lines.append((round(time.perf_counter() - self.started, 2), record.name, record.getMessage()))

    def __enter__(self) -> LogTimeline:
        self.logger = logging.getLogger("shoprec")
        self.old_level = self.logger.level
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.old_level)


def timed_ingest(spark, cfg, tables, inputs: list[str]) -> tuple[IngestReport, float, dict, list]:
    started = time.perf_counter()
    with TreeRssSampler() as sampler, LogTimeline() as timeline:
        report = run_ingest(spark, cfg, tables, run=None, inputs=inputs)
    wall = time.perf_counter() - started
    return report, wall, sampler.report(), timeline.lines


def report_dict(report: IngestReport, wall: float, memory: dict, timeline: list) -> dict:
    return {
        "wall_s": round(wall, 2),
        "job_s": round(report.seconds, 2),
        "rows_per_s": round(report.rows_in / wall) if wall > 0 and report.rows_in else 0,
        "rows_in": report.rows_in,
        "rows_kept": report.rows_kept,
        "rows_quarantined": report.rows_quarantined,
        "quarantine_by_reason": dict(report.quarantine_by_reason),
        "anonymous_rows": report.anonymous_rows,
        "non_product_rows": report.non_product_rows,
        "catalog_rows": report.catalog_rows,
        "files_ingested": len(report.files_ingested),
        "files_skipped": len(report.files_skipped),
        "table_versions": dict(report.table_versions),
        "memory": memory,
        "log": [{"s": t, "logger": name, "message": msg} for t, name, msg in timeline],
    }


def start_spark(cfg) -> tuple:
    """The session (built on first use, reused after) and the seconds it took: not part of
    any timed ingest (the first run still pays for a cold JVM: JIT, class loading)."""
    started = time.perf_counter()
    spark = get_spark(cfg.spark)
    return spark, round(time.perf_counter() - started, 2)


def make_config(args: argparse.Namespace, data_root: str, extra: list[str]):
    smoke = SMOKE_SPARK if args.smoke else []
    return load_config("local", [*BENCH_OVERRIDES, *smoke, *extra, *args.overrides], data_root=data_root)


def retail_sample(source: str, lines: int, out: str) -> str:
    """The header and first ``lines`` lines of an Online Retail gzip CSV, as another one."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with (
        gzip.open(source, "rt", encoding="utf-8", newline="") as src,
        gzip.open(out, "wt", encoding="utf-8", newline="") as dst,
    ):
        for n, line in enumerate(src):
            if n > lines:
                break
            dst.write(line)
    return out


def retail_input(args: argparse.Namespace, cfg) -> str:
    """The Online Retail file to ingest: --retail-file, the shipped one, or its first lines (--smoke)."""
    path = cfg.resolve_path(args.retail_file or os.path.join(str(cfg.project_root), RETAIL_FILE))
    if args.smoke and not args.retail_file:
        return retail_sample(path, SMOKE_RETAIL_LINES, os.path.join(args.root, "online_retail_sample.csv.gz"))
    return path


# ----------------------------------------------------------------------------- parts
def part_retail(args: argparse.Namespace) -> dict:
    data_root = fresh_root(os.path.join(args.root, "online_retail"))
    cfg = make_config(args, data_root, ["ingest.source=online_retail"])
    spark, spark_start_s = start_spark(cfg)
    tables = open_tables(spark, cfg.data_root, cfg.storage.delta_backend)
    path = retail_input(args, cfg)

    print("part A: Online Retail, first run ...", file=sys.stderr, flush=True)
    first, wall, mem, lines = timed_ingest(spark, cfg, tables, [path])
    out = {
        "file": path,
        "file_mb": _mb(os.path.getsize(path)),
        "data_root": data_root,
        "spark_start_s": spark_start_s,
        "backend": tables.backend.name,
        "first": report_dict(first, wall, mem, lines),
    }
    out["checks"] = {"accounting_ok": first.rows_in == first.rows_kept + first.rows_quarantined}

    print("part A: Online Retail, rerun of the same file ...", file=sys.stderr, flush=True)
    again, wall2, mem2, lines2 = timed_ingest(spark, cfg, tables, [path])
    out["rerun"] = report_dict(again, wall2, mem2, lines2)
    out["checks"]["rerun_skipped"] = len(again.files_skipped) == 1 and not again.files_ingested and again.rows_in == 0
    out["checks"]["rerun_versions_unchanged"] = dict(again.table_versions) == dict(first.table_versions)
    out["lakehouse_mb"] = _mb(folder_bytes(data_root))
    return out


def _generated(args: argparse.Namespace) -> tuple[str, dict]:
    """The generator output folder and what is known about it (events, bad_rows, ...)."""
    users = max(1, args.events // 50)
    wanted = {
        "events": args.events,
        "users": users,
        "items": args.items,
        "seed": args.seed,
        "bad_row_rate": args.bad_row_rate,
        "format": "parquet",
    }
    if args.events_dir:
        out_dir = os.path.abspath(args.events_dir)
        meta_path = os.path.join(out_dir, GENERATED_META)
        events_dir = os.path.join(out_dir, "events")
        has_events = os.path.isdir(events_dir) and any(not n.startswith((".", "_")) for n in os.listdir(events_dir))
        if has_events:
            meta = {}
            if os.path.exists(meta_path):
                with open(meta_path) as fh:
                    meta = json.load(fh)
            else:
                print(
                    f"note: {out_dir} has no {GENERATED_META}; its bad-row count is unknown, so the "
                    "quarantine check is skipped",
                    file=sys.stderr,
                )
            if meta and meta.get("events") != args.events:
                print(f"note: reusing {meta.get('events'):,} events from {out_dir} (--events ignored)", file=sys.stderr)
            return out_dir, {**meta, "reused": True, "generate_s": None}
    else:
        out_dir = fresh_root(os.path.join(args.root, "generated"))
    print(f"part B: generating {args.events:,} events into {out_dir} (not timed) ...", file=sys.stderr, flush=True)
    result = generate(
        out_dir,
        users=users,
        items=args.items,
        events=args.events,
        seed=args.seed,
        fmt="parquet",
        bad_row_rate=args.bad_row_rate,
    )
    meta = {
        **wanted,
        "bad_rows": result.bad_rows,
        "files": len(result.event_files),
        "generate_s": round(result.seconds, 2),
    }
    with open(os.path.join(out_dir, GENERATED_META), "w") as fh:
        json.dump(meta, fh, indent=2)
    return out_dir, {**meta, "reused": False}


def part_events(args: argparse.Namespace) -> dict:
    out_dir, meta = _generated(args)
    events_dir = os.path.join(out_dir, "events")
    catalog = os.path.join(out_dir, "catalog.csv")
    data_root = fresh_root(os.path.join(args.root, "event_log"))
    extra = ["ingest.source=event_log", "ingest.format=auto"]
    if os.path.exists(catalog):
        extra.append(f"ingest.catalog={catalog}")
    cfg = make_config(args, data_root, extra)
    spark, spark_start_s = start_spark(cfg)
    tables = open_tables(spark, cfg.data_root, cfg.storage.delta_backend)

    print("part B: ingesting the event log ...", file=sys.stderr, flush=True)
    report, wall, mem, lines = timed_ingest(spark, cfg, tables, [events_dir])
    out = {
        "events_dir": events_dir,
        "input_mb": _mb(folder_bytes(events_dir)),
        "catalog": cfg.ingest.catalog,
        "data_root": data_root,
        "backend": tables.backend.name,
        "generator": meta,
        "spark_start_s": spark_start_s,
        "run": report_dict(report, wall, mem, lines),
    }
    bad = meta.get("bad_rows")
    out["checks"] = {
        "accounting_ok": report.rows_in == report.rows_kept + report.rows_quarantined,
        "quarantined_equals_bad_rows": None if bad is None else report.rows_quarantined == bad,
        "rows_in_equals_events": None if meta.get("events") is None else report.rows_in == meta["events"],
    }
    out["lakehouse_mb"] = _mb(folder_bytes(data_root))
    if not args.keep and not args.events_dir:
        shutil.rmtree(out_dir, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- output
def _fmt(v) -> str:
    return cell(v)


def print_timelines(report: dict) -> None:
    runs = []
    if "online_retail" in report:
        runs += [("A first run", report["online_retail"]["first"]), ("A rerun", report["online_retail"]["rerun"])]
    if "event_log" in report:
        runs.append(("B", report["event_log"]["run"]))
    for title, r in runs:
        print(f"{title}: shoprec log, seconds since the run started")
        for line in r["log"]:
            print(f"  {line['s']:8.2f}  {line['message']}")
    print()


def print_table(report: dict) -> None:
    rows: list[tuple[str, str]] = []

    def run_rows(prefix: str, r: dict) -> None:
        m = r["memory"]
        rows.extend(
            [
                (f"{prefix} wall time", f"{r['wall_s']} s (job {r['job_s']} s)"),
                (f"{prefix} rows/s", _fmt(r["rows_per_s"])),
                (f"{prefix} rows in", _fmt(r["rows_in"])),
                (f"{prefix} kept", _fmt(r["rows_kept"])),
                (
                    f"{prefix} quarantined",
                    _fmt(r["rows_quarantined"])
                    + (f"  {r['quarantine_by_reason']}" if r["quarantine_by_reason"] else ""),
                ),
                (
                    f"{prefix} peak RSS python+JVM (sampled)",
                    f"{_fmt(m['peak_rss_mb'])} MB "
                    f"(python {_fmt(m['peak_python_rss_mb'])}, JVM {_fmt(m['peak_jvm_rss_mb'])}; "
                    f"python workers {_fmt(m['peak_python_workers_rss_mb'])})",
                ),
                (
                    f"{prefix} peak RSS (VmHWM)",
                    f"python {_fmt(m['vmhwm_python_mb'])} MB, JVM {_fmt(m['vmhwm_jvm_mb'])} MB",
                ),
            ]
        )

    if "online_retail" in report:
        a = report["online_retail"]
        run_rows("A", a["first"])
        rows.append(("A rerun (skipped)", f"{a['rerun']['wall_s']} s, files skipped {a['rerun']['files_skipped']}"))
        rows.append(
            (
                "A checks",
                f"rows in == kept + quarantined: {_fmt(a['checks']['accounting_ok'])}; "
                f"rerun skipped: {_fmt(a['checks']['rerun_skipped'])}",
            )
        )
    if "event_log" in report:
        b = report["event_log"]
        g = b["generator"]
        rows.append(
            (
                "B generated",
                f"{_fmt(g.get('events'))} events, {_fmt(g.get('bad_rows'))} bad rows, "
                f"{b['input_mb']} MB"
                + (" (reused)" if g.get("reused") else f" in {g.get('generate_s')} s (not timed)"),
            )
        )
        run_rows("B", b["run"])
        rows.append(
            (
                "B checks",
                f"rows in == kept + quarantined: {_fmt(b['checks']['accounting_ok'])}; "
                f"quarantined == generator bad rows: "
                f"{_fmt(b['checks']['quarantined_equals_bad_rows'])}",
            )
        )
    m = report["machine"]
    starts = [p["spark_start_s"] for p in (report.get("online_retail"), report.get("event_log")) if p]
    rows.append(("Spark session start (not timed)", f"{starts[0]} s"))
    rows.append(
        ("load average (1 min)", f"before {m['load_average_before'][0]:.2f}, after {m['load_average_after'][0]:.2f}")
    )
    print_rows(rows)


def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()
    args.root = os.path.abspath(args.root)
    os.makedirs(args.root, exist_ok=True)
    report: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "smoke": args.smoke}
    if not args.skip_retail:
        report["online_retail"] = part_retail(args)
    if not args.skip_events:
        report["event_log"] = part_events(args)
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    report["machine"] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "spark": pyspark.__version__,
        "deltalake": deltalake.__version__,
        "spark_master": spark.sparkContext.master if spark else None,
        "driver_memory": spark.sparkContext.getConf().get("spark.driver.memory", None) if spark else None,
        "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions") if spark else None,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }
    report["args"] = {
        "events": None if args.skip_events else args.events,
        "events_dir": args.events_dir,
        "items": args.items,
        "bad_row_rate": args.bad_row_rate,
        "seed": args.seed,
        "skip_retail": args.skip_retail,
        "skip_events": args.skip_events,
        "root": args.root,
        "overrides": list(args.overrides),
    }
    if not args.keep:
        for part in ("online_retail", "event_log"):
            shutil.rmtree(os.path.join(args.root, part), ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = json_path(args, "ingest")
    report = run(args)
    if args.verbose:
        print_timelines(report)
    print_table(report)
    write_json(report, out)
    failed = [
        name
        for name in ("online_retail", "event_log")
        if name in report and any(v is False for v in report[name]["checks"].values())
    ]
    if failed:
        print(f"CHECK FAILED in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
