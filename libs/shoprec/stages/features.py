"""``shoprec features``: gold feature tables for one cutoff (``as_of``).

    silver.interactions ─► split.history (events strictly before as_of)
        ├─► gold.item_features   (sales stats, price band, trend, text vectors + clusters)
        ├─► gold.user_features   (RFM, baskets, returns, country, category/price-band mix, hours)
        ├─► gold.context         (hour, weekday, month, season, days to holiday, country, device)
        ├─► gold.confidence      (time-decayed implicit feedback per (user, item))
        └─► gold.item_time_profiles, gold.user_time_profiles (month index, seasonal lift,
                                   hour / weekday shares: what re-ranking reads)
    silver.items ─► item content only (description, category), never its counters

Every table is partitioned by ``as_of``; a rerun for the same cutoff replaces that
partition, and a failure rolls every table back (``Tables.all_or_nothing``). Row counts
and per-column null rates go to MLflow as ``<table>.rows`` and ``<table>.null_rate.<col>``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import Config
from shoprec.errors import ShoprecError
from shoprec.features import time_profiles as TP
from shoprec.features.confidence import implicit_confidence
from shoprec.features.context import context_table
from shoprec.features.item import fit_item_text_model, item_content, item_features
from shoprec.features.user import user_features
from shoprec.split import TemporalSplit, purchases
from shoprec.stages.context import JobContext, model_stage, resolve_run_split
from shoprec.tables import Tables
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)

WRITES = (
    C.GOLD_ITEM_FEATURES,
    C.GOLD_USER_FEATURES,
    C.GOLD_CONTEXT,
    C.GOLD_CONFIDENCE,
    C.GOLD_ITEM_TIME_PROFILES,
    C.GOLD_USER_TIME_PROFILES,
)


@dataclass(frozen=True)
class TableStats:
    """What one gold table got for this cutoff: rows, version, null rate per column."""

    name: str
    rows: int
    version: int | None
    null_rates: dict[str, float]
    seconds: float


@dataclass
class FeaturesReport:
    as_of: str
    tables: list[TableStats] = field(default_factory=list)
    vocabulary_size: int = 0
    text_clusters: int = 0
    seconds: float = 0.0

    def stats(self, name: str) -> TableStats:
        return next(t for t in self.tables if t.name == name)

    def summary_lines(self) -> list[str]:
        lines = [f"features (as_of {self.as_of}) finished in {self.seconds:.1f} s"]
        for t in self.tables:
            noisy = sorted(((r, c) for c, r in t.null_rates.items() if r > 0), reverse=True)[:3]
            nulls = ", ".join(f"{c} {r:.1%}" for r, c in noisy) or "none"
            lines.append(
                f"  {t.name:<20} {t.rows:>10,} rows  version {t.version}  {t.seconds:6.1f} s  most nulls: {nulls}"
            )
        lines.append(f"  text model: {self.vocabulary_size:,} words, {self.text_clusters} clusters")
        return lines


def run_features(
    spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, run: RunLogger
) -> FeaturesReport:
    """Compute and write the four gold feature tables for ``split.as_of``.

    Raises ``ShoprecError`` when the history before ``as_of`` holds no event.
    """
    started = time.perf_counter()
    interactions = tables.read(C.SILVER_INTERACTIONS)
    if split.history(interactions).limit(1).count() == 0:
        raise ShoprecError(
            f"{C.SILVER_INTERACTIONS} has no event before as_of {split.as_of}",
            hint="pass a later --as-of or ingest older data",
        )
    items = tables.read(C.SILVER_ITEMS) if tables.exists(C.SILVER_ITEMS) else None
    fcfg = cfg.features
    report = FeaturesReport(split.as_of.isoformat())
    with tables.all_or_nothing(WRITES):
        content = item_content(interactions, items, split).persist()
        try:
            text_model = fit_item_text_model(content, fcfg.text)
            report.vocabulary_size, report.text_clusters = text_model.vocabulary_size, text_model.clusters
            items_df = item_features(interactions, items, split, fcfg, text_model, content)
            report.tables.append(_write(tables, items_df, C.GOLD_ITEM_FEATURES, split))
        finally:
            content.unpersist()
        # User mixes read the item table just written: no second text transform.
        written_items = tables.read_as_of(C.GOLD_ITEM_FEATURES, split.as_of)
        users_df = user_features(interactions, split, written_items, fcfg.price_bands)
        report.tables.append(_write(tables, users_df, C.GOLD_USER_FEATURES, split))
        report.tables.append(_write(tables, context_table(interactions, split, fcfg), C.GOLD_CONTEXT, split))
        report.tables.append(_write(tables, implicit_confidence(interactions, split, fcfg), C.GOLD_CONFIDENCE, split))
        # The profiles re-ranking reads (recommend computes them again for its validation cutoff).
        bought = purchases(split.history(interactions))
        rr = cfg.recommend.rerank
        item_profiles = TP.item_time_profiles(bought, split.as_of, rr.season_days, rr.season_min_lines)
        report.tables.append(_write(tables, item_profiles, C.GOLD_ITEM_TIME_PROFILES, split))
        report.tables.append(_write(tables, TP.user_time_profiles(bought), C.GOLD_USER_TIME_PROFILES, split))
    report.seconds = time.perf_counter() - started
    _log(run, report)
    return report


def _write(tables: Tables, df: DataFrame, name: str, split: TemporalSplit) -> TableStats:
    """Replace the ``as_of`` partition of ``name`` with ``df``; measure what landed."""
    t0 = time.perf_counter()
    stamped = df.select(F.lit(split.as_of).cast("date").alias(C.AS_OF), *df.columns)
    version = tables.replace_partition(stamped, name, {C.AS_OF: split.as_of}).version
    seconds = time.perf_counter() - t0
    rows, null_rates = _null_rates(tables.read_as_of(name, split.as_of).drop(C.AS_OF))
    log.info("%s: %d rows for as_of %s (version %s, %.1f s)", name, rows, split.as_of, version, seconds)
    return TableStats(name, rows, version, null_rates, seconds)


def _null_rates(df: DataFrame) -> tuple[int, dict[str, float]]:
    """Row count and the share of nulls per column, in one aggregation over the written rows."""
    aggs = [F.count(F.lit(1)).alias("_rows")]
    aggs += [F.count(F.when(F.col(c).isNull(), True)).alias(c) for c in df.columns]
    row = df.agg(*aggs).first()
    assert row is not None  # a global aggregate: one row
    rows = int(row["_rows"])
    return rows, {c: (row[c] / rows if rows else 0.0) for c in df.columns}


def _log(run: RunLogger, report: FeaturesReport) -> None:
    metrics: dict[str, float] = {
        "seconds": report.seconds,
        "text.vocabulary_size": report.vocabulary_size,
        "text.clusters": report.text_clusters,
    }
    for t in report.tables:
        short = t.name.split(".", 1)[1]
        metrics[f"{short}.rows"] = t.rows
        metrics[f"{short}.seconds"] = t.seconds
        metrics.update({f"{short}.null_rate.{c}": r for c, r in t.null_rates.items()})
    run.metrics(metrics)
    run.dict(
        {t.name: {"rows": t.rows, "version": t.version, "null_rates": t.null_rates} for t in report.tables},
        "features/tables.json",
    )


# ------------------------------------------------------------------------------ the stage
def features_stage(ctx: JobContext, as_of: date | None = None, split: TemporalSplit | None = None) -> FeaturesReport:
    """``shoprec features``: silver -> gold user/item/context features and implicit confidence."""
    return model_stage(ctx, "features", split or resolve_run_split(ctx, as_of), run_features)
