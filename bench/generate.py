"""Benchmark of the synthetic event-log generator: wall time, events/s and peak memory.

    python bench/generate.py                      # 10M events, Parquet
    python bench/generate.py --events 2000000 --format csv
    python bench/generate.py --smoke                # 20,000 events: checks the bench runs

Prints a small table and writes the numbers as JSON (default bench/results/generate.json).
The data is left in --out for scale tests unless --clean is given.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import threading
import time
from datetime import UTC, datetime

import psutil

from _common import SMOKE_WORK, add_output_args, json_path, print_rows, smoke_defaults, write_json
from shoprec.ingest.generator import FORMATS, generate

SMOKE = {"events": 20_000, "users": 400, "items": 150, "out": os.path.join(SMOKE_WORK, "generate")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--format", dest="fmt", choices=sorted(FORMATS), default="parquet")
    parser.add_argument("--bad-row-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="/tmp/shoprec-bench-gen", help="output folder (its event files are replaced)")
    parser.add_argument("--clean", action="store_true", help="delete the generated data afterwards")
    add_output_args(parser)
    return smoke_defaults(parser, parser.parse_args(argv), **SMOKE)


class RssSampler:
    """Peak resident memory of this process, sampled every 50 ms.

    ``ru_maxrss`` covers the same, but also counts whatever the interpreter touched
    before the run; sampling gives the run's own peak and is reported beside it.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def run(args: argparse.Namespace) -> dict:
    """Generate once and measure it."""
    rss_before = psutil.Process().memory_info().rss
    cpu_before = os.times()
    started = time.perf_counter()
    with RssSampler() as sampler:
        result = generate(
            args.out,
            users=args.users,
            items=args.items,
            events=args.events,
            seed=args.seed,
            fmt=args.fmt,
            bad_row_rate=args.bad_row_rate,
        )
    wall = time.perf_counter() - started
    cpu_after = os.times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m": os.getloadavg()[0],
        },
        "args": {
            "events": args.events,
            "users": args.users,
            "items": args.items,
            "format": args.fmt,
            "bad_row_rate": args.bad_row_rate,
            "seed": args.seed,
        },
        "events": result.events,
        "bad_rows": result.bad_rows,
        "files": len(result.event_files),
        "output_mb": round(folder_bytes(args.out) / 2**20, 1),
        "wall_s": round(wall, 2),
        "generate_s": round(result.seconds, 2),
        "events_per_s": round(result.events / wall),
        "cpu_s": round(cpu, 2),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_sampled_mb": round(sampler.peak / 2**20, 1),
        "rss_before_mb": round(rss_before / 2**20, 1),
    }


def print_table(report: dict) -> None:
    rows = [
        ("events", f"{report['events']:,}"),
        ("format", report["args"]["format"]),
        ("files", report["files"]),
        ("output", f"{report['output_mb']:,} MB"),
        ("wall time", f"{report['wall_s']} s"),
        ("events/s", f"{report['events_per_s']:,}"),
        ("cpu time", f"{report['cpu_s']} s"),
        ("peak RSS (ru_maxrss)", f"{report['peak_rss_mb']:,} MB"),
        ("peak RSS (sampled)", f"{report['peak_rss_sampled_mb']:,} MB"),
        ("load average (1 min)", report["machine"]["load_average_1m"]),
    ]
    print_rows(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = json_path(args, "generate")
    report = run(args)
    print_table(report)
    write_json(report, out)
    if args.clean:
        # Only what the generator wrote, in case --out points at a folder with other things in it.
        shutil.rmtree(os.path.join(args.out, "events"), ignore_errors=True)
        if os.path.exists(os.path.join(args.out, "catalog.csv")):
            os.remove(os.path.join(args.out, "catalog.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
