"""Events/s that ``shoprec stream`` sustains, from the landing folder and from Kafka, side by side.

    python bench/stream_throughput.py                         # 200,000 events, files of 20,000: 10 batches a source
    python bench/stream_throughput.py --events 100000 --backend local
    python bench/stream_throughput.py --sources kafka landing # the other order (the first pays the warm-up)
    python bench/stream_throughput.py --smoke                 # 2,000 events in 2 batches: checks it runs

The project's generator writes ``--events`` events in JSON-lines files of ``--events-per-file``
(bad_row_rate ``--bad-row-rate``, so some rows are quarantined) plus one file more before them:
the seed batch, ingested first (``run_ingest``, with the catalog; not timed) into a data root
that is then copied, one copy per source, so that both start from the same non-empty silver.
Then, one source after the other, in one Spark session:

- landing: every file written beside ``stream.landing`` and renamed in, then
  ``run_stream(ctx, available_now=True)`` with ``stream.max_files_per_trigger=1``: one file, one
  micro-batch;
- kafka: a real one-node Kafka broker on 127.0.0.1 (tests/kafka_broker.py, the jars bootstrap
  fetched), a topic of one partition, the same events produced one message an event (the
  file's line as the value, in order), then ``run_stream`` with ``stream.source=kafka`` and
  ``stream.kafka_max_offsets_per_trigger`` = events per file: the same batches as landing.

Each source has its own data root and checkpoint; both streams run the way ``shoprec stream
--available-now`` does (in this process, no MLflow run). Reported per source: events, batches,
rows in = kept + quarantined, events/s sustained (rows / the batches' seconds) and wall (rows /
the query's time, start and planning included), each batch's seconds and latency (median,
p95, max; latency is from a file's arrival or a message's Kafka timestamp to its commit, and
the whole backlog arrives before the query starts, so it includes the wait behind earlier
batches), and Kafka / landing. Without the broker jars the Kafka part is skipped with a line
saying why, unless ``SHOPREC_REQUIRE_KAFKA`` is set (CI): then the bench fails. Prints a table,
writes bench/results/stream_throughput.json.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from _common import (
    SMOKE_SPARK,
    SMOKE_WORK,
    add_output_args,
    cell,
    json_path,
    machine_info,
    now,
    say,
    smoke_defaults,
    write_json,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("landing", "kafka")
BENCH_OVERRIDES = [
    "spark.launch_settings.spark.ui.enabled=false",
    "spark.launch_settings.spark.ui.showConsoleProgress=false",
]
TOPIC = "bench.events"
SMOKE = {
    "events": 2_000,
    "events_per_file": 1_000,
    "backend": "local",
    "root": os.path.join(SMOKE_WORK, "stream_throughput"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000, help="events streamed by each source (the seed batch apart)")
    p.add_argument("--events-per-file", type=int, default=20_000, help="events a file, and a micro-batch")
    p.add_argument("--users", type=int, default=None, help="generator users (default: events / 50)")
    p.add_argument("--items", type=int, default=2_000)
    p.add_argument("--bad-row-rate", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--backend",
        choices=["auto", "spark", "local"],
        default="auto",
        help="storage.delta_backend (auto: Spark's Delta when present, as shoprec stream; local: delta-rs)",
    )
    p.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES), help="which, in this order")
    p.add_argument(
        "--root", default="/tmp/shoprec-bench-stream", help="scratch folder (its bench folders are replaced)"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--keep", action="store_true", help="leave the data roots and generated files afterwards")
    add_output_args(p)
    args = smoke_defaults(p, p.parse_args(argv), **SMOKE)
    if args.events < 1 or args.events_per_file < 1:
        p.error("--events and --events-per-file must be at least 1")
    if len(set(args.sources)) != len(args.sources):
        p.error("--sources names a source twice")
    return args


# ----------------------------------------------------------------------------- helpers
def kafka_broker_module():
    """tests/kafka_broker.py (the broker the Kafka tests run), importable from the repo root."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from tests import kafka_broker

    return kafka_broker


def kafka_missing() -> str | None:
    """Why the Kafka part cannot run here, or None; raises where it must run (CI)."""
    kb = kafka_broker_module()
    reason = kb.missing_reason()
    if reason and os.environ.get(kb.REQUIRE_ENV):
        raise SystemExit(f"{kb.REQUIRE_ENV} is set but {reason}")
    return reason


def scratch(root: str, name: str) -> str:
    """``<root>/<name>``, emptied (only the bench's own folders under --root are ever deleted)."""
    path = os.path.join(root, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def lines_of(path: str) -> list[bytes]:
    with gzip.open(path, "rb") as fh:
        return fh.read().splitlines()


def land(path: str, landing: str) -> None:
    """As a producer should: write beside the folder, then rename in (one atomic step)."""
    os.makedirs(landing, exist_ok=True)
    tmp = os.path.join(os.path.dirname(landing), "." + os.path.basename(path))
    shutil.copyfile(path, tmp)
    os.replace(tmp, os.path.join(landing, os.path.basename(path)))


def spread(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    if not a.size:
        return {"median": None, "p95": None, "max": None}
    return {
        k: round(float(v), 3) for k, v in (("median", np.median(a)), ("p95", np.percentile(a, 95)), ("max", a.max()))
    }


def make_config(args: argparse.Namespace, data_root: str, extra: list[str]):
    from shoprec.config import load_config

    smoke = SMOKE_SPARK if args.smoke else []
    base = [*BENCH_OVERRIDES, *smoke, f"storage.delta_backend={args.backend}"]
    return load_config("local", [*base, *extra, *args.overrides], data_root=data_root)


# ----------------------------------------------------------------------------- parts
def generate_files(args: argparse.Namespace) -> dict:
    from shoprec.ingest.generator import generate

    out = scratch(args.root, "generated")
    total = args.events + args.events_per_file
    users = args.users or max(20, total // 50)
    say(f"generating {total:,} events (the seed batch's {args.events_per_file:,} first; not timed) ...")
    result = generate(
        out,
        users=users,
        items=args.items,
        events=total,
        seed=args.seed,
        fmt="jsonl",
        events_per_file=args.events_per_file,
        bad_row_rate=args.bad_row_rate,
    )
    files = sorted(result.event_files)
    return {
        "dir": out,
        "catalog": result.catalog_file,
        "seed_file": files[0],
        "files": files[1:],
        "events": total,
        "users": users,
        "items": args.items,
        "bad_rows": result.bad_rows,
        "generate_s": round(result.seconds, 2),
    }


def seed_root(args: argparse.Namespace, gen: dict) -> dict:
    """The seed batch ingested into a data root the sources copy (not timed)."""
    from shoprec.stages.context import JobContext
    from shoprec.stages.ingest import run_ingest
    from shoprec.stages.stream import stream_config

    root = os.path.join(scratch(args.root, "seed"), "lakehouse")
    ctx = JobContext.create(make_config(args, root, [f"ingest.catalog={gen['catalog']}"]))
    say(f"seed batch: ingesting {os.path.basename(gen['seed_file'])} first, so silver is not empty (not timed) ...")
    t0 = time.perf_counter()
    report = run_ingest(ctx.spark, stream_config(ctx.cfg), ctx.tables, None, [gen["seed_file"]])
    return {
        "root": root,
        "file": gen["seed_file"],
        "rows_in": report.rows_in,
        "rows_kept": report.rows_kept,
        "rows_quarantined": report.rows_quarantined,
        "seconds": round(time.perf_counter() - t0, 2),
        "backend": ctx.tables.backend.name,
    }


def stream_source(args: argparse.Namespace, source: str, gen: dict, seed: dict, broker=None) -> dict:
    """One source's run: a copy of the seeded root, the backlog put in place, the stream drained."""
    from shoprec.stages.context import JobContext
    from shoprec.stages.stream import landing_dir, run_stream

    root = os.path.join(scratch(args.root, source), "lakehouse")
    shutil.copytree(seed["root"], root)
    extra = ["stream.max_files_per_trigger=1"]
    if source == "kafka":
        extra += [
            "stream.source=kafka",
            f"stream.kafka_bootstrap_servers={broker.bootstrap_servers}",
            f"stream.kafka_topic={TOPIC}",
            f"stream.kafka_max_offsets_per_trigger={args.events_per_file}",
        ]
    ctx = JobContext.create(make_config(args, root, extra))
    events = 0
    t0 = time.perf_counter()
    if source == "landing":
        say(f"landing: {len(gen['files'])} files renamed into the landing folder (not timed) ...")
        for path in gen["files"]:
            events += len(lines_of(path))
            land(path, landing_dir(ctx.cfg))
    else:
        say(f"kafka: producing the same events, one message each, to {TOPIC} (not timed) ...")
        broker.create_topic(ctx.spark, TOPIC, 1)
        for path in gen["files"]:  # a file at a time, in order: the topic's offsets follow the lines
            lines = lines_of(path)
            events += len(lines)
            broker.produce(ctx.spark, TOPIC, [(None, line, 0) for line in lines])
    staged_s = time.perf_counter() - t0
    say(f"{source}: streaming {events:,} events (available-now) ...")
    report = run_stream(ctx, available_now=True)
    for line in report.summary_lines():
        say("  " + line)
    batches = [b for b in report.batches if b.rows_in]
    t = report.totals()
    rows = int(t["rows_kept"] + t["rows_quarantined"])
    batch_s = sum(b.seconds for b in batches)
    return {
        "origin": report.origin,
        "data_root": root,
        "backend": ctx.tables.backend.name,
        "events": events,
        "batches": len(batches),
        "empty_batches": len(report.batches) - len(batches),
        "rows_in": int(t["rows_in"]),
        "rows_kept": int(t["rows_kept"]),
        "rows_quarantined": int(t["rows_quarantined"]),
        "batch_seconds_total": round(batch_s, 2),
        "wall_s": round(report.seconds, 2),
        "events_per_s_sustained": round(rows / batch_s) if batch_s > 0 else None,
        "events_per_s_wall": round(rows / report.seconds) if report.seconds > 0 else None,
        "batch_s": spread([b.seconds for b in batches]),
        "latency_s": spread([b.latency_s for b in batches]),
        "backlog_staged_s": round(staged_s, 2),
        "per_batch": [
            {
                "batch_id": b.batch_id,
                "rows_in": b.rows_in,
                "rows_kept": b.rows_kept,
                "rows_quarantined": b.rows_quarantined,
                "seconds": round(b.seconds, 3),
                "latency_s": round(b.latency_s, 3),
                "offsets": b.offsets,
            }
            for b in report.batches
        ],
        "checks": {
            "rows_in_equals_kept_plus_quarantined": t["rows_in"] == rows,
            "rows_in_equals_events": t["rows_in"] == events,
            "batches_positive": len(batches) > 0,
        },
    }


# ----------------------------------------------------------------------------- output
def _n(v) -> str:
    return cell(v, "{:.2f}")


def _spread(s: dict) -> str:
    return " / ".join(_n(s[k]) for k in ("median", "p95", "max"))


def table_rows(report: dict) -> list[tuple[str, str, str, str]]:
    runs = {name: report["sources"].get(name) for name in SOURCES}
    ratios = report["ratios"]

    def cell(name: str, fn) -> str:
        r = runs[name]
        if r is None:
            return "-"
        if "skipped" in r:
            return "skipped"
        return fn(r)

    def row(label: str, fn, ratio: str = "") -> tuple[str, str, str, str]:
        return (label, cell("landing", fn), cell("kafka", fn), ratio)

    def ratio(key: str) -> str:
        return f"{ratios[key]:.2f}x" if ratios.get(key) is not None else ""

    return [
        ("", "landing", "kafka", "kafka / landing"),
        row("events", lambda r: _n(r["events"])),
        row("batches", lambda r: _n(r["batches"])),
        row("rows in", lambda r: _n(r["rows_in"])),
        row("kept", lambda r: _n(r["rows_kept"])),
        row("quarantined", lambda r: _n(r["rows_quarantined"])),
        row("rows in = kept + quarantined", lambda r: _n(r["checks"]["rows_in_equals_kept_plus_quarantined"])),
        row("batch seconds, sum", lambda r: _n(r["batch_seconds_total"])),
        row("wall seconds", lambda r: _n(r["wall_s"])),
        row("events/s sustained", lambda r: _n(r["events_per_s_sustained"]), ratio("events_per_s_sustained")),
        row("events/s wall", lambda r: _n(r["events_per_s_wall"]), ratio("events_per_s_wall")),
        row("batch s median / p95 / max", lambda r: _spread(r["batch_s"]), ratio("batch_s_median")),
        row("latency s median / p95 / max", lambda r: _spread(r["latency_s"]), ratio("latency_s_median")),
    ]


def print_table(report: dict) -> None:
    rows = table_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}".rstrip())
    for name, r in report["sources"].items():
        if "skipped" in r:
            print(f"{name} skipped: {r['skipped']}")
    seed = report["seed_batch"]
    print(
        f"seed batch: {seed['rows_in']:,} events ingested first into every source's data root "
        f"({seed['seconds']} s, not timed); backend {seed['backend']}"
    )
    m = report["machine"]
    before, after = m["load_average_before"][0], m["load_average_after"][0]
    print(f"load average (1 min): before {before:.2f}, after {after:.2f}; {m['cpus']} cpus")


def ratios_of(sources: dict) -> dict:
    a, b = sources.get("landing"), sources.get("kafka")
    if not a or not b or "skipped" in a or "skipped" in b:
        return {}

    def over(x, y):
        return round(x / y, 3) if x is not None and y else None

    return {
        "events_per_s_sustained": over(b["events_per_s_sustained"], a["events_per_s_sustained"]),
        "events_per_s_wall": over(b["events_per_s_wall"], a["events_per_s_wall"]),
        "batch_s_median": over(b["batch_s"]["median"], a["batch_s"]["median"]),
        "latency_s_median": over(b["latency_s"]["median"], a["latency_s"]["median"]),
    }


def log_batches() -> None:
    """The stream's own line per batch on stderr, as it goes (progress; the table is stdout)."""
    logger = logging.getLogger("shoprec.stages.stream")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("  %(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_batches()
    out = json_path(args, "stream_throughput")
    load_before = os.getloadavg()
    args.root = os.path.abspath(args.root)
    os.makedirs(args.root, exist_ok=True)
    missing = kafka_missing() if "kafka" in args.sources else None
    if missing:
        say(f"kafka: skipped ({missing})")

    gen = generate_files(args)
    seed = seed_root(args, gen)
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    broker = None
    sources: dict = {}
    try:
        if "kafka" in args.sources and not missing:
            kb = kafka_broker_module()
            broker = kb.KafkaBroker.start(Path(scratch(args.root, "broker")), spark)
            say(f"kafka broker up on {broker.bootstrap_servers} in {broker.started_s:.1f} s (not timed)")
        for source in args.sources:
            if source == "kafka" and missing:
                sources[source] = {"skipped": missing}
                continue
            try:
                sources[source] = stream_source(args, source, gen, seed, broker)
            except BaseException:
                if source == "kafka" and broker is not None:
                    say(broker.log_tail())
                raise
    finally:
        if broker is not None:
            broker.stop()

    ran = [r for r in sources.values() if "skipped" not in r]
    checks = {name: r["checks"] for name, r in sources.items() if "skipped" not in r}
    if len(ran) == 2:  # the same events: the same outcome
        a, b = ran
        checks["same_kept_and_quarantined"] = (a["rows_kept"], a["rows_quarantined"]) == (
            b["rows_kept"],
            b["rows_quarantined"],
        )
    report = {
        "bench": "stream_throughput",
        "when": now(),
        "smoke": args.smoke,
        "args": {
            "events": args.events,
            "events_per_file": args.events_per_file,
            "bad_row_rate": args.bad_row_rate,
            "seed": args.seed,
            "backend": args.backend,
            "sources": list(args.sources),
            "overrides": list(args.overrides),
        },
        "generated": {k: v for k, v in gen.items() if k not in ("files",)} | {"files": len(gen["files"])},
        "seed_batch": seed,
        "sources": sources,
        "ratios": ratios_of(sources),
        "checks": checks,
        "target": "issue 21: >= 2,000 events/s sustained on 2 cores",
        "machine": machine_info(spark, load_before),
    }
    print_table(report)
    write_json(report, out)
    if not args.keep:
        for name in ("generated", "seed", "broker", *SOURCES):
            shutil.rmtree(os.path.join(args.root, name), ignore_errors=True)
    flat = [v for c in checks.values() for v in (c.values() if isinstance(c, dict) else [c])]
    if not all(flat):
        say(f"CHECK FAILED: {checks}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
