"""``shoprec recommend``: gold.recommendations for every user seen before as_of, plus cold-start lists.

    silver + gold features (as_of) ──► candidate sources per user (ALS, reorders, bought
    gold.als_*_factors                  together, content neighbours, popular in context,
    gold.bundles (as_of)                rules fired by the user's recent baskets)
    champion hybrid (registry alias) ─► deep score in Spark (model shipped to executors)
        ─► per-user normalised fusion w x ALS + (1 - w) x deep   (w chosen on the validation window)
        ─► + season weight x seasonal lift + time weight x hour/weekday fit (weights chosen on validation)
        ─► rebuy policy, light users, MMR diversity, new-item cap ─► K per user
        ─► reasons ─► gold.recommendations (as_of partition, replaced atomically)
    users without purchases: their country's context-popular list; one list per country under
    user_id "cold-start:<country>" (and "cold-start:*" for anyone else) for users not yet seen.
"""
from __future__ import annotations

from datetime import date

import logging
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.config import Config, RerankConfig
from shoprec.evaluation.truth import ground_truth
from shoprec.hybrid.scoring import scoring_features
from shoprec.candidates import sources as S
from shoprec.hybrid import serving
from shoprec.ranking import explain, fusion, rerank
from shoprec.split import TemporalSplit, purchases
from shoprec.tables import Tables
from shoprec.tracking import RunLogger
from shoprec.stages.context import JobContext, model_stage, required_as_of, resolve_run_split
from shoprec import paths

log = logging.getLogger(__name__)

WRITES = (C.GOLD_RECOMMENDATIONS,)
COLD_START_MODEL = "shoprec-cold-start"
RECOMMENDATIONS_SCHEMA = T.StructType([
    T.StructField(C.USER_ID, T.StringType()), T.StructField(C.RANK, T.IntegerType()),
    T.StructField(C.ITEM_ID, T.StringType()), T.StructField(C.SCORE, T.DoubleType()),
    T.StructField(C.CANDIDATE_SOURCE, T.StringType()), T.StructField(C.REASON, T.StringType()),
    T.StructField(C.MODEL_NAME, T.StringType()), T.StructField(C.MODEL_VERSION, T.StringType()),
    T.StructField(C.AS_OF, T.DateType()), T.StructField(C.GENERATED_AT, T.TimestampType()),
])


@dataclass
class RecommendReport:
    as_of: str
    k: int
    weight: float
    weight_note: str
    model: str
    users: int = 0
    cold_lists: int = 0
    rows: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    search: fusion.WeightSearch | None = None
    context: rerank.ContextSearch | None = None
    context_note: str = ""
    bundle_note: str = ""
    table_version: int | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [f"recommend (as_of {self.as_of}) finished in {self.seconds:.1f} s "
                 f"({', '.join(f'{k} {v:.1f} s' for k, v in self.stage_seconds.items())})",
                 f"  scoring model: {self.model}",
                 f"  fusion weight w = {self.weight:.2f} ({self.weight_note})"]
        if self.search:
            lines += self.search.lines()
        lines.append(f"  context weights: {self.context_note}")
        if self.context:
            lines += self.context.lines()
        lines.append(f"  bundle source: {self.bundle_note}")
        lines.append(f"  gold.recommendations version {self.table_version}: {self.rows:,} rows, top {self.k} for "
                     f"{self.users:,} users + {self.cold_lists:,} cold-start lists (user_id "
                     f"'{C.COLD_START_USER_PREFIX}<country>')")
        lines.append("  rows by source: " + ", ".join(f"{s} {n:,}" for s, n in self.by_source.items()))
        return lines


# ------------------------------------------------------------------------------ the job
def run_recommend(spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit,
                  run: RunLogger) -> RecommendReport:
    started = time.perf_counter()
    stages: dict[str, float] = {}
    rcfg = cfg.recommend
    interactions = tables.read(C.SILVER_INTERACTIONS)
    items = required_as_of(tables, C.GOLD_ITEM_FEATURES, split.as_of).persist()
    user_features = required_as_of(tables, C.GOLD_USER_FEATURES, split.as_of)
    model = serving.resolve(cfg.hybrid.registered_model, rcfg.model_alias, paths.model_cache(cfg.data_root),
                         split.as_of)
    if model is not None:
        serving.ship(spark, model)
    als_version = _als_version(cfg)
    cached: list[DataFrame] = [items]
    try:
        t0 = time.perf_counter()
        neighbours = S.content_neighbours(items, rcfg.content_neighbours, cfg.candidates.block_mb).persist()
        cached.append(neighbours)
        fresh = S.new_items_at(items)
        stages["neighbours"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tuned = _tuned(tables, cfg, interactions, items, user_features, split, model, neighbours, fresh)
        stages["weight_search"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        bundles, bundle_note = _bundle_source(tables, cfg, interactions, split)
        recs = _recommendations(tables, cfg, interactions, items, user_features, split, model, neighbours, fresh,
                                tuned, bundles)
        weight = tuned.weight
        stamp_name, stamp_version = (model.name, model.version) if model and weight < 1.0 else \
            (cfg.als.registered_model, als_version or "")
        out = _stamped(recs, stamp_name, stamp_version, split)
        with tables.all_or_nothing(WRITES):
            version = tables.replace_partition(out, C.GOLD_RECOMMENDATIONS, {C.AS_OF: split.as_of}).version
        stages["recommend"] = time.perf_counter() - t0
    finally:
        for df in cached:
            df.unpersist()

    described = model.describe() if model else \
        f"none: no {cfg.hybrid.registered_model}@{rcfg.model_alias} trained by {split.as_of}, ALS scores only"
    report = RecommendReport(split.as_of.isoformat(), rcfg.k, weight, tuned.note, described, search=tuned.search,
                             context=tuned.context, context_note=tuned.context_note, bundle_note=bundle_note,
                             table_version=version, stage_seconds=stages)
    _count(tables, split, report)
    report.seconds = time.perf_counter() - started
    _log(run, report, model, als_version, tuned)
    return report


def _factors(tables: Tables, user_table: str, item_table: str, split: TemporalSplit
             ) -> tuple[DataFrame | None, DataFrame | None]:
    """ALS factor tables of as_of, or (None, None) when train-als has not written them."""
    if not (tables.exists(user_table) and tables.exists(item_table)):
        return None, None
    users, items = tables.read_as_of(user_table, split.as_of), tables.read_as_of(item_table, split.as_of)
    if users.limit(1).count() == 0:
        return None, None
    return users, items


def _als_version(cfg: Config) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(cfg.als.registered_model, "champion").version)
    except MlflowException:
        return None


# ------------------------------------------------------------------------------ scoring a pool
def _scored_pool(pool: DataFrame, interactions: DataFrame, user_features: DataFrame, items: DataFrame,
                 split: TemporalSplit, cfg: Config, model: serving.ServingModel | None,
                 user_factors: DataFrame | None, item_factors: DataFrame | None) -> DataFrame:
    """The pool plus ``cf_score`` (ALS dot product, null when unknown) and ``deep_score``."""
    if user_factors is not None:
        with_cf = S.cf_scores(pool, user_factors, item_factors, C.CF_SCORE)
    else:
        with_cf = pool.withColumn(C.CF_SCORE, F.lit(None).cast("double"))
    if model is None:
        return with_cf.withColumn(C.DEEP_SCORE, F.lit(None).cast("double"))
    features = scoring_features(with_cf, interactions, user_features, items, split, cfg.features.holidays,
                                with_text=False)
    scored = serving.score(features, model, items).withColumnRenamed(C.SCORE, C.DEEP_SCORE)
    keep = [*S.POOL_COLUMNS, C.CF_SCORE, C.DEEP_SCORE]
    return scored.select(*keep)


def _pool(history_all: DataFrame, users: DataFrame, split: TemporalSplit, cfg: Config, neighbours: DataFrame,
          fresh: DataFrame, user_factors, item_factors, bundles: DataFrame | None = None
          ) -> tuple[DataFrame, DataFrame]:
    """(pool, country lists) for ``users`` (user_id) as of ``split.as_of``."""
    rcfg, cold = cfg.recommend, cfg.recommend.cold_start
    history = purchases(split.history(history_all))
    placed = S.user_countries(split.history(history_all), users)
    lists = S.country_lists(history, split.as_of, max(rcfg.k, rcfg.pool.popular), cfg.candidates.popularity_half_life_days,
                            rcfg.rerank.season_days, cold.seasonal_weight, cold.min_country_buyers)
    pool = S.build_pool(history, placed, user_factors, item_factors, neighbours, fresh, lists, rcfg, cfg.candidates,
                        bundles)
    return pool, lists


# ------------------------------------------------------------------------------ weights chosen on validation
@dataclass
class Tuned:
    """The fusion weight and the context weights serving uses, and how each was chosen."""

    weight: float
    note: str
    season_weight: float
    time_weight: float
    context_note: str
    search: fusion.WeightSearch | None = None
    context: rerank.ContextSearch | None = None


def _configured(cfg: Config, model) -> Tuned:
    """The weights before any search: config values, else the no-search defaults."""
    fcfg, rr = cfg.recommend.fusion, cfg.recommend.rerank
    if fcfg.weight is not None:
        weight, note = float(fcfg.weight), "recommend.fusion.weight from config"
    elif model is None:
        weight, note = 1.0, "no hybrid model to fuse"
    else:
        weight, note = 0.0, "deep scores only (not searched)"
    return Tuned(weight, note, float(rr.season_weight or 0.0), float(rr.time_weight or 0.0),
                 "recommend.rerank.season_weight / time_weight from config")


def _tuned(tables: Tables, cfg: Config, interactions: DataFrame, items: DataFrame, user_features: DataFrame,
           split: TemporalSplit, model, neighbours: DataFrame, fresh: DataFrame) -> Tuned:
    """Fusion weight, then season and time weights at that fusion weight, each chosen by
    NDCG@10 on the validation window unless config fixes it: candidates as of the validation
    start, scored by the ALS refit on the history before it and the hybrid model."""
    fcfg, rr = cfg.recommend.fusion, cfg.recommend.rerank
    tuned = _configured(cfg, model)
    search_weight = fcfg.weight is None and model is not None
    search_context = rr.season_weight is None or rr.time_weight is None
    if not (search_weight or search_context):
        return tuned
    uf, itf = _factors(tables, C.GOLD_ALS_VALIDATION_USER_FACTORS, C.GOLD_ALS_VALIDATION_ITEM_FACTORS, split)
    if uf is None and search_weight:
        tuned.weight, tuned.note = 0.0, f"no {C.GOLD_ALS_VALIDATION_USER_FACTORS} for as_of {split.as_of}: deep scores only"
        search_weight = False
    if uf is None and model is None:
        tuned.context_note = "nothing scores the validation pool (no ALS validation factors, no hybrid): not searched"
        return tuned
    tuning = split.for_tuning()
    truth = ground_truth(interactions, tuning, "evaluation")
    buyers = purchases(tuning.history(interactions)).select(C.USER_ID).distinct()
    users = truth.select(C.USER_ID).distinct().join(buyers, on=C.USER_ID, how="left_semi")
    users = _sample(users, fcfg.tuning_users, cfg.evaluate.seed).persist()
    try:
        if users.limit(1).count() == 0:
            tuned.note = tuned.context_note = "no warm users in the validation window: not searched"
            if search_weight:
                tuned.weight = 1.0
            return tuned
        pool, _ = _pool(interactions, users, tuning, cfg, neighbours, fresh, uf, itf)
        scored = _scored_pool(pool, interactions, user_features, items, tuning, cfg, model, uf, itf)
        normalised = fusion.with_normalised_scores(scored, fcfg.normalisation).persist()
        sample_truth = truth.join(users, on=C.USER_ID, how="left_semi")
        try:
            if search_weight:
                tuned.search = fusion.choose_weight(normalised, sample_truth, fcfg.weights)
                tuned.weight, tuned.note = tuned.search.weight, "best NDCG@10 on the validation window"
            if search_context:
                terms = rerank.context_terms(purchases(tuning.history(interactions)), tuning.as_of, rr)
                fused = rerank.with_context(normalised.withColumn(C.FUSED_SCORE, fusion.fused(tuned.weight)),
                                            terms).persist()
                try:
                    tuned.context = rerank.choose_context_weights(fused, sample_truth, rr)
                finally:
                    fused.unpersist()
                tuned.season_weight, tuned.time_weight = tuned.context.season_weight, tuned.context.time_weight
                tuned.context_note = (f"season {tuned.season_weight:g}, time {tuned.time_weight:g}: best NDCG@10 on "
                                      f"the validation window at w = {tuned.weight:.2f}")
        finally:
            normalised.unpersist()
    finally:
        users.unpersist()
    return tuned


def _bundle_source(tables: Tables, cfg: Config, interactions: DataFrame, split: TemporalSplit
                   ) -> tuple[DataFrame | None, str]:
    """The ``bundle`` candidates (rules of gold.bundles for as_of fired by the users' recent
    baskets), or None and why not."""
    from shoprec.bundles import baskets as B
    from shoprec.bundles.complete import pool_source

    n = cfg.recommend.pool.bundle
    if not n:
        return None, "off (recommend.pool.bundle is 0)"
    if not tables.exists(C.GOLD_BUNDLES):
        return None, f"none: {C.GOLD_BUNDLES} does not exist (run shoprec bundles --as-of {split.as_of})"
    rules = tables.read_as_of(C.GOLD_BUNDLES, split.as_of).drop(C.AS_OF)
    if rules.limit(1).count() == 0:
        return None, f"none: {C.GOLD_BUNDLES} holds no rules for as_of {split.as_of} (run shoprec bundles)"
    bcfg = cfg.bundles
    recent = B.recent_basket_items(B.history_baskets(interactions, split.as_of, bcfg.history_days),
                                   bcfg.recent_baskets)
    return pool_source(recent, rules, n), (f"up to {n} per user from the rules of {C.GOLD_BUNDLES} (as_of "
                                           f"{split.as_of}) fired by their last {bcfg.recent_baskets} baskets")


def _sample(users: DataFrame, n: int, seed: int) -> DataFrame:
    """At most ``n`` users, a seeded hash sample (the same users on every rerun)."""
    total = users.count()
    if total <= n:
        return users
    key = F.abs(F.xxhash64(F.col(C.USER_ID), F.lit(seed))) % F.lit(1_000_000)
    return users.where(key < F.lit(int(1_000_000 * n / total)))


# ------------------------------------------------------------------------------ serving
def _recommendations(tables: Tables, cfg: Config, interactions: DataFrame, items: DataFrame,
                     user_features: DataFrame, split: TemporalSplit, model, neighbours: DataFrame,
                     fresh: DataFrame, tuned: Tuned, bundles: DataFrame | None) -> DataFrame:
    """user_id, rank, item_id, score, source, reason for every user seen before as_of and
    the cold-start lists."""
    rcfg = cfg.recommend
    history_all = split.history(interactions)
    history = purchases(history_all)
    seen = history_all.where(F.col(C.USER_ID).isNotNull()).select(C.USER_ID).distinct()
    buyers = history.select(C.USER_ID).distinct()
    uf, itf = _factors(tables, C.GOLD_ALS_USER_FACTORS, C.GOLD_ALS_ITEM_FACTORS, split)
    pool, lists = _pool(interactions, buyers, split, cfg, neighbours, fresh, uf, itf, bundles)
    lists = lists.persist()
    scored = _scored_pool(rerank.apply_rebuy(pool, history, rcfg), interactions, user_features, items, split, cfg,
                          model, uf, itf)
    fused = fusion.with_normalised_scores(scored, rcfg.fusion.normalisation).withColumn(
        C.FUSED_SCORE, fusion.fused(tuned.weight))
    contextual = rerank.with_context(fused, _serving_terms(tables, history, split, rcfg.rerank))
    final = rerank.boosted(contextual, rerank.light_users(history, rcfg.cold_start.light_user_baskets), rcfg,
                           C.FUSED_SCORE, tuned.season_weight, tuned.time_weight)
    personal = rerank.diversified_top_k(final, items, rcfg)

    # Users seen but without a purchase (returns only, views, carts): their country's list.
    placed = S.user_countries(history_all, seen.join(buyers, on=C.USER_ID, how="left_anti"))
    browsing = S.popular_candidates(lists, placed, rcfg.k).select(
        C.USER_ID, C.ITEM_ID, F.col(C.SOURCE_SCORE).alias(C.SCORE), F.col(C.SOURCE_RANK).alias(C.RANK),
        C.CANDIDATE_SOURCE, C.ANCHOR, C.SOURCE_SCORE)
    key = F.concat(F.lit(C.COLD_START_USER_PREFIX), F.coalesce(F.col(C.COUNTRY), F.lit(C.COLD_START_ANY_COUNTRY)))
    cold = lists.where(F.col(C.RANK) <= rcfg.k).select(
        key.alias(C.USER_ID), C.ITEM_ID, C.SCORE, C.RANK, F.lit(C.SRC_POPULAR_CONTEXT).alias(C.CANDIDATE_SOURCE),
        F.col(C.COUNTRY).alias(C.ANCHOR), F.col(C.SCORE).alias(C.SOURCE_SCORE))
    everyone = personal.unionByName(browsing).unionByName(cold)
    return explain.with_reasons(everyone, items).select(C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE,
                                                        C.CANDIDATE_SOURCE, C.REASON)


def _serving_terms(tables: Tables, history: DataFrame, split: TemporalSplit, rr: RerankConfig
                   ) -> rerank.ContextTerms:
    """Season and time-of-day terms from the profiles the features stage wrote for as_of;
    computed from the history only where they are missing (features of an older version)."""
    if tables.exists(C.GOLD_ITEM_TIME_PROFILES) and tables.exists(C.GOLD_USER_TIME_PROFILES):
        items = tables.read_as_of(C.GOLD_ITEM_TIME_PROFILES, split.as_of)
        if items.limit(1).count():
            users = tables.read_as_of(C.GOLD_USER_TIME_PROFILES, split.as_of)
            return rerank.terms_from_profiles(items, users, split.as_of, rr)
    log.info("no %s for as_of %s: time profiles computed from the history", C.GOLD_ITEM_TIME_PROFILES, split.as_of)
    return rerank.context_terms(history, split.as_of, rr)


def _stamped(recs: DataFrame, name: str, version: str, split: TemporalSplit) -> DataFrame:
    cold = F.col(C.USER_ID).startswith(C.COLD_START_USER_PREFIX) | (F.col(C.CANDIDATE_SOURCE) == C.SRC_POPULAR_CONTEXT)
    return recs.select(
        F.col(C.USER_ID).cast("string"), F.col(C.RANK).cast("int"), F.col(C.ITEM_ID).cast("string"),
        F.col(C.SCORE).cast("double"), F.col(C.CANDIDATE_SOURCE).cast("string"), F.col(C.REASON).cast("string"),
        F.when(cold, F.lit(COLD_START_MODEL)).otherwise(F.lit(name)).alias(C.MODEL_NAME),
        F.when(cold, F.lit(split.as_of.isoformat())).otherwise(F.lit(version)).alias(C.MODEL_VERSION),
        F.lit(split.as_of).cast("date").alias(C.AS_OF),
        F.current_timestamp().alias(C.GENERATED_AT),
    )


def _count(tables: Tables, split: TemporalSplit, report: RecommendReport) -> None:
    recs = tables.read_as_of(C.GOLD_RECOMMENDATIONS, split.as_of)
    cold = F.col(C.USER_ID).startswith(C.COLD_START_USER_PREFIX)
    row = recs.agg(F.count(F.lit(1)).alias("rows"),
                   F.count_distinct(F.when(~cold, F.col(C.USER_ID))).alias("users"),
                   F.count_distinct(F.when(cold, F.col(C.USER_ID))).alias("lists")).first()
    report.rows, report.users, report.cold_lists = int(row["rows"]), int(row["users"]), int(row["lists"])
    by = recs.groupBy(C.CANDIDATE_SOURCE).count().collect()  # small: one row per source
    report.by_source = dict(sorted(((r[C.CANDIDATE_SOURCE], int(r["count"])) for r in by), key=lambda x: -x[1]))


def _log(run: RunLogger, report: RecommendReport, model, als_version: str | None, tuned: Tuned) -> None:
    run.params({"fusion.weight": report.weight, "fusion.weight_note": report.weight_note,
                "rerank.season_weight.chosen": tuned.season_weight, "rerank.time_weight.chosen": tuned.time_weight,
                "rerank.context_note": tuned.context_note, "bundle_source": report.bundle_note,
                "hybrid.version": model.version if model else "none", "als.version": als_version or "none"})
    metrics = {"seconds": report.seconds, "rows": report.rows, "users": report.users, "cold_lists": report.cold_lists,
               **{f"rows.{s}": n for s, n in report.by_source.items()},
               **{f"seconds.{k}": v for k, v in report.stage_seconds.items()}}
    if report.search:
        for w, v in report.search.ndcg.items():
            metrics[f"fusion.val_ndcg_at_10.w_{w:.2f}"] = v
        metrics["fusion.val_ndcg_at_10.chosen"] = report.search.ndcg[report.weight]
    if report.context:
        for (sw, tw), v in report.context.ndcg.items():
            metrics[f"context.val_ndcg_at_10.season_{sw:g}.time_{tw:g}"] = v
    run.metrics(metrics)


# ------------------------------------------------------------------------------ the stage
def recommend_stage(ctx: JobContext, as_of: date | None = None, split: TemporalSplit | None = None) -> RecommendReport:
    """``shoprec recommend``: candidates, deep scoring, fusion, re-ranking -> gold.recommendations."""
    return model_stage(ctx, "recommend", split or resolve_run_split(ctx, as_of), run_recommend)
