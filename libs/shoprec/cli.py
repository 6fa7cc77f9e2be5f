"""The ``shoprec`` command line.

Errors are one sentence plus a hint; the traceback only with ``--verbose``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import date
from typing import TYPE_CHECKING

from shoprec import __version__
from shoprec.config import MaskingFilter, mask_text
from shoprec.errors import ShoprecError

if TYPE_CHECKING:
    from shoprec.config import Config

EPILOG = """examples:
  shoprec pipeline                                  run everything on the shipped Online Retail data
  shoprec ingest --input data/online-retail/online_retail.csv.gz
  shoprec generate --events 10000000 --out /tmp/events
  shoprec ingest --set ingest.source=event_log --input /tmp/events/events --catalog /tmp/events/catalog.csv
  shoprec bundles --as-of 2011-11-01               bought-together rules and basket completions
  shoprec time-report                               seasonality across the as_of dates recommended
  shoprec ui                                        MLflow UI on http://127.0.0.1:5000
"""


def _as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--as-of {text!r} is not a date like 2011-11-01") from exc


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("common options")
    g.add_argument(
        "--env",
        default=os.environ.get("SHOPREC_ENV", "local"),
        help="config overlay: local (embedded default) or cluster (default: %(default)s)",
    )
    g.add_argument(
        "--data-root",
        default=None,
        help="where tables and the MLflow store live (default: ./lakehouse or $SHOPREC_DATA_ROOT)",
    )
    g.add_argument("--as-of", type=_as_of, default=None, help="training cutoff date YYYY-MM-DD")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set spark.master=local[2] (repeatable)",
    )
    g.add_argument("--conf-dir", default=None, help="config folder (default: the project's conf/)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoprec",
        description="shoprec: distributed recommendations for e-commerce on Spark, Delta, MLflow and Horovod.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"shoprec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)

    p = sub.add_parser(
        "ingest",
        help="load shop data into bronze/silver Delta tables (quarantining bad rows)",
        description="Ingest Online Retail invoices or a generic event log into Delta tables. "
        "Every input row ends up in silver or in quarantine.<source> with a reason; files "
        "already ingested (same content) are skipped.",
        epilog="examples:\n  shoprec ingest\n  shoprec ingest --input orders-2011-12.csv.gz\n"
        "  shoprec ingest --source event_log --input events/ --catalog catalog.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--input",
        action="append",
        default=None,
        metavar="PATH",
        help="input file, folder or glob (repeatable; default: ingest.inputs from config)",
    )
    p.add_argument(
        "--source",
        choices=["online_retail", "event_log"],
        default=None,
        help="adapter (default: ingest.source from config)",
    )
    p.add_argument("--catalog", default=None, metavar="PATH", help="item catalog for event logs")
    _common(p)

    p = sub.add_parser(
        "generate",
        help="write a synthetic event log with realistic skew",
        description="Write a synthetic e-commerce event log (power-law popularity, sessions, "
        "time-of-day and weekday patterns, devices, countries) plus an item catalog.",
        epilog="example:\n  shoprec generate --users 200000 --items 20000 --events 10000000 --out /tmp/ev",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--items", type=int, default=None)
    p.add_argument("--events", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--format", choices=["parquet", "csv", "jsonl"], default=None)
    p.add_argument("--bad-rate", type=float, default=None, help="share of deliberately broken rows (default 0)")
    p.add_argument("--out", required=True, help="output folder")
    _common(p)

    for name, help_text, desc in (
        (
            "features",
            "compute gold user/item/context features and implicit confidence",
            "Compute gold.user_features, gold.item_features (with description text vectors), gold.context, "
            "gold.confidence and the time profiles (gold.item_time_profiles: month index, seasonal lift, hour and "
            "weekday shares; gold.user_time_profiles) from the history before --as-of.",
        ),
        (
            "train-als",
            "tune and train ALS, register it, write its factors and top-N candidates",
            "Grid-search Spark ALS (implicit) on NDCG@10 of the validation window, train the best on the whole "
            "history, register it as shoprec-als, write gold factors and ALS candidates (blocked top-N).",
        ),
        (
            "train-hybrid",
            "train the deep hybrid model with Horovod, register it, write its candidates",
            "Build training examples in Spark (negatives sampled by popularity, point-in-time history, item "
            "content, context), train the NeuMF-style hybrid model on hybrid.num_proc Horovod processes "
            "(horovodrun with Gloo locally, horovod.spark.run on a cluster), log it to MLflow, register it as "
            "shoprec-hybrid (champion only when its validation NDCG@10 beats the champion's) and write its "
            "re-ranked candidates.",
        ),
        (
            "train-ranker",
            "train the learned second-stage ranker (XGBoost on Spark), register it",
            "At the validation start, build the candidate pool of every source for the validation window's "
            "buyers, compute point-in-time features from the history before it (source ranks and scores, "
            "RFM, item popularity and trend, price, country, season and time-of-day fit), label what each "
            "user bought in the window, train a gradient-boosted ranker with XGBoost's SparkXGBRanker "
            "(rank:ndcg, one query group per user, early stopping on held-out users), log its validation "
            "NDCG@10 against the pool's own orders and its feature importance to MLflow, and register it as "
            "shoprec-ranker (champion only when its validation NDCG@10 beats the champion's). Not used by "
            "shoprec recommend yet.",
        ),
        (
            "bundles",
            "mine bought-together rules (FPGrowth) and complete users' recent baskets",
            "Mine association rules over the baskets (invoices, or sessions for event logs) of the history "
            "window with Spark MLlib FPGrowth (bundles.min_support, min_confidence, min_lift), write them to "
            "gold.bundles, the best partners per item to gold.bundle_partners and, for every user with a basket, "
            "items that complete their recent baskets to gold.bundle_recommendations (ordered with the champion "
            "hybrid model when one is registered). Prints the strongest rules and the next-basket hit rate "
            "against random popular items.",
        ),
        (
            "recommend",
            "write gold.recommendations: fused, re-ranked, explained, with cold-start lists",
            "Gather candidates per user (the ALS top-N of gold.candidates, reorders, bought-together partners, "
            "content neighbours, popular in the user's country and season, rules of gold.bundles their recent "
            "baskets fire), score them with "
            "the champion hybrid model inside Spark, fuse w x ALS + (1 - w) x deep, add the seasonal lift and the "
            "hour/weekday fit (w and both context weights chosen on the validation window), diversify (MMR), "
            "explain each row and replace the as_of partition of gold.recommendations. Users without history get "
            "their country's list; users not seen yet get gold.cold_start_lists (one list per country, "
            "list_key '*' for any other).",
        ),
        (
            "evaluate",
            "score ALS, the hybrid, the recommendations and the baselines on the evaluation window",
            "Compute the baselines (repeat: buy it again, popular, popular per country / hour, co-occurrence) "
            "and every metric of EVALUATION.md at K = 5, 10, 20 per source (ALS, hybrid, gold.recommendations "
            "as 'recommend', gold.bundle_recommendations as 'bundles', the baselines) and user segment; log "
            "them to MLflow and print the table.",
        ),
    ):
        p = sub.add_parser(
            name,
            help=help_text,
            description=desc,
            epilog=f"example:\n  shoprec {name} --as-of 2011-11-01",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p)

    p = sub.add_parser(
        "pipeline",
        help="run the whole pipeline end to end (ingest, features, ALS, hybrid, bundles, recommend, evaluate)",
        description="Run every stage in order (ingest, features, train-als, train-hybrid, bundles, "
        "recommend, evaluate) under one MLflow run, each stage a nested run, and print the tables "
        "written, the registered models and their aliases, the evaluation and where the MLflow "
        "store is. Stages can also be run one by one with the commands above.",
        epilog="examples:\n  shoprec pipeline                          the shipped Online Retail data, "
        "as of 2011-11-01\n  shoprec pipeline --data-root /tmp/lh --as-of 2011-06-01\n"
        "  shoprec pipeline --set hybrid.epochs=2 --set als.tune=false   a quicker run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)

    p = sub.add_parser(
        "time-report",
        help="seasonal profiles and how items move in the recommendations across as_of dates",
        description="For a few example items (the pre-Christmas and summer items that hold the most "
        "slots and the steadiest best sellers, or --items), plot the monthly sales profile and "
        "their share of users' lists in every as_of partition of gold.recommendations; also the "
        "share of slots held by items that peak in "
        "September-December. Plots and JSON go to <data-root>/_reports/time and to an MLflow run.",
        epilog="example:\n  shoprec pipeline --as-of 2011-06-01 && shoprec pipeline --as-of 2011-11-01\n"
        "  shoprec time-report --items 23084 85123A",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--items", nargs="+", default=None, help="item ids to follow (default: chosen from the profiles)")
    p.add_argument(
        "--min-lines",
        type=int,
        default=100,
        help="purchase lines an item needs to be an example or count as seasonal (default 100)",
    )
    _common(p)

    p = sub.add_parser(
        "maintain",
        help="compact (OPTIMIZE, ZORDER), vacuum and set properties of the Delta tables",
        description="For every Delta table under --data-root (or maintain.tables): set the table "
        "properties (log retention, deleted-file retention, checkpoint interval, Change Data Feed on "
        "maintain.change_data_feed), OPTIMIZE it (ZORDER BY maintain.zorder_by, e.g. user_id for "
        "gold.recommendations), then VACUUM with maintain.vacuum_retention_hours: every version "
        "committed inside that window stays readable. Prints and logs file counts before/after.",
        epilog="examples:\n  shoprec maintain\n  shoprec maintain --set maintain.tables=[gold.recommendations]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)

    p = sub.add_parser(
        "stream",
        help="ingest events as they land in stream.landing or arrive on a Kafka topic (Spark Structured Streaming)",
        description="Watch stream.landing (default <data-root>/_landing/events) and ingest each new "
        "event-log file once, or read the Kafka topic stream.kafka_topic (--source kafka: one "
        "message, one event), micro-batch by micro-batch, with the batch ingest's validation, "
        "quarantine and exactly-once commits; a stream killed mid-batch completes that batch on "
        "restart. Write files elsewhere and rename them in.",
        epilog="examples:\n  shoprec stream\n  shoprec stream --available-now\n"
        "  shoprec stream --set stream.landing=/data/incoming --set stream.trigger_seconds=1\n"
        "  shoprec stream --source kafka --set stream.kafka_bootstrap_servers=broker:9092",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--available-now",
        action="store_true",
        help="process every file or message there now, then stop (backfills, tests)",
    )
    p.add_argument(
        "--source",
        dest="stream_source",
        choices=["landing", "kafka"],
        default=None,
        help="where events come from (default: stream.source, landing)",
    )
    _common(p)

    p = sub.add_parser(
        "serve",
        help="serve recommendations, bundles and similar items over HTTP (127.0.0.1:8000)",
        description="Load the newest gold snapshot of --data-root (gold.recommendations, "
        "gold.live_recommendations, gold.cold_start_lists, gold.bundle_partners, item features) into "
        "memory and answer HTTP requests, re-ranked for the request's time and the user's session; new "
        "Delta versions are picked up without a restart. POST /v1/events lands events for shoprec stream. "
        "OpenAPI docs at /docs. Binds to loopback unless --host says otherwise (docs/serving.md).",
        epilog="examples:\n  shoprec serve\n  shoprec serve --port 8080 --workers 2\n"
        "  curl 'http://127.0.0.1:8000/v1/users/12347/recommendations?k=5&at=2011-12-05T10:00:00'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default=None, help="address to bind (default serve.host: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default serve.port: 8000)")
    p.add_argument("--workers", type=int, default=None, help="uvicorn worker processes (default serve.workers: 1)")
    _common(p)

    p = sub.add_parser(
        "ui",
        help="serve the MLflow UI for this data root on 127.0.0.1",
        description="Start the MLflow UI on 127.0.0.1 for the tracking store of --data-root.",
    )
    p.add_argument("--port", type=int, default=5000)
    _common(p)
    return parser


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` and the options that stand for config keys, as overrides."""
    overrides = list(args.overrides)
    if getattr(args, "source", None):
        overrides.append(f"ingest.source={args.source}")
    if getattr(args, "catalog", None):
        overrides.append(f"ingest.catalog={args.catalog}")
    if getattr(args, "stream_source", None):
        overrides.append(f"stream.source={args.stream_source}")
    if args.command == "serve":
        overrides += [
            f"serve.{k}={getattr(args, k)}" for k in ("host", "port", "workers") if getattr(args, k) is not None
        ]
    return overrides


def _load(args: argparse.Namespace) -> Config:
    from shoprec.config import load_config

    return load_config(args.env, _overrides(args), args.conf_dir, args.data_root)


def _run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.command == "ui":
        return _ui(cfg, args.port)
    if args.command == "generate":
        return _generate(cfg, args)
    if args.command == "serve":
        from shoprec.serving.server import serve

        # Worker processes load the same config again: what it was loaded from.
        return serve(
            cfg,
            {"env": args.env, "overrides": _overrides(args), "conf_dir": args.conf_dir, "data_root": args.data_root},
        )
    from shoprec.stages import (
        bundles,
        evaluate,
        features,
        recommend,
        train_als,
        train_hybrid,
        train_ranker,
    )
    from shoprec.stages.context import JobContext
    from shoprec.stages.ingest import ingest_stage
    from shoprec.stages.maintain import maintain_stage
    from shoprec.stages.pipeline import pipeline_stage
    from shoprec.stages.stream import stream_stage
    from shoprec.stages.time_report import time_report_stage

    ctx = JobContext.create(cfg)
    if args.command == "ingest":
        inputs = [os.path.abspath(p) for p in args.input] if args.input else None
        ingest_stage(ctx, inputs)
    elif args.command == "pipeline":
        pipeline_stage(ctx, args.as_of)
    elif args.command == "maintain":
        maintain_stage(ctx)
    elif args.command == "stream":
        stream_stage(ctx, args.available_now)
    elif args.command == "time-report":
        time_report_stage(ctx, args.items, args.min_lines)
    else:
        stage = {
            "features": features.features_stage,
            "train-als": train_als.train_als_stage,
            "train-hybrid": train_hybrid.train_hybrid_stage,
            "train-ranker": train_ranker.train_ranker_stage,
            "recommend": recommend.recommend_stage,
            "bundles": bundles.bundles_stage,
            "evaluate": evaluate.evaluate_stage,
        }[args.command]
        stage(ctx, args.as_of)
    return 0


def _generate(cfg: Config, args: argparse.Namespace) -> int:
    from shoprec.ingest.generator import generate

    g = cfg.generate
    result = generate(
        os.path.abspath(args.out),
        users=args.users or g.users,
        items=args.items or g.items,
        events=args.events or g.events,
        seed=g.seed if args.seed is None else args.seed,
        fmt=args.format or g.format,
        start_date=g.start_date,
        days=g.days,
        events_per_file=g.events_per_file,
        bad_row_rate=g.bad_row_rate if args.bad_rate is None else args.bad_rate,
    )
    print(
        f"wrote {result.events:,} events ({result.bad_rows:,} deliberately bad) for {result.users:,} users "
        f"and {result.items:,} items in {result.seconds:.1f} s "
        f"({result.events / max(result.seconds, 1e-9):,.0f} events/s)"
    )
    print(f"  events:  {os.path.dirname(result.event_files[0])}  ({len(result.event_files)} files)")
    print(f"  catalog: {result.catalog_file}")
    return 0


def _ui(cfg: Config, port: int) -> int:
    import shutil

    from shoprec.tracking import configure, ui_command

    configure(cfg)  # create the store so the UI opens on an initialised database
    cmd = ui_command(cfg, port)
    cmd[0] = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    print(f"MLflow UI for {cfg.data_root}: http://127.0.0.1:{port}  (Ctrl-C stops it)", flush=True)
    # Become the server process, so Ctrl-C and kill reach it directly.
    os.execv(cmd[0], cmd)  # does not return


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskingFilter())
    for noisy in ("py4j", "alembic", "urllib3", "matplotlib", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.verbose:
        # TensorFlow's C++ start-up notes (oneDNN, CPU features) from every Python worker
        # that loads the model; workers inherit this environment.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return _run(args)
    except ShoprecError as exc:
        if args.verbose:
            raise
        # Errors quote values and URIs as given: their credentials are masked here, once.
        print(f"shoprec {args.command}: error: {mask_text(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {mask_text(exc.hint)}", file=sys.stderr)
        return 2
    except Exception as exc:  # unexpected: still one line unless --verbose
        if args.verbose:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"shoprec {args.command}: unexpected error: {type(exc).__name__}: {mask_text(first)}", file=sys.stderr)
        print("  hint: rerun with --verbose for the full traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
