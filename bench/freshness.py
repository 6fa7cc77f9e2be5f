"""Freshness: how long from a purchase POSTed to the API until that user's list includes it.

    python bench/freshness.py --data-root /tmp/lh-or               # after `shoprec pipeline` there
    python bench/freshness.py --data-root DIR --events 200 --trigger 1
    python bench/freshness.py --smoke                               # the smoke lakehouse, 1 event

Starts ``shoprec serve`` (refreshing every 0.5 s) and ``shoprec stream`` (trigger ``--trigger``
seconds) on a copy of the data root, then for each of ``--events`` random users with a list:
POSTs a purchase of one of that user's bought-together partners (event time: now), checks
the very next request (the session effect: that item's partners lead), then polls the list
every 50 ms until it is served ``live`` with ``events_through`` at or after the purchase.
Reports the median and p95 of that time, and how many never arrived within ``--timeout``.
Purchases are posted one at a time, ``--gap`` seconds apart, each waited for before the next
(``--rate 0``), or ``--rate`` a second whatever is pending (several then share a micro-batch,
as under real traffic): the time to a live list, not the stream's throughput
(bench/stream_throughput.py).
Writes bench/results/freshness.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import time
import urllib.request
from datetime import UTC, datetime

import numpy as np

from _common import (
    SMOKE_WORK,
    add_output_args,
    as_set_args,
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

SMOKE = {"events": 1, "timeout": 600.0, "gap": 0.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="a data root after `shoprec pipeline` (required unless --smoke)")
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--trigger", type=float, default=1.0, help="stream.trigger_seconds")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one event's live list")
    p.add_argument(
        "--gap", type=float, default=0.5, help="--rate 0: seconds between one event's arrival and the next post"
    )
    p.add_argument(
        "--rate", type=float, default=0.0, help="purchases posted per second, whatever is pending (0: one at a time)"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides for both")
    add_output_args(p)
    args = smoke_defaults(p, p.parse_args(argv), **SMOKE)
    if args.data_root is None and not args.smoke:
        p.error("--data-root is required (or --smoke)")
    return args


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def _post(url: str, body: object) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def _choices(root: str, n: int, seed: int) -> list[tuple[str, str, str | None]]:
    """(user, item to buy, its first partner) for ``n`` random users with a batch list; without
    bought-together partners (a shop of single-item baskets), an item of the user's list and None."""
    from deltalake import DeltaTable

    recs = DeltaTable(os.path.join(root, "gold", "recommendations")).to_pandas()
    users = sorted(set(recs["user_id"]))
    path = os.path.join(root, "gold", "bundle_partners")
    partners = DeltaTable(path).to_pandas() if os.path.isdir(os.path.join(path, "_delta_log")) else None
    firsts = [] if partners is None else partners[partners["rank"] == 1][["item_id", "partner_item_id"]].values.tolist()
    rng = random.Random(seed)
    chosen = rng.sample(users, min(n, len(users)))
    if firsts:
        return [(u, *rng.choice(firsts)) for u in chosen]
    first_item = recs.sort_values("rank").groupby("user_id")["item_id"].first()
    return [(u, str(first_item[u]), None) for u in chosen]


def _live_at(body: dict) -> datetime | None:
    if body.get("served_from") != "live" or not body.get("events_through"):
        return None
    return datetime.fromisoformat(body["events_through"])


def _share(flags: list[bool | None]) -> float | None:
    """Share of True among the events that had a partner to look for (None: none had)."""
    known = [f for f in flags if f is not None]
    return round(sum(known) / len(known), 3) if known else None


def _purchase(url: str, user: str, item: str, partner: str | None) -> tuple[datetime, float, bool | None]:
    """POST one purchase (event time: now, to the second); (its time, when posted, whether the
    very next request shows the session effect: the item's first partner leads)."""
    bought = datetime.now(UTC).replace(microsecond=0)
    event = {"user_id": user, "item_id": item, "event_type": "purchase", "quantity": 1, "price": 1.0}
    event["event_time"] = bought.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    status, _ = _post(url + "/v1/events", [event])
    assert status == 202, status
    nxt = _get(f"{url}/v1/users/{user}/recommendations?k=10")
    effect = None if partner is None else bool(nxt["items"]) and nxt["items"][0]["item_id"] == partner
    return bought, t0, effect


def _covered(url: str, user: str, bought: datetime) -> bool:
    through = _live_at(_get(f"{url}/v1/users/{user}/recommendations?k=10"))
    return through is not None and through >= bought.replace(tzinfo=through.tzinfo or UTC)


def _measure(url: str, stream: subprocess.Popen, work: str, choices: list, args) -> list[dict]:
    """Post the purchases and poll each one's list every 50 ms until it is live and covers it.

    ``--rate`` 0: one at a time, each waited for (``--gap`` between). ``--rate`` r: a purchase
    every 1/r s whatever is pending (the stream then takes several per batch, as under real
    traffic); each one's time is its own, from its POST to its list covering it."""
    pending: dict[int, tuple[str, datetime, float]] = {}
    results: list[dict] = [{} for _ in choices]
    start, posted = time.perf_counter(), 0
    while posted < len(choices) or pending:
        if stream.poll() is not None:
            raise SystemExit(f"shoprec stream exited ({stream.returncode}); see {work}/stream.log")
        due = posted < len(choices) and (
            (args.rate > 0 and time.perf_counter() - start >= posted / args.rate) or (args.rate <= 0 and not pending)
        )
        if due:
            user, item, partner = choices[posted]
            bought, t0, effect = _purchase(url, user, item, partner)
            results[posted] = {"user": user, "seconds": None, "session_effect": effect}
            pending[posted] = (user, bought, t0)
            posted += 1
        for n, (user, bought, t0) in list(pending.items()):
            waited = time.perf_counter() - t0
            if _covered(url, user, bought) or waited >= args.timeout:
                results[n]["seconds"] = waited if waited < args.timeout else None
                del pending[n]
                arrived, effect = results[n]["seconds"], results[n]["session_effect"]
                took = "never" if arrived is None else f"{arrived:.1f} s"
                say(f"  event {n + 1}: {took}, session effect {effect}")
                if args.rate <= 0:
                    time.sleep(args.gap)
        time.sleep(0.05)
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_before = os.getloadavg()
    source = args.data_root or smoke_lakehouse()
    work = os.path.join(SMOKE_WORK, "freshness")
    shutil.rmtree(work, ignore_errors=True)
    root = os.path.join(work, "lakehouse")
    say(f"copying {source} (not timed) ...")
    shutil.copytree(source, root)
    sets = [*args.overrides, f"stream.trigger_seconds={args.trigger}", "serve.refresh_seconds=0.5"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = {name: open(os.path.join(work, f"{name}.log"), "w") for name in ("serve", "stream")}  # noqa: SIM115
    serve = subprocess.Popen(
        [shoprec_bin(), "serve", "--data-root", root, "--port", str(port), *as_set_args(sets)],
        stdout=logs["serve"],
        stderr=subprocess.STDOUT,
        env=bench_env(),
    )
    stream = subprocess.Popen(
        [shoprec_bin(), "stream", "--data-root", root, *as_set_args(sets)],
        stdout=logs["stream"],
        stderr=subprocess.STDOUT,
        env=bench_env(),
    )
    results: list[dict] = []
    try:
        wait_ready(url + "/health", serve, os.path.join(work, "serve.log"), timeout=120)
        results = _measure(url, stream, work, _choices(root, args.events, args.seed), args)
    finally:
        for p in (serve, stream):
            p.terminate()
        for p in (serve, stream):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for fh in logs.values():
            fh.close()
    seconds = np.asarray([r["seconds"] for r in results if r["seconds"] is not None])
    report = {
        "bench": "freshness",
        "at": now(),
        "smoke": args.smoke,
        "events": len(results),
        "arrived": int(seconds.size),
        "trigger_seconds": args.trigger,
        "rate_per_s": args.rate,
        "median_s": round(float(np.median(seconds)), 2) if seconds.size else None,
        "p95_s": round(float(np.percentile(seconds, 95)), 2) if seconds.size else None,
        "max_s": round(float(seconds.max()), 2) if seconds.size else None,
        "session_effect_share": _share([r["session_effect"] for r in results]),
        "results": results,
        "machine": machine_info(load_before=load_before),
    }
    print_rows(
        [
            ("purchases posted", report["events"]),
            ("in a live list within the timeout", report["arrived"]),
            ("seconds to the live list, median", report["median_s"]),
            ("seconds to the live list, p95", report["p95_s"]),
            (
                "session effect on the next request",
                "n/a (no partners)"
                if report["session_effect_share"] is None
                else f"{report['session_effect_share']:.0%}",
            ),
        ]
    )
    write_json(report, json_path(args, "freshness"))
    return report


if __name__ == "__main__":
    main()
