"""``shoprec bundles``: association rules, "bought together" lists and basket completion.

    silver.interactions ─► baskets of the history window ─► FPGrowth ─► gold.bundles
        one-item rules ─► best partners per item ─► gold.bundle_partners
        users' recent baskets ─► rules they fire (+ co-occurrence, popular fallbacks)
            ─► re-ordered with the champion hybrid when one is registered
            ─► gold.bundle_recommendations (the schema of gold.recommendations)
    evaluation window ─► next-basket hit rate vs random popular items (MLflow, report)

All three tables are partitioned by as_of; a rerun replaces the partition of all three or
of none.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec import paths
from shoprec.bundles import baskets as B
from shoprec.bundles import complete, evaluate
from shoprec.bundles import rules as R
from shoprec.config import Config
from shoprec.ranking.explain import named
from shoprec.split import TemporalSplit
from shoprec.stages.context import (
    JobContext,
    model_stage,
    optional_as_of,
    resolve_run_split,
)
from shoprec.tables import Tables
from shoprec.tracking import RunLogger

if TYPE_CHECKING:
    from shoprec.hybrid.serving import ServingModel

log = logging.getLogger(__name__)

WRITES = (C.GOLD_BUNDLES, C.GOLD_BUNDLE_PARTNERS, C.GOLD_BUNDLE_RECOMMENDATIONS)
BUNDLES_MODEL = "shoprec-bundles"
EXAMPLES = 8


@dataclass
class BundlesReport:
    as_of: str
    baskets: B.BasketCounts | None = None
    rules: int = 0
    items_with_partners: int = 0
    users_with_baskets: int = 0
    users_with_recommendations: int = 0
    rows_by_source: dict[str, int] = field(default_factory=dict)
    scorer: str = ""
    hit_rates: list[dict] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    table_versions: dict[str, int | None] = field(default_factory=dict)
    seconds: float = 0.0

    def hit_rate(self, source: str, k: int) -> float | None:
        return next((r[C.HIT_RATE] for r in self.hit_rates if r[C.CANDIDATE_SOURCE] == source and r[C.K] == k), None)

    def summary_lines(self) -> list[str]:
        b = self.baskets
        assert b is not None  # counted by the run
        lines = [
            f"bundles (as_of {self.as_of}) finished in {self.seconds:.1f} s",
            f"  baskets {b.baskets:,}: mined {b.mined:,}, left out as too large {b.too_large:,} "
            f"({b.single_item:,} single-item baskets count in support only)",
            f"  gold.bundles: {self.rules:,} rules; gold.bundle_partners: {self.items_with_partners:,} items",
            f"  gold.bundle_recommendations: {self.users_with_recommendations:,} of "
            f"{self.users_with_baskets:,} users with a basket; ordered by {self.scorer}",
            "  rows by source: " + ", ".join(f"{s} {n:,}" for s, n in self.rows_by_source.items()),
        ]
        if self.examples:
            lines.append("  strongest rules (lift, confidence, baskets):")
            lines += [f"    {e}" for e in self.examples]
        if self.hit_rates:
            users = self.hit_rates[0][C.N_USERS]
            lines.append(f"  next-basket hit rate, evaluation window, {users:,} users:")
            for source in dict.fromkeys(r[C.CANDIDATE_SOURCE] for r in self.hit_rates):
                cells = ", ".join(
                    f"@{r[C.K]} {r[C.HIT_RATE]:.4f}" for r in self.hit_rates if r[C.CANDIDATE_SOURCE] == source
                )
                lines.append(f"    {source:<16} {cells}")
        return lines


def run_bundles(
    spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, run: RunLogger
) -> BundlesReport:
    started = time.perf_counter()
    bcfg = cfg.bundles
    report = BundlesReport(split.as_of.isoformat())
    interactions = tables.read(C.SILVER_INTERACTIONS)
    history = B.history_baskets(interactions, split.as_of, bcfg.history_days).persist()
    cached: list[DataFrame] = [history]
    try:
        mined, report.baskets = B.for_mining(history, bcfg.max_basket_items)
        partitions = bcfg.partitions or spark.sparkContext.defaultParallelism
        rules = R.mine_rules(mined, report.baskets.mined, bcfg, partitions).persist()
        basket_items = B.recent_basket_items(history, bcfg.recent_baskets).persist()
        popularity = complete.basket_popularity(history).persist()
        cached += [rules, basket_items, popularity]

        lines = B.product_purchases(split.history(interactions)).where(
            F.col(C.EVENT_TS) >= F.lit(split.as_of_ts) - F.expr(f"INTERVAL {bcfg.history_days} DAYS")
        )
        cands = complete.candidates(basket_items, rules, lines, popularity, bcfg, cfg.candidates)
        cands, model, report.scorer = _deep_scored(spark, cfg, tables, split, interactions, cands)
        recs = complete.ranked(cands, bcfg.per_user, bcfg.deep_weight if model else 0.0)
        names = tables.read(C.SILVER_ITEMS).select(C.ITEM_ID, C.DESCRIPTION)
        out = _stamped(_with_reasons(recs, names), model, split)
        with tables.all_or_nothing(WRITES):
            as_of = {C.AS_OF: split.as_of}
            stamp = F.lit(split.as_of).cast("date").alias(C.AS_OF)
            report.table_versions = {
                C.GOLD_BUNDLES: tables.replace_partition(rules.select("*", stamp), C.GOLD_BUNDLES, as_of).version,
                C.GOLD_BUNDLE_PARTNERS: tables.replace_partition(
                    R.partners(rules, bcfg.per_item).select("*", stamp), C.GOLD_BUNDLE_PARTNERS, as_of
                ).version,
                C.GOLD_BUNDLE_RECOMMENDATIONS: tables.replace_partition(
                    out, C.GOLD_BUNDLE_RECOMMENDATIONS, as_of
                ).version,
            }
        _count(tables, split, basket_items, report)
        report.examples = _examples(tables, split, names)
        report.hit_rates = _hit_rates(tables, cfg, split, interactions, basket_items, popularity)
    finally:
        for df in cached:
            df.unpersist()
    report.seconds = time.perf_counter() - started
    _log(run, report, cfg)
    return report


# ------------------------------------------------------------------------------ scoring
def _deep_scored(
    spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, interactions: DataFrame, cands: DataFrame
) -> tuple[DataFrame, ServingModel | None, str]:
    """(candidates plus ``deep_score`` on the personal tiers, the model, how they are ordered);
    without a champion hybrid, or features for as_of, or a zero weight: the rules' order."""
    from shoprec.hybrid import serving
    from shoprec.hybrid.scoring import scoring_features
    from shoprec.stages import models

    rules_only = "rule confidence (tier: bundle > cooccurrence > popular_basket)"
    if cfg.bundles.deep_weight <= 0:
        return cands, None, rules_only + "; bundles.deep_weight is 0"
    model = models.resolve(
        cfg.hybrid.registered_model, cfg.recommend.model_alias, paths.model_cache(cfg.data_root), split.as_of
    )
    user_features = optional_as_of(tables, C.GOLD_USER_FEATURES, split.as_of)
    item_features = optional_as_of(tables, C.GOLD_ITEM_FEATURES, split.as_of)
    if model is None or user_features is None or item_features is None:
        why = (
            f"no champion hybrid trained by {split.as_of}"
            if model is None
            else f"no gold features for as_of {split.as_of}"
        )
        return cands, None, f"{rules_only}; {why}"
    serving.ship(spark, model)
    personal = cands.where(F.col(C.TIER).isin(*complete.PERSONAL_TIERS)).select(C.USER_ID, C.ITEM_ID)
    features = scoring_features(
        personal, interactions, user_features, item_features, split, cfg.features.holidays, with_text=False
    )
    scores = serving.score(features, model, item_features).select(
        C.USER_ID, C.ITEM_ID, F.col(C.SCORE).alias(C.DEEP_SCORE)
    )
    scored = cands.join(scores, on=[C.USER_ID, C.ITEM_ID], how="left")
    w = cfg.bundles.deep_weight
    return (
        scored,
        model,
        (
            f"{1 - w:.2f} x rule rank + {w:.2f} x {model.name} v{model.version} rank "
            "(tier: bundle > cooccurrence > popular_basket)"
        ),
    )


# ------------------------------------------------------------------------------ output
def _with_reasons(recs: DataFrame, names: DataFrame) -> DataFrame:
    """``reason``: "goes with <item> (+ n more) in 34% of baskets", "bought together with
    <item>", "often bought with other items"."""
    first = F.split(F.col(C.ANCHOR), r" \+ ")
    anchors = recs.withColumn("_first", first[0]).withColumn("_more", F.size(first) - 1)
    labelled = anchors.join(
        F.broadcast(
            names.withColumnRenamed(C.ITEM_ID, "_first").withColumnRenamed(C.DESCRIPTION, "_first_description")
        ),
        on="_first",
        how="left",
    )
    anchor = F.concat(
        named(F.col("_first"), F.col("_first_description")),
        F.when(F.col("_more") > 0, F.concat(F.lit(" + "), F.col("_more").cast("string"), F.lit(" more"))).otherwise(
            F.lit("")
        ),
    )
    share = F.concat(F.round(F.col(C.SOURCE_SCORE) * 100).cast("int").cast("string"), F.lit("%"))
    reason = (
        F.when(
            F.col(C.CANDIDATE_SOURCE) == C.SRC_BUNDLE,
            F.concat(
                F.lit("goes with "), anchor, F.lit(" from your basket (in "), share, F.lit(" of baskets with it)")
            ),
        )
        .when(F.col(C.CANDIDATE_SOURCE) == C.SRC_COOCCURRENCE, F.concat(F.lit("bought together with "), anchor))
        .otherwise(F.lit("often bought with other items"))
    )
    return labelled.withColumn(C.REASON, reason).drop("_first", "_more", "_first_description")


def _stamped(recs: DataFrame, model: ServingModel | None, split: TemporalSplit) -> DataFrame:
    name, version = (model.name, model.version) if model else (BUNDLES_MODEL, split.as_of.isoformat())
    return recs.select(
        F.col(C.USER_ID).cast("string"),
        F.col(C.RANK).cast("int"),
        F.col(C.ITEM_ID).cast("string"),
        F.col(C.SCORE).cast("double"),
        F.col(C.CANDIDATE_SOURCE).cast("string"),
        F.col(C.REASON).cast("string"),
        F.lit(name).alias(C.MODEL_NAME),
        F.lit(version).alias(C.MODEL_VERSION),
        F.lit(split.as_of).cast("date").alias(C.AS_OF),
        F.current_timestamp().alias(C.GENERATED_AT),
    )


def _count(tables: Tables, split: TemporalSplit, basket_items: DataFrame, report: BundlesReport) -> None:
    report.rules = tables.read_as_of(C.GOLD_BUNDLES, split.as_of).count()
    report.items_with_partners = (
        tables.read_as_of(C.GOLD_BUNDLE_PARTNERS, split.as_of).select(C.ITEM_ID).distinct().count()
    )
    recs = tables.read_as_of(C.GOLD_BUNDLE_RECOMMENDATIONS, split.as_of)
    report.users_with_baskets = basket_items.select(C.USER_ID).distinct().count()
    report.users_with_recommendations = recs.select(C.USER_ID).distinct().count()
    by = recs.groupBy(C.CANDIDATE_SOURCE).count().collect()  # small: one row per source
    report.rows_by_source = dict(sorted(((r[C.CANDIDATE_SOURCE], int(r["count"])) for r in by), key=lambda x: -x[1]))


def _examples(tables: Tables, split: TemporalSplit, names: DataFrame) -> list[str]:
    """The strongest one-item rules with some support, named, for a person to read."""
    rules = tables.read_as_of(C.GOLD_BUNDLES, split.as_of).where(F.size(C.ANTECEDENT_ITEMS) == 1)
    strong = rules.orderBy(F.col(C.LIFT).desc(), F.col(C.BASKET_COUNT).desc()).limit(EXAMPLES * 4)
    a = names.select(F.col(C.ITEM_ID).alias("_a"), F.col(C.DESCRIPTION).alias("_da"))
    b = names.select(F.col(C.ITEM_ID).alias(C.CONSEQUENT_ITEM), F.col(C.DESCRIPTION).alias("_db"))
    rows = (
        strong.withColumn("_a", F.col(C.ANTECEDENT_ITEMS)[0])
        .join(a, on="_a", how="left")
        .join(b, on=C.CONSEQUENT_ITEM, how="left")
        .orderBy(F.col(C.LIFT).desc(), F.col(C.BASKET_COUNT).desc(), "_a", C.CONSEQUENT_ITEM)
        .collect()  # small: 4 x EXAMPLES rules
    )
    out, seen = [], set()
    for r in rows:  # one line per pair, not both directions
        pair = frozenset((r["_a"], r[C.CONSEQUENT_ITEM]))
        if pair in seen:
            continue
        seen.add(pair)
        out.append(
            f"{r['_a']} {r['_da'] or ''} -> {r[C.CONSEQUENT_ITEM]} {r['_db'] or ''}: lift {r[C.LIFT]:.1f}, "
            f"confidence {r[C.RULE_CONFIDENCE]:.2f}, {r[C.BASKET_COUNT]:,} baskets"
        )
        if len(out) == EXAMPLES:
            break
    return out


# ------------------------------------------------------------------------------ evaluation
def _hit_rates(
    tables: Tables,
    cfg: Config,
    split: TemporalSplit,
    interactions: DataFrame,
    basket_items: DataFrame,
    popularity: DataFrame,
) -> list[dict]:
    bcfg = cfg.bundles
    window = B.baskets(interactions, split.as_of, split.evaluation_end)
    truth = evaluate.next_baskets(window, basket_items.select(C.USER_ID).distinct()).persist()
    try:
        if truth.limit(1).count() == 0:
            return []
        k = max(bcfg.ks)
        ours = tables.read_as_of(C.GOLD_BUNDLE_RECOMMENDATIONS, split.as_of).select(C.USER_ID, C.RANK, C.ITEM_ID)
        top = complete.popular_candidates(basket_items, popularity, k)
        top_ranked = complete.ranked(top, k).select(C.USER_ID, C.RANK, C.ITEM_ID)
        lists = {
            C.SRC_BUNDLE: ours,
            C.SRC_POPULAR_RANDOM: evaluate.random_popular(basket_items, popularity, bcfg.baseline_pool, k, bcfg.seed),
            C.SRC_POPULAR_BASKET: top_ranked,
        }
        rows = evaluate.hit_rates(lists, truth, bcfg.ks).collect()  # small: sources x ks
    finally:
        truth.unpersist()
    return [r.asDict() for r in rows]


def _log(run: RunLogger, report: BundlesReport, cfg: Config) -> None:
    b = report.baskets
    assert b is not None  # counted by the run
    run.params({"bundles.scorer": report.scorer})  # the bundles.* keys are logged with the resolved config
    metrics = {
        "seconds": report.seconds,
        "baskets": b.baskets,
        "baskets_mined": b.mined,
        "baskets_too_large": b.too_large,
        "rules": report.rules,
        "items_with_partners": report.items_with_partners,
        "users_with_baskets": report.users_with_baskets,
        "users_with_recommendations": report.users_with_recommendations,
        **{f"rows.{s}": n for s, n in report.rows_by_source.items()},
    }
    for r in report.hit_rates:
        metrics[f"hit_rate_at_{r[C.K]}.{r[C.CANDIDATE_SOURCE]}"] = r[C.HIT_RATE]
    run.metrics(metrics)
    if report.examples:
        run.dict({"examples": report.examples}, "bundles/examples.json")


# ------------------------------------------------------------------------------ the stage
def bundles_stage(ctx: JobContext, as_of: date | None = None, split: TemporalSplit | None = None) -> BundlesReport:
    """``shoprec bundles``: FPGrowth rules, partners per item, basket completion per user."""
    return model_stage(ctx, "bundles", split or resolve_run_split(ctx, as_of), run_bundles)
