"""The online API under load: ``shoprec serve`` vs ``mlflow models serve`` of the champion, on loopback.

    python bench/api_load.py --data-root /tmp/lh-or          # after `shoprec pipeline` there (4,010 users)
    python bench/api_load.py --synthetic-users 200000        # + gold lists of 200,000 users (delta-rs, not timed)
    python bench/api_load.py --smoke                         # the smoke lakehouse, 2 s runs: checks it runs

For each connection count (``--connections``, default 1 16 64), a closed-loop run of
``--duration`` seconds: every request a random user's list
(``GET /v1/users/<id>/recommendations?k=10``, the request-time context included), then one
paced run at ``--rate`` requests/s over 16 connections: the target is p99 <= 10 ms at 1,000/s.
The load generator is ``wrk`` (Debian's package) when it is on PATH, else a bounded Python
client (threads, keep-alive; it shares the CPUs with the server, so its numbers are lower).

The comparison, in the same run: ``mlflow models serve`` of ``shoprec-hybrid@champion``
answering the same question the way a plain MLflow deployment would: one POST per request
with that user's candidate pool (their gold.candidates rows, up to ``--pool``, with the model's
feature columns filled from the gold tables) scored by the model. Reported as ratios of
requests/s and latency. Both servers run one worker process. Writes bench/results/api_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, date, datetime
from http.client import HTTPConnection

import numpy as np
import psutil

from _common import (
    SMOKE_WORK,
    add_output_args,
    bench_env,
    free_port,
    json_path,
    machine_info,
    now,
    print_rows,
    say,
    shoprec_bin,
    smoke_defaults,
    smoke_lakehouse,
    wait_ready,
    write_json,
)

SMOKE = {"duration": 2.0, "connections": [1, 4], "rate": 200, "pool": 20, "users_sample": 50}
K = 10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="a data root after `shoprec pipeline` (required unless --smoke)")
    p.add_argument("--synthetic-users", type=int, default=0, help="also serve gold lists of this many made-up users")
    p.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--rate", type=int, default=1000, help="requests/s of the paced run")
    p.add_argument("--pool", type=int, default=100, help="candidates per user in the MLflow comparison")
    p.add_argument("--users-sample", type=int, default=200, help="users whose pools the MLflow comparison posts")
    p.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--no-baseline", action="store_true", help="skip mlflow models serve")
    add_output_args(p)
    args = p.parse_args(argv)
    args = smoke_defaults(p, args, **SMOKE)
    if args.data_root is None and not args.smoke:
        p.error("--data-root is required (or --smoke)")
    return args


# ------------------------------------------------------------------------------ load generators
_WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_script(folder: str, requests: list[tuple[str, str, bytes | None]], delay_ms: float | None) -> str:
    """A wrk Lua script that sends ``requests`` (method, path, body) in random order, read from a
    file at start (a Lua chunk holds at most 65,536 constants: 200,000 paths do not fit in one)."""
    data = os.path.join(folder, "requests.tsv")
    with open(data, "w") as fh:
        for m, p, b in requests:  # JSON bodies never hold a raw tab or newline
            fh.write(f"{m}\t{p}\t{b.decode() if b else ''}\n")
    script = os.path.join(folder, "load.lua")
    with open(script, "w") as fh:
        fh.write(
            "local reqs = {}\n"
            f"for line in io.lines({json.dumps(data)}) do\n"
            '  local m, p, b = line:match("^([^\\t]*)\\t([^\\t]*)\\t(.*)$")\n'
            '  reqs[#reqs + 1] = {m, p, b ~= "" and b or nil}\n'
            "end\n"
            "init = function(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end\n"
            "request = function()\n"
            "  local r = reqs[math.random(#reqs)]\n"
            '  local headers = r[3] and {["Content-Type"] = "application/json"} or nil\n'
            "  return wrk.format(r[1], r[2], headers, r[3])\n"
            "end\n" + (f"delay = function() return {delay_ms:.3f} end\n" if delay_ms is not None else "")
        )
    return script


def run_wrk(url: str, requests: list, connections: int, duration: float, delay_ms: float | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = _wrk_script(tmp, requests, delay_ms)
        threads = max(1, min(connections, 2))
        cmd = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration:g}s",
            "--latency",
            "-s",
            script,
            url,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        if "load.lua" in done.stderr:  # wrk runs on with plain GET / when its script fails
            raise SystemExit(f"wrk could not run its script: {done.stderr.strip().splitlines()[0]}")
        out = done.stdout
    lat = {q: float(v) * _UNIT[u] for q, v, u in _WRK_LATENCY.findall(out)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "client": "wrk",
        "connections": connections,
        "requests": total,
        "requests_per_s": round(rps, 1),
        "p50_ms": round(lat.get("50", float("nan")), 3),
        "p99_ms": round(lat.get("99", float("nan")), 3),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def run_python(url: str, requests: list, connections: int, duration: float, rate: float | None = None) -> dict:
    """A bounded closed-loop (or paced, ``rate`` requests/s in all) client: one thread and
    keep-alive connection per ``connections``."""
    host, port = url.split("//")[1].split(":")
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop_at = time.perf_counter() + duration
    interval = connections / rate if rate else 0.0

    def worker(n: int) -> None:
        conn = HTTPConnection(host, int(port), timeout=30)
        rng = random.Random(n)
        next_at = time.perf_counter()
        while True:
            t = time.perf_counter()
            if t >= stop_at:
                break
            if interval:
                if next_at > t:
                    time.sleep(next_at - t)
                next_at += interval
            method, path, body = rng.choice(requests)
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            resp = conn.getresponse()
            resp.read()
            latencies[n].append(time.perf_counter() - t0)
            errors[n] += resp.status >= 300
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    lat = np.concatenate([np.asarray(x) for x in latencies if x]) * 1e3
    return {
        "client": "python",
        "connections": connections,
        "requests": int(lat.size),
        "requests_per_s": round(lat.size / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "non_2xx": int(sum(errors)),
    }


def load(client: str, url: str, requests: list, connections: int, duration: float, rate: float | None = None) -> dict:
    if client == "python":
        return run_python(url, requests, connections, duration, rate)
    if rate is None:
        return run_wrk(url, requests, connections, duration)
    # wrk waits ``delay`` before each request of a connection, on top of its latency: one short
    # probe measures the rate a first guess gives, and the delay is cut by the difference.
    delay = connections * 1000.0 / rate
    probe = run_wrk(url, requests, connections, min(2.0, duration), delay)
    delay = max(0.0, delay - (connections * 1000.0 / max(probe["requests_per_s"], 1.0) - delay))
    return {**run_wrk(url, requests, connections, duration, delay), "delay_ms": round(delay, 3)}


# ------------------------------------------------------------------------------ servers
class Proc:
    def __init__(self, cmd: list[str], log: str, env: dict | None = None):
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env or bench_env())

    def rss_mb(self) -> float:
        p = psutil.Process(self.proc.pid)
        return sum(c.memory_info().rss for c in [p, *p.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._fh.close()


def start_shoprec(root: str, work: str) -> tuple[Proc, str, float]:
    port = free_port()
    proc = Proc([shoprec_bin(), "serve", "--data-root", root, "--port", str(port)], os.path.join(work, "serve.log"))
    url = f"http://127.0.0.1:{port}"
    return proc, url, wait_ready(url + "/health", proc.proc, proc.log)


def start_mlflow(root: str, work: str) -> tuple[Proc, str, float]:
    from shoprec import paths

    port = free_port()
    store = f"sqlite:///{paths.mlflow_db(root)}"  # the embedded store, as shoprec.tracking builds it
    env = dict(bench_env(), MLFLOW_TRACKING_URI=store, MLFLOW_REGISTRY_URI=store)
    mlflow = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    cmd = [mlflow, "models", "serve", "-m", "models:/shoprec-hybrid@champion", "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    proc = Proc(cmd, os.path.join(work, "mlflow-serve.log"), env)
    url = f"http://127.0.0.1:{port}"
    return proc, url, wait_ready(url + "/ping", proc.proc, proc.log)


# ------------------------------------------------------------------------------ what is asked
def user_paths(root: str, sample: int | None, seed: int = 7) -> list[tuple[str, str, None]]:
    from deltalake import DeltaTable

    users = DeltaTable(os.path.join(root, "gold", "recommendations")).to_pyarrow_table(columns=["user_id"])
    ids = sorted(set(users.column("user_id").to_pylist()))
    if sample:
        ids = random.Random(seed).sample(ids, min(sample, len(ids)))
    at = "2011-12-05T10:00:00"
    return [("GET", f"/v1/users/{u}/recommendations?k={K}&at={at}", None) for u in ids]


def candidate_bodies(root: str, users: int, pool: int, seed: int = 7) -> list[tuple[str, str, bytes]]:
    """One ``/invocations`` body per sampled user: their gold.candidates (up to ``pool``) in the
    model's input columns, features from the gold tables (the cost is the model's either way)."""
    from deltalake import DeltaTable

    def table(name: str):  # type: ignore[no-untyped-def]
        return DeltaTable(os.path.join(root, *name.split("."))).to_pandas()

    cands = table("gold.candidates")
    cands = cands[cands["as_of"] == cands["as_of"].max()].drop_duplicates(["user_id", "item_id"])
    items = table("gold.item_features")
    items = items[items["as_of"] == items["as_of"].max()].set_index("item_id")
    ufeat = table("gold.user_features")
    ufeat = ufeat[ufeat["as_of"] == ufeat["as_of"].max()].set_index("user_id")
    at = datetime(2011, 12, 5, 10, tzinfo=UTC)
    rng = random.Random(seed)
    chosen = rng.sample(sorted(cands["user_id"].unique()), min(users, cands["user_id"].nunique()))
    bodies = []
    for u in chosen:
        rows = cands[cands["user_id"] == u].head(pool)
        uf = ufeat.loc[u] if u in ufeat.index else None
        records = []
        for item in rows["item_id"]:
            it = items.loc[item] if item in items.index else None
            records.append(
                [
                    u,
                    item,
                    None if uf is None else uf["country"],
                    None,
                    "winter",
                    None if it is None else it["category"],
                    float(at.hour),
                    float(at.isoweekday()),
                    None if it is None else float(it["price_band"]),
                    20.0,
                    0.0,
                    None,
                    None if uf is None else float(uf["n_purchases"]),
                    None if uf is None else float(uf["recency_days"]),
                    None if it is None else [float(x) for x in it["text_vector"]],
                ]
            )
        columns = [
            "user_id", "item_id", "country", "device", "season", "category", "hour", "weekday", "price_band",
            "days_to_holiday", "pair_purchases", "pair_days_since", "user_purchases", "user_days_since", "text_vector",
        ]  # fmt: skip
        body = json.dumps({"dataframe_split": {"columns": columns, "data": records}}).encode()
        bodies.append(("POST", "/invocations", body))
    return bodies


def synthetic_lists(root: str, users: int, items: int = 20_000, seed: int = 11) -> str:
    """A data root with gold.recommendations of ``users`` made-up users (K rows each) and a
    global cold-start list, written with delta-rs: the API's scale, not a model's."""
    import pyarrow as pa
    from deltalake import write_deltalake

    target = os.path.join(root, f"synthetic-{users}")
    if os.path.exists(os.path.join(target, "_complete")):
        return target
    say(f"writing gold lists of {users:,} synthetic users (not timed) ...")
    rng = np.random.default_rng(seed)
    n = users * K
    as_of = date(2011, 11, 1)
    stamp = datetime.now(UTC)
    user_ids = np.repeat(np.array([f"s{u:07d}" for u in range(users)], dtype=object), K)
    recs = pa.table(
        {
            "user_id": pa.array(user_ids, pa.string()),
            "rank": pa.array(np.tile(np.arange(1, K + 1, dtype=np.int32), users)),
            "item_id": pa.array([f"i{x:05d}" for x in rng.integers(0, items, n)], pa.string()),
            "score": pa.array(np.sort(rng.random(n))[::-1]),
            "source": pa.array(rng.choice(["als", "repeat", "cooccurrence", "hybrid"], n).astype(object), pa.string()),
            "reason": pa.array(["customers who buy what you buy also buy it"] * n, pa.string()),
            "model_name": pa.array(["shoprec-hybrid"] * n, pa.string()),
            "model_version": pa.array(["1"] * n, pa.string()),
            "as_of": pa.array([as_of] * n, pa.date32()),
            "generated_at": pa.array([stamp] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    write_deltalake(os.path.join(target, "gold", "recommendations"), recs, partition_by=["as_of"], mode="overwrite")
    cold = recs.slice(0, K).drop_columns(["user_id"]).add_column(0, "list_key", pa.array(["*"] * K, pa.string()))
    write_deltalake(os.path.join(target, "gold", "cold_start_lists"), cold, partition_by=["as_of"], mode="overwrite")
    open(os.path.join(target, "_complete"), "w").close()
    return target


# ------------------------------------------------------------------------------ the runs
def _numbers(r: dict) -> str:
    return f"{r['requests_per_s']:,.1f} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms"


def serve_runs(client: str, url: str, requests: list, args) -> dict:
    closed = [load(client, url, requests, c, args.duration) for c in args.connections]
    for r in closed:
        say(f"  {r['connections']:>3} connections: {_numbers(r)}")
    paced = load(client, url, requests, 16, args.duration, rate=args.rate)
    say(f"  paced at {args.rate}/s over 16: {_numbers(paced)}")
    return {"closed_loop": closed, "paced": {**paced, "target_rate": args.rate}}


def shoprec_section(root: str, label: str, client: str, args, work: str) -> dict:
    say(f"shoprec serve on {label} ...")
    proc, url, ready_s = start_shoprec(root, work)
    try:
        with urllib.request.urlopen(url + "/health") as r:
            health = json.load(r)
        requests = user_paths(root, None if not args.smoke else args.users_sample)
        load(client, url, requests, 4, min(1.0, args.duration))  # warm-up (not kept)
        runs = serve_runs(client, url, requests, args)
        rss = proc.rss_mb()
    finally:
        proc.stop()
    return {"data": label, "users": health["users"], "ready_s": round(ready_s, 2), "rss_mb": round(rss, 1), **runs}


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_before = os.getloadavg()
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    work = os.path.join(SMOKE_WORK, "api_load") if args.smoke else tempfile.mkdtemp(prefix="shoprec-api-load-")
    os.makedirs(work, exist_ok=True)
    root = args.data_root or smoke_lakehouse()
    report: dict = {
        "bench": "api_load",
        "at": now(),
        "smoke": args.smoke,
        "client": client,
        "k": K,
        "duration_s": args.duration,
    }
    report["shoprec"] = [shoprec_section(root, f"{root} (pipeline output)", client, args, work)]
    if args.synthetic_users:
        big = synthetic_lists(work, args.synthetic_users)
        report["shoprec"].append(
            shoprec_section(big, f"{args.synthetic_users:,} synthetic users' lists", client, args, work)
        )
    if not args.no_baseline:
        say("mlflow models serve of shoprec-hybrid@champion ...")
        bodies = candidate_bodies(root, args.users_sample, args.pool)
        proc, url, ready_s = start_mlflow(root, work)
        try:
            load(client, url, bodies, 1, min(1.0, args.duration))  # warm-up: the first calls trace the graph
            closed = [load(client, url, bodies, c, args.duration) for c in args.connections]
            for r in closed:
                say(f"  {r['connections']:>3} connections: {_numbers(r)}")
            rss = proc.rss_mb()
        finally:
            proc.stop()
        pool = float(np.mean([len(json.loads(b)["dataframe_split"]["data"]) for _, _, b in bodies]))
        report["mlflow"] = {
            "ready_s": round(ready_s, 2),
            "rss_mb": round(rss, 1),
            "mean_pool": round(pool, 1),
            "closed_loop": closed,
        }
        ours = report["shoprec"][0]["closed_loop"]
        report["ratios"] = [
            {
                "connections": a["connections"],
                "requests_per_s": round(a["requests_per_s"] / max(b["requests_per_s"], 1e-9), 2),
                "p50_latency": round(b["p50_ms"] / max(a["p50_ms"], 1e-9), 2) if a["p50_ms"] and b["p50_ms"] else None,
                "p99_latency": round(b["p99_ms"] / max(a["p99_ms"], 1e-9), 2) if a["p99_ms"] and b["p99_ms"] else None,
            }
            for a, b in zip(ours, closed, strict=True)
        ]
    report["machine"] = machine_info(load_before=load_before)
    _print(report)
    write_json(report, json_path(args, "api_load"))
    return report


def _print(report: dict) -> None:
    rows: list[tuple[str, object]] = []
    for section in report["shoprec"]:
        rows.append(
            (
                f"shoprec serve: {section['data']}",
                f"{section['users']:,} users, ready in {section['ready_s']} s, {section['rss_mb']} MB",
            )
        )
        for r in [*section["closed_loop"], section["paced"]]:
            what = f"paced {r['target_rate']}/s, 16 conn" if "target_rate" in r else f"{r['connections']} conn"
            rows.append(
                (
                    f"  {what}",
                    f"{_numbers(r)}  non-2xx {r['non_2xx']}",
                )
            )
    if "mlflow" in report:
        m = report["mlflow"]
        rows.append(
            (
                "mlflow models serve (champion)",
                f"pools of {m['mean_pool']} candidates, ready in {m['ready_s']} s, {m['rss_mb']} MB",
            )
        )
        for r in m["closed_loop"]:
            rows.append(
                (
                    f"  {r['connections']} conn",
                    f"{_numbers(r)}  non-2xx {r['non_2xx']}",
                )
            )
        for r in report["ratios"]:
            rows.append(
                (
                    f"shoprec / mlflow, {r['connections']} conn",
                    f"{r['requests_per_s']}x req/s, p50 {r['p50_latency']}x, p99 {r['p99_latency']}x lower",
                )
            )
    print_rows(rows)


if __name__ == "__main__":
    main()
