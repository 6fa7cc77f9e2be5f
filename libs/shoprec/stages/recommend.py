"""``shoprec recommend``: gold.recommendations for every user seen before as_of, and
gold.cold_start_lists for users not seen yet.

    silver + gold features (as_of) ──► candidate sources per user (ALS top-N of gold.candidates,
    gold.candidates (als), factors      reorders, bought together, content neighbours, popular
    gold.bundles (as_of)                in context, rules fired by the user's recent baskets)
    champion hybrid (registry alias) ─► deep score in Spark (model shipped to executors)
        ─► per-user normalised fusion w x ALS + (1 - w) x deep   (w chosen on the validation window)
        ─► + season weight x seasonal lift + time weight x hour/weekday fit (weights chosen on validation)
        ─► rebuy policy, light users, MMR diversity, new-item cap ─► K per user
        ─► reasons ─► gold.recommendations (as_of partition, replaced atomically)
    users without purchases: their country's context-popular list; users not seen yet: one list
    per country in gold.cold_start_lists (list_key = the country, "*" for anyone else).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec import paths
from shoprec.candidates import sources as S
from shoprec.candidates.baselines import item_similarity
from shoprec.config import Config, RerankConfig
from shoprec.evaluation.truth import ground_truth
from shoprec.hybrid import serving
from shoprec.hybrid.scoring import scoring_features
from shoprec.ranking import explain, fusion, rerank
from shoprec.split import TemporalSplit, purchases
from shoprec.stages import models
from shoprec.stages.candidate_store import read_candidates
from shoprec.stages.context import (
    JobContext,
    model_stage,
    required_as_of,
    resolve_run_split,
)
from shoprec.tables import Tables
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)

WRITES = (C.GOLD_RECOMMENDATIONS, C.GOLD_COLD_START_LISTS)
COLD_START_MODEL = "shoprec-cold-start"
_LIST_FIELDS = [
    T.StructField(C.RANK, T.IntegerType()),
    T.StructField(C.ITEM_ID, T.StringType()),
    T.StructField(C.SCORE, T.DoubleType()),
    T.StructField(C.CANDIDATE_SOURCE, T.StringType()),
    T.StructField(C.REASON, T.StringType()),
    T.StructField(C.MODEL_NAME, T.StringType()),
    T.StructField(C.MODEL_VERSION, T.StringType()),
    T.StructField(C.AS_OF, T.DateType()),
    T.StructField(C.GENERATED_AT, T.TimestampType()),
]
# gold.recommendations: one row per (user, rank) of a user seen before as_of.
RECOMMENDATIONS_SCHEMA = T.StructType([T.StructField(C.USER_ID, T.StringType()), *_LIST_FIELDS])
# gold.cold_start_lists: one row per (list_key, rank); list_key is a country, or "*" (anyone else).
COLD_START_LISTS_SCHEMA = T.StructType([T.StructField(C.LIST_KEY, T.StringType()), *_LIST_FIELDS])


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
    cold_start_version: int | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [
            f"recommend (as_of {self.as_of}) finished in {self.seconds:.1f} s "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in self.stage_seconds.items())})",
            f"  scoring model: {self.model}",
            f"  fusion weight w = {self.weight:.2f} ({self.weight_note})",
        ]
        if self.search:
            lines += self.search.lines()
        lines.append(f"  context weights: {self.context_note}")
        if self.context:
            lines += self.context.lines()
        lines.append(f"  bundle source: {self.bundle_note}")
        lines.append(
            f"  gold.recommendations version {self.table_version}: {self.rows:,} rows, top {self.k} for "
            f"{self.users:,} users"
        )
        lines.append(
            f"  gold.cold_start_lists version {self.cold_start_version}: {self.cold_lists:,} lists "
            f"({C.LIST_KEY} = country, '{C.COLD_START_ANY_COUNTRY}' for anyone else)"
        )
        lines.append("  rows by source: " + ", ".join(f"{s} {n:,}" for s, n in self.by_source.items()))
        return lines


# ------------------------------------------------------------------------------ the stage's inputs
@dataclass(frozen=True)
class Inputs:
    """What every step of the stage reads, gathered once per run (all as of ``split.as_of``)."""

    cfg: Config
    interactions: DataFrame  # silver.interactions; each step takes its own window
    items: DataFrame  # gold.item_features
    user_features: DataFrame  # gold.user_features
    model: serving.ServingModel | None  # the hybrid version that serves as_of, shipped
    neighbours: DataFrame  # content neighbours: item_a, item_b, similarity
    fresh: DataFrame  # items without sales before as_of


@dataclass(frozen=True)
class Als:
    """One ALS model's part of a pool: its top-N candidates (pool columns) and the factors
    that score every other candidate; all None when that model was not trained."""

    top_n: DataFrame | None = None
    user_factors: DataFrame | None = None
    item_factors: DataFrame | None = None

    @property
    def known(self) -> bool:
        return self.user_factors is not None


# ------------------------------------------------------------------------------ the job
def run_recommend(
    spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, run: RunLogger
) -> RecommendReport:
    started = time.perf_counter()
    stages: dict[str, float] = {}
    rcfg = cfg.recommend
    als_version = champion_als_version(cfg)
    cached: list[DataFrame] = []
    try:
        t0 = time.perf_counter()
        inputs = as_of_inputs(spark, cfg, tables, split, keep_in(cached))
        model = inputs.model
        stages["neighbours"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tuned = _tuned(tables, inputs, split)
        stages["weight_search"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        bundles, bundle_note = bundle_source(tables, cfg, inputs.interactions, split)
        recs, cold = _recommendations(tables, inputs, split, tuned, bundles)
        weight = tuned.weight
        stamp_name, stamp_version = serving_stamp(cfg, model, weight, als_version)
        with tables.all_or_nothing(WRITES):
            at = {C.AS_OF: split.as_of}
            version = tables.replace_partition(
                stamped(recs, stamp_name, stamp_version, split), C.GOLD_RECOMMENDATIONS, at
            ).version
            cold_version = tables.replace_partition(_stamped_lists(cold, split), C.GOLD_COLD_START_LISTS, at).version
        stages["recommend"] = time.perf_counter() - t0
    finally:
        for df in cached:
            df.unpersist()

    described = (
        model.describe()
        if model
        else f"none: no {cfg.hybrid.registered_model}@{rcfg.model_alias} trained by {split.as_of}, ALS scores only"
    )
    report = RecommendReport(
        split.as_of.isoformat(),
        rcfg.k,
        weight,
        tuned.note,
        described,
        search=tuned.search,
        context=tuned.context,
        context_note=tuned.context_note,
        bundle_note=bundle_note,
        table_version=version,
        cold_start_version=cold_version,
        stage_seconds=stages,
    )
    _count(tables, split, report)
    report.seconds = time.perf_counter() - started
    _log(run, report, model, als_version, tuned)
    return report


def keep_in(cached: list[DataFrame]) -> Callable[[DataFrame], DataFrame]:
    """A function that persists a DataFrame and adds it to ``cached`` (unpersisted by the caller)."""

    def keep(df: DataFrame) -> DataFrame:
        cached.append(df.persist())
        return df

    return keep


def as_of_inputs(
    spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, keep: Callable[[DataFrame], DataFrame]
) -> Inputs:
    """What every step reads as of ``split.as_of`` (:class:`Inputs`): gold.item_features and the
    content neighbours (both kept: read many times), gold.user_features, the hybrid version
    that serves as_of (``models.resolve``, shipped to the workers), the items new at as_of, all
    of silver.interactions. recommend, the live refresh and the ranker's training start here."""
    rcfg = cfg.recommend
    items = keep(required_as_of(tables, C.GOLD_ITEM_FEATURES, split.as_of))
    model = models.resolve(cfg.hybrid.registered_model, rcfg.model_alias, paths.model_cache(cfg.data_root), split.as_of)
    if model is not None:
        serving.ship(spark, model)
    neighbours = keep(S.content_neighbours(items, rcfg.content_neighbours, cfg.candidates.block_mb))
    return Inputs(
        cfg,
        tables.read(C.SILVER_INTERACTIONS),
        items,
        required_as_of(tables, C.GOLD_USER_FEATURES, split.as_of),
        model,
        neighbours,
        S.new_items_at(items),
    )


def factors(tables: Tables, user_table: str, item_table: str, split: TemporalSplit) -> Als:
    """An ALS model's factor tables of as_of (no top-N yet); empty when train-als has not written them."""
    if not (tables.exists(user_table) and tables.exists(item_table)):
        return Als()
    users, items = tables.read_as_of(user_table, split.as_of), tables.read_as_of(item_table, split.as_of)
    if users.limit(1).count() == 0:
        return Als()
    return Als(None, users, items)


def _stored_top_n(tables: Tables, split: TemporalSplit, n: int) -> DataFrame | None:
    """The ALS source in pool columns: the first ``n`` of the top-N train-als wrote to
    gold.candidates (computed once, there); None when it holds none for as_of."""
    top = read_candidates(tables, split.as_of, [C.SRC_ALS]) if tables.exists(C.GOLD_CANDIDATES) else None
    if top is None or top.limit(1).count() == 0:
        log.warning(
            "no %s candidates in %s for as_of %s: the pool has no ALS source (run shoprec train-als)",
            C.SRC_ALS,
            C.GOLD_CANDIDATES,
            split.as_of,
        )
        return None
    deepest = top.agg(F.max(C.RANK)).first()
    assert deepest is not None  # a global aggregate: one row
    if n > deepest[0]:
        log.warning(
            "recommend.pool.als %d is more than the %s top-N holds: its ALS source has fewer "
            "(raise candidates.n and rerun train-als)",
            n,
            C.GOLD_CANDIDATES,
        )
    return S.stored_als_candidates(top, n)


def serving_stamp(
    cfg: Config, model: serving.ServingModel | None, weight: float, als_version: str | None
) -> tuple[str, str]:
    """(model_name, model_version) the personal lists are stamped with: the hybrid's when its
    scores count (w < 1), else the ALS model's."""
    if model and weight < 1.0:
        return model.name, model.version
    return cfg.als.registered_model, als_version or ""


def champion_als_version(cfg: Config) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(cfg.als.registered_model, "champion").version)
    except MlflowException:
        return None


# ------------------------------------------------------------------------------ scoring a pool
def _scored_pool(inputs: Inputs, pool: DataFrame, split: TemporalSplit, als: Als) -> DataFrame:
    """The pool plus ``cf_score`` (ALS dot product, null when unknown) and ``deep_score``."""
    if als.known:
        assert als.user_factors is not None and als.item_factors is not None  # known: both written
        with_cf = S.cf_scores(pool, als.user_factors, als.item_factors, C.CF_SCORE)
    else:
        with_cf = pool.withColumn(C.CF_SCORE, F.lit(None).cast("double"))
    if inputs.model is None:
        return with_cf.withColumn(C.DEEP_SCORE, F.lit(None).cast("double"))
    features = scoring_features(
        with_cf,
        inputs.interactions,
        inputs.user_features,
        inputs.items,
        split,
        inputs.cfg.features.holidays,
        with_text=False,
    )
    scored = serving.score(features, inputs.model, inputs.items).withColumnRenamed(C.SCORE, C.DEEP_SCORE)
    keep = [*S.POOL_COLUMNS, C.CF_SCORE, C.DEEP_SCORE]
    return scored.select(*keep)


@dataclass(frozen=True)
class Globals:
    """What the pool and the rebuy policy take from EVERY user's history: the country lists,
    the co-occurrence source's item similarity, the consumable items. Computed from the history
    ``ranked`` is given unless given here: the live refresh computes them once per batch as_of
    and hands ``ranked`` only its users' own history."""

    lists: DataFrame
    similarity: DataFrame | None = None
    consumables: DataFrame | None = None

    def cached(self) -> list[DataFrame]:
        return [df.persist() for df in (self.lists, self.similarity, self.consumables) if df is not None]


def pool_globals(inputs: Inputs, split: TemporalSplit) -> Globals:
    """:class:`Globals` of every user's purchases before ``split.as_of``."""
    cfg = inputs.cfg
    history = purchases(split.history(inputs.interactions))
    rcfg = cfg.recommend
    return Globals(
        _country_lists(cfg, history, split),
        item_similarity(history, cfg.candidates) if rcfg.pool.cooccurrence else None,
        rerank.consumables(history, rcfg.min_repeat_rate) if rcfg.rebuy == "consumables" else None,
    )


def _country_lists(cfg: Config, history: DataFrame, split: TemporalSplit) -> DataFrame:
    rcfg, cold = cfg.recommend, cfg.recommend.cold_start
    return S.country_lists(
        history,
        split.as_of,
        max(rcfg.k, rcfg.pool.popular),
        cfg.candidates.popularity_half_life_days,
        rcfg.rerank.season_days,
        cold.seasonal_weight,
        cold.min_country_buyers,
    )


def _pool(
    inputs: Inputs,
    users: DataFrame,
    split: TemporalSplit,
    als: Als,
    bundles: DataFrame | None = None,
    shared: Globals | None = None,
) -> tuple[DataFrame, DataFrame]:
    """(pool, country lists) for ``users`` (user_id) as of ``split.as_of``."""
    cfg = inputs.cfg
    history_all = split.history(inputs.interactions)
    history = purchases(history_all)
    placed = S.user_countries(history_all, users)
    lists = shared.lists if shared is not None else _country_lists(cfg, history, split)
    similarity = shared.similarity if shared is not None else None
    pool = S.build_pool(
        history,
        placed,
        als.top_n,
        inputs.neighbours,
        inputs.fresh,
        lists,
        cfg.recommend,
        cfg.candidates,
        bundles,
        similarity,
    )
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


def configured(cfg: Config, model: serving.ServingModel | None) -> Tuned:
    """The weights before any search: config values, else the no-search defaults."""
    fcfg, rr = cfg.recommend.fusion, cfg.recommend.rerank
    if fcfg.weight is not None:
        weight, note = float(fcfg.weight), "recommend.fusion.weight from config"
    elif model is None:
        weight, note = 1.0, "no hybrid model to fuse"
    else:
        weight, note = 0.0, "deep scores only (not searched)"
    return Tuned(
        weight,
        note,
        float(rr.season_weight or 0.0),
        float(rr.time_weight or 0.0),
        "recommend.rerank.season_weight / time_weight from config",
    )


def _tuned(tables: Tables, inputs: Inputs, split: TemporalSplit) -> Tuned:
    """Fusion weight, then season and time weights at that fusion weight, each chosen by
    NDCG@10 on the validation window unless config fixes it: candidates as of the validation
    start, scored by the ALS refit on the history before it and the hybrid model."""
    cfg, model, interactions = inputs.cfg, inputs.model, inputs.interactions
    fcfg, rr = cfg.recommend.fusion, cfg.recommend.rerank
    tuned = configured(cfg, model)
    search_weight = fcfg.weight is None and model is not None
    search_context = rr.season_weight is None or rr.time_weight is None
    if not (search_weight or search_context):
        return tuned
    als = factors(tables, C.GOLD_ALS_VALIDATION_USER_FACTORS, C.GOLD_ALS_VALIDATION_ITEM_FACTORS, split)
    if not als.known and search_weight:
        tuned.weight = 0.0
        tuned.note = f"no {C.GOLD_ALS_VALIDATION_USER_FACTORS} for as_of {split.as_of}: deep scores only"
        search_weight = False
    if not als.known and model is None:
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
        if als.known:
            assert als.user_factors is not None and als.item_factors is not None  # known: both written
            # The validation refit has no stored top-N: its ALS source is computed here, for the sample.
            als = replace(
                als,
                top_n=S.als_candidates(
                    als.user_factors, als.item_factors, users, cfg.recommend.pool.als, cfg.candidates.block_mb
                ),
            )
        pool, _ = _pool(inputs, users, tuning, als)
        scored = _scored_pool(inputs, pool, tuning, als)
        normalised = fusion.with_normalised_scores(scored, fcfg.normalisation).persist()
        sample_truth = truth.join(users, on=C.USER_ID, how="left_semi")
        try:
            if search_weight:
                tuned.search = fusion.choose_weight(normalised, sample_truth, fcfg.weights)
                tuned.weight, tuned.note = tuned.search.weight, "best NDCG@10 on the validation window"
            if search_context:
                terms = rerank.context_terms(purchases(tuning.history(interactions)), tuning.as_of, rr)
                fused = rerank.with_context(
                    normalised.withColumn(C.FUSED_SCORE, fusion.fused(tuned.weight)), terms
                ).persist()
                try:
                    tuned.context = rerank.choose_context_weights(fused, sample_truth, rr)
                finally:
                    fused.unpersist()
                tuned.season_weight, tuned.time_weight = tuned.context.season_weight, tuned.context.time_weight
                tuned.context_note = (
                    f"season {tuned.season_weight:g}, time {tuned.time_weight:g}: best NDCG@10 on "
                    f"the validation window at w = {tuned.weight:.2f}"
                )
        finally:
            normalised.unpersist()
    finally:
        users.unpersist()
    return tuned


def bundle_rules(tables: Tables, split: TemporalSplit) -> tuple[DataFrame | None, str]:
    """gold.bundles' rules of as_of, or None and why there are none."""
    if not tables.exists(C.GOLD_BUNDLES):
        return None, f"none: {C.GOLD_BUNDLES} does not exist (run shoprec bundles --as-of {split.as_of})"
    rules = tables.read_as_of(C.GOLD_BUNDLES, split.as_of).drop(C.AS_OF)
    if rules.limit(1).count() == 0:
        return None, f"none: {C.GOLD_BUNDLES} holds no rules for as_of {split.as_of} (run shoprec bundles)"
    return rules, ""


def bundle_source(
    tables: Tables,
    cfg: Config,
    interactions: DataFrame,
    split: TemporalSplit,
    baskets_before: date | None = None,
    rules: tuple[DataFrame | None, str] | None = None,
) -> tuple[DataFrame | None, str]:
    """The ``bundle`` candidates (rules of gold.bundles for as_of fired by the users' recent
    baskets: those before ``baskets_before``, as_of by default), or None and why not.
    ``rules``: :func:`bundle_rules` read before (the live refresh keeps them)."""
    from shoprec.bundles import baskets as B
    from shoprec.bundles.complete import pool_source

    n = cfg.recommend.pool.bundle
    if not n:
        return None, "off (recommend.pool.bundle is 0)"
    found, why = rules if rules is not None else bundle_rules(tables, split)
    if found is None:
        return None, why
    bcfg = cfg.bundles
    until = baskets_before or split.as_of
    recent = B.recent_basket_items(B.history_baskets(interactions, until, bcfg.history_days), bcfg.recent_baskets)
    return pool_source(recent, found, n), (
        f"up to {n} per user from the rules of {C.GOLD_BUNDLES} (as_of "
        f"{split.as_of}) fired by their last {bcfg.recent_baskets} baskets"
    )


def _sample(users: DataFrame, n: int, seed: int) -> DataFrame:
    """At most ``n`` users, a seeded hash sample (the same users on every rerun)."""
    total = users.count()
    if total <= n:
        return users
    key = F.abs(F.xxhash64(F.col(C.USER_ID), F.lit(seed))) % F.lit(1_000_000)
    return users.where(key < F.lit(int(1_000_000 * n / total)))


# ------------------------------------------------------------------------------ serving
def _recommendations(
    tables: Tables, inputs: Inputs, split: TemporalSplit, tuned: Tuned, bundles: DataFrame | None
) -> tuple[DataFrame, DataFrame]:
    """(user_id, rank, item_id, score, source, reason for every user seen before as_of;
    list_key, rank, item_id, score, source, reason of the cold-start lists)."""
    cfg, items = inputs.cfg, inputs.items
    rcfg = cfg.recommend
    history_all = split.history(inputs.interactions)
    history = purchases(history_all)
    seen = history_all.where(F.col(C.USER_ID).isNotNull()).select(C.USER_ID).distinct()
    buyers = history.select(C.USER_ID).distinct()
    als = factors(tables, C.GOLD_ALS_USER_FACTORS, C.GOLD_ALS_ITEM_FACTORS, split)
    if als.known:
        als = replace(als, top_n=_stored_top_n(tables, split, rcfg.pool.als))
    terms = serving_terms(tables, history, split, rcfg.rerank)
    personal, lists = ranked(inputs, buyers, split, als, tuned, terms, bundles)
    lists = lists.persist()

    # Users seen but without a purchase (returns only, views, carts): their country's list.
    placed = S.user_countries(history_all, seen.join(buyers, on=C.USER_ID, how="left_anti"))
    browsing = S.popular_candidates(lists, placed, rcfg.k).select(
        C.USER_ID,
        C.ITEM_ID,
        F.col(C.SOURCE_SCORE).alias(C.SCORE),
        F.col(C.SOURCE_RANK).alias(C.RANK),
        C.CANDIDATE_SOURCE,
        C.ANCHOR,
        C.SOURCE_SCORE,
    )
    return explained(personal.unionByName(browsing), items), _cold_start_lists(lists, items, rcfg.k)


def ranked(
    inputs: Inputs,
    users: DataFrame,
    split: TemporalSplit,
    als: Als,
    tuned: Tuned,
    terms: rerank.ContextTerms,
    bundles: DataFrame | None = None,
    shared: Globals | None = None,
) -> tuple[DataFrame, DataFrame]:
    """(the top K of every user of ``users`` with a purchase before ``split.as_of``, unexplained;
    the country lists): pool, rebuy policy, ALS + deep scores, fusion at ``tuned.weight``,
    context terms, light-user boosts, MMR diversity. The batch lists and the live ones
    (``stages.live``, history through the newest event) are both built here. ``shared``: the
    all-users parts computed before (:class:`Globals`); then ``inputs.interactions`` need only
    hold ``users``' own events."""
    rcfg = inputs.cfg.recommend
    history = purchases(split.history(inputs.interactions))
    pool, lists = _pool(inputs, users, split, als, bundles, shared)
    consumable = shared.consumables if shared is not None else None
    scored = _scored_pool(inputs, rerank.apply_rebuy(pool, history, rcfg, consumable), split, als)
    fused = fusion.with_normalised_scores(scored, rcfg.fusion.normalisation).withColumn(
        C.FUSED_SCORE, fusion.fused(tuned.weight)
    )
    final = rerank.boosted(
        rerank.with_context(fused, terms),
        rerank.light_users(history, rcfg.cold_start.light_user_baskets),
        rcfg,
        C.FUSED_SCORE,
        tuned.season_weight,
        tuned.time_weight,
    )
    return rerank.diversified_top_k(final, inputs.items, rcfg), lists


def explained(recs: DataFrame, items: DataFrame) -> DataFrame:
    """user_id, rank, item_id, score, source, reason: ranked lists with their reasons."""
    return explain.with_reasons(recs, items).select(C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, C.CANDIDATE_SOURCE, C.REASON)


def _cold_start_lists(lists: DataFrame, items: DataFrame, k: int) -> DataFrame:
    """The first ``k`` of every country list (the global one under ``*``), explained: what a
    user not seen before as_of gets (the contract: docs/architecture.md, "Cold-start lists")."""
    key = F.coalesce(F.col(C.COUNTRY), F.lit(C.COLD_START_ANY_COUNTRY))
    top = lists.where(F.col(C.RANK) <= k).select(
        key.alias(C.LIST_KEY),
        C.ITEM_ID,
        C.SCORE,
        C.RANK,
        F.lit(C.SRC_POPULAR_CONTEXT).alias(C.CANDIDATE_SOURCE),
        F.col(C.COUNTRY).alias(C.ANCHOR),
        F.col(C.SCORE).alias(C.SOURCE_SCORE),
    )
    return explain.with_reasons(top, items).select(C.LIST_KEY, C.RANK, C.ITEM_ID, C.SCORE, C.CANDIDATE_SOURCE, C.REASON)


def serving_terms(tables: Tables, history: DataFrame, split: TemporalSplit, rr: RerankConfig) -> rerank.ContextTerms:
    """Season and time-of-day terms from the profiles the features stage wrote for as_of;
    computed from the history only where they are missing (features of an older version)."""
    if tables.exists(C.GOLD_ITEM_TIME_PROFILES) and tables.exists(C.GOLD_USER_TIME_PROFILES):
        items = tables.read_as_of(C.GOLD_ITEM_TIME_PROFILES, split.as_of)
        if items.limit(1).count():
            users = tables.read_as_of(C.GOLD_USER_TIME_PROFILES, split.as_of)
            return rerank.terms_from_profiles(items, users, split.as_of, rr)
    log.info("no %s for as_of %s: time profiles computed from the history", C.GOLD_ITEM_TIME_PROFILES, split.as_of)
    return rerank.context_terms(history, split.as_of, rr)


def stamped(recs: DataFrame, name: str, version: str, split: TemporalSplit) -> DataFrame:
    # A context-popular list (a user without purchases) comes from no trained model.
    cold = F.col(C.CANDIDATE_SOURCE) == C.SRC_POPULAR_CONTEXT
    return recs.select(
        F.col(C.USER_ID).cast("string"),
        F.col(C.RANK).cast("int"),
        F.col(C.ITEM_ID).cast("string"),
        F.col(C.SCORE).cast("double"),
        F.col(C.CANDIDATE_SOURCE).cast("string"),
        F.col(C.REASON).cast("string"),
        F.when(cold, F.lit(COLD_START_MODEL)).otherwise(F.lit(name)).alias(C.MODEL_NAME),
        F.when(cold, F.lit(split.as_of.isoformat())).otherwise(F.lit(version)).alias(C.MODEL_VERSION),
        F.lit(split.as_of).cast("date").alias(C.AS_OF),
        F.current_timestamp().alias(C.GENERATED_AT),
    )


def _stamped_lists(lists: DataFrame, split: TemporalSplit) -> DataFrame:
    return lists.select(
        F.col(C.LIST_KEY).cast("string"),
        F.col(C.RANK).cast("int"),
        F.col(C.ITEM_ID).cast("string"),
        F.col(C.SCORE).cast("double"),
        F.col(C.CANDIDATE_SOURCE).cast("string"),
        F.col(C.REASON).cast("string"),
        F.lit(COLD_START_MODEL).alias(C.MODEL_NAME),
        F.lit(split.as_of.isoformat()).alias(C.MODEL_VERSION),
        F.lit(split.as_of).cast("date").alias(C.AS_OF),
        F.current_timestamp().alias(C.GENERATED_AT),
    )


def _count(tables: Tables, split: TemporalSplit, report: RecommendReport) -> None:
    recs = tables.read_as_of(C.GOLD_RECOMMENDATIONS, split.as_of)
    row = recs.agg(F.count(F.lit(1)).alias("rows"), F.count_distinct(C.USER_ID).alias("users")).first()
    assert row is not None  # a global aggregate: one row
    report.rows, report.users = int(row["rows"]), int(row["users"])
    report.cold_lists = tables.read_as_of(C.GOLD_COLD_START_LISTS, split.as_of).select(C.LIST_KEY).distinct().count()
    by = recs.groupBy(C.CANDIDATE_SOURCE).count().collect()  # small: one row per source
    report.by_source = dict(sorted(((r[C.CANDIDATE_SOURCE], int(r["count"])) for r in by), key=lambda x: -x[1]))


def _log(
    run: RunLogger, report: RecommendReport, model: serving.ServingModel | None, als_version: str | None, tuned: Tuned
) -> None:
    run.params(
        {
            "fusion.weight": report.weight,
            "fusion.weight_note": report.weight_note,
            "rerank.season_weight.chosen": tuned.season_weight,
            "rerank.time_weight.chosen": tuned.time_weight,
            "rerank.context_note": tuned.context_note,
            "bundle_source": report.bundle_note,
            "hybrid.version": model.version if model else "none",
            "als.version": als_version or "none",
        }
    )
    metrics = {
        "seconds": report.seconds,
        "rows": report.rows,
        "users": report.users,
        "cold_lists": report.cold_lists,
        **{f"rows.{s}": n for s, n in report.by_source.items()},
        **{f"seconds.{k}": v for k, v in report.stage_seconds.items()},
    }
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
