"""Candidate sources of ``shoprec recommend``, all computed as of one cutoff.

Each source returns ``user_id, item_id, source, anchor_item, source_score, source_rank``:
``anchor_item`` is the item of the user's that led to the candidate (the basket partner's
seed, the content neighbour's origin; the item itself for a reorder; null otherwise), kept
for the explanation. :func:`candidate_pool` unions them and keeps one row per (user,
item): the source that ranked it best (ties: ``SOURCE_PRIORITY``), so every candidate
carries one source and one reason.

    ALS factors ──────────────► als: blocked top-N of the factor products
    history purchases ────────► repeat: the user's most recent distinct items
                     └────────► cooccurrence: partners of the recent items (basket cosine)
    item text vectors ────────► content: neighbours of the recent items (new items flagged)
    history + country ────────► popular_context: country x recent weeks x same weeks last year
    gold.bundles + baskets ───► bundle: consequents of the rules the user's recent baskets fire
"""

from __future__ import annotations

import calendar
import functools
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.als.topn import top_n_for_users
from shoprec.candidates.baselines import item_similarity, recent_items
from shoprec.config import CandidatesConfig, RecommendConfig

POOL_COLUMNS = (C.USER_ID, C.ITEM_ID, C.CANDIDATE_SOURCE, C.ANCHOR, C.SOURCE_SCORE, C.SOURCE_RANK)
# Which source explains a candidate that several ranked equally well: the most specific first.
SOURCE_PRIORITY = (
    C.SRC_BUNDLE,
    C.SRC_COOCCURRENCE,
    C.SRC_CONTENT,
    C.SRC_NEW_ITEM,
    C.SRC_REPEAT,
    C.SRC_ALS,
    C.SRC_POPULAR_CONTEXT,
)
SECONDS_PER_DAY = 86_400.0
_SIM = "similarity"


def _shaped(df: DataFrame, source: str, score: Column, anchor: Column, n: int) -> DataFrame:
    """Rank 1..n per user by ``score`` (ties: smaller item_id) and the pool columns."""
    w = Window.partitionBy(C.USER_ID).orderBy(score.desc(), F.col(C.ITEM_ID))
    return (
        df.withColumn(C.SOURCE_RANK, F.row_number().over(w))
        .where(F.col(C.SOURCE_RANK) <= n)
        .select(
            C.USER_ID,
            C.ITEM_ID,
            F.lit(source).alias(C.CANDIDATE_SOURCE),
            anchor.cast("string").alias(C.ANCHOR),
            score.cast("double").alias(C.SOURCE_SCORE),
            F.col(C.SOURCE_RANK).cast("int"),
        )
    )


# ------------------------------------------------------------------------------ ALS
def als_candidates(
    user_factors: DataFrame, item_factors: DataFrame, users: DataFrame, n: int, rcfg_block_mb: int = 64
) -> DataFrame:
    """ALS top-n of the factor tables (``user_id, user_idx, factors`` / ``item_id, item_idx, factors``)
    for ``users``: what a pool without a stored ALS list (the validation pool) needs."""
    served = user_factors.join(users.select(C.USER_ID), on=C.USER_ID, how="left_semi")
    top = top_n_for_users(
        served.select(C.USER_IDX, C.FACTORS), item_factors.select(C.ITEM_IDX, C.FACTORS), n, block_mb=rcfg_block_mb
    )
    named = top.join(F.broadcast(item_factors.select(C.ITEM_IDX, C.ITEM_ID)), on=C.ITEM_IDX).join(
        served.select(C.USER_IDX, C.USER_ID), on=C.USER_IDX
    )
    return stored_als_candidates(named, n)


def stored_als_candidates(top_n: DataFrame, n: int) -> DataFrame:
    """The ``als`` source in pool columns from an ALS top-N list (``user_id, item_id, score,
    rank``: gold.candidates' shape), its first ``n`` per user."""
    return top_n.where(F.col(C.RANK) <= n).select(
        C.USER_ID,
        C.ITEM_ID,
        F.lit(C.SRC_ALS).alias(C.CANDIDATE_SOURCE),
        F.lit(None).cast("string").alias(C.ANCHOR),
        F.col(C.SCORE).cast("double").alias(C.SOURCE_SCORE),
        F.col(C.RANK).cast("int").alias(C.SOURCE_RANK),
    )


def cf_scores(pairs: DataFrame, user_factors: DataFrame, item_factors: DataFrame, out: str) -> DataFrame:
    """``pairs`` plus ``out``: the ALS score (factor dot product); null when ALS does not know
    the user or the item."""
    uf = user_factors.select(C.USER_ID, F.col(C.FACTORS).alias("_uf"))
    itf = item_factors.select(C.ITEM_ID, F.col(C.FACTORS).alias("_if"))
    dot = F.aggregate(
        F.zip_with("_uf", "_if", lambda a, b: a * b), F.lit(0.0).cast("double"), lambda acc, x: acc + x.cast("double")
    )
    return (
        pairs.join(uf, on=C.USER_ID, how="left")
        .join(F.broadcast(itf), on=C.ITEM_ID, how="left")
        .withColumn(out, F.when(F.col("_uf").isNotNull() & F.col("_if").isNotNull(), dot))
        .drop("_uf", "_if")
    )


# ------------------------------------------------------------------------------ history-based
def repeat_candidates(history: DataFrame, users: DataFrame, n: int) -> DataFrame:
    """The user's ``n`` most recently bought distinct items; score = baskets holding the item."""
    mine = history.join(users.select(C.USER_ID), on=C.USER_ID, how="left_semi")
    per_item = mine.groupBy(C.USER_ID, C.ITEM_ID).agg(
        F.count_distinct(F.coalesce(C.BASKET_ID, F.col(C.EVENT_TS).cast("string"))).alias("_baskets"),
        F.max(C.EVENT_TS).alias("_last"),
    )
    w = Window.partitionBy(C.USER_ID).orderBy(F.col("_last").desc(), F.col(C.ITEM_ID))
    return (
        per_item.withColumn(C.SOURCE_RANK, F.row_number().over(w))
        .where(F.col(C.SOURCE_RANK) <= n)
        .select(
            C.USER_ID,
            C.ITEM_ID,
            F.lit(C.SRC_REPEAT).alias(C.CANDIDATE_SOURCE),
            F.col(C.ITEM_ID).alias(C.ANCHOR),
            F.col("_baskets").cast("double").alias(C.SOURCE_SCORE),
            F.col(C.SOURCE_RANK).cast("int"),
        )
    )


def _seeded(seeds: DataFrame, neighbours: DataFrame) -> DataFrame:
    """Per (user, neighbour): summed similarity and the seed that contributed most."""
    joined = seeds.join(neighbours, on="item_a", how="inner").where(F.col("item_b") != F.col("item_a"))
    return joined.groupBy(C.USER_ID, F.col("item_b").alias(C.ITEM_ID)).agg(
        F.sum(_SIM).alias("_score"), F.max_by("item_a", F.struct(F.col(_SIM), F.col("item_a"))).alias("_anchor")
    )


def cooccurrence_candidates(
    history: DataFrame,
    users: DataFrame,
    ccfg: CandidatesConfig,
    n_recent: int,
    n: int,
    similarity: DataFrame | None = None,
) -> DataFrame:
    """Items bought in the same baskets as the user's recent items (basket cosine, summed).
    ``similarity``: ``item_similarity`` computed before (of every user's history; then
    ``history`` need only hold the users' own purchases)."""
    seeds = recent_items(history, users, n_recent).withColumnRenamed(C.ITEM_ID, "item_a")
    partners = _seeded(seeds, similarity if similarity is not None else item_similarity(history, ccfg))
    return _shaped(partners, C.SRC_COOCCURRENCE, F.col("_score"), F.col("_anchor"), n)


def content_neighbours(item_features: DataFrame, m: int, block_mb: int = 64) -> DataFrame:
    """``item_a, item_b, similarity``: each item's ``m`` nearest items by text-vector cosine.

    The blocked top-N of ALS does the work: unit vectors as factors, the item itself
    excluded. Items without a vector have no neighbours.
    """
    vectors = item_features.where(F.col(C.TEXT_VECTOR).isNotNull() & (F.size(C.TEXT_VECTOR) > 0))
    norm = F.sqrt(F.aggregate(C.TEXT_VECTOR, F.lit(0.0).cast("double"), lambda acc, x: acc + x * x))
    unit = F.transform(C.TEXT_VECTOR, lambda x: (x / norm).cast("float"))
    w = Window.orderBy(C.ITEM_ID)  # one partition: one row per item, a catalog-sized table
    indexed = (
        vectors.where(norm > 0)
        .select(C.ITEM_ID, unit.alias(C.FACTORS))
        .withColumn(C.ITEM_IDX, (F.row_number().over(w) - 1).cast("int"))
        .persist()
    )
    as_users = indexed.select(F.col(C.ITEM_IDX).alias(C.USER_IDX), C.FACTORS)
    self_pairs = indexed.select(F.col(C.ITEM_IDX).alias(C.USER_IDX), C.ITEM_IDX)
    top = top_n_for_users(as_users, indexed.select(C.ITEM_IDX, C.FACTORS), m, exclude=self_pairs, block_mb=block_mb)
    ids = indexed.select(C.ITEM_IDX, C.ITEM_ID)
    return (
        top.join(
            F.broadcast(ids.withColumnRenamed(C.ITEM_IDX, C.USER_IDX).withColumnRenamed(C.ITEM_ID, "item_a")),
            on=C.USER_IDX,
        )
        .join(F.broadcast(ids.withColumnRenamed(C.ITEM_ID, "item_b")), on=C.ITEM_IDX)
        .select("item_a", "item_b", F.col(C.SCORE).cast("double").alias(_SIM))
    )


def content_candidates(
    history: DataFrame, users: DataFrame, neighbours: DataFrame, new_items: DataFrame, n_recent: int, n: int
) -> DataFrame:
    """Text neighbours of the user's recent items; new items (no sales yet) are labelled
    ``new_item`` so the re-ranking can cap their share."""
    seeds = recent_items(history, users, n_recent).withColumnRenamed(C.ITEM_ID, "item_a")
    similar = _seeded(seeds, neighbours)
    shaped = _shaped(similar, C.SRC_CONTENT, F.col("_score"), F.col("_anchor"), n)
    fresh = F.col("_fresh").isNotNull()
    return (
        shaped.join(new_items.select(C.ITEM_ID, F.lit(True).alias("_fresh")), on=C.ITEM_ID, how="left")
        .withColumn(C.CANDIDATE_SOURCE, F.when(fresh, F.lit(C.SRC_NEW_ITEM)).otherwise(F.col(C.CANDIDATE_SOURCE)))
        .select(*POOL_COLUMNS)
    )


def new_items_at(item_features: DataFrame) -> DataFrame:
    """``item_id``: items known before as_of (catalog or any event) that nobody bought yet."""
    return item_features.where(F.coalesce(F.col(C.N_PURCHASES), F.lit(0)) == 0).select(C.ITEM_ID)


# ------------------------------------------------------------------------------ context popularity
def _age_days(as_of: date) -> Column:
    seconds = calendar.timegm(as_of.timetuple())
    return (F.lit(seconds) - F.unix_seconds(F.col(C.EVENT_TS))) / F.lit(SECONDS_PER_DAY)


def context_popularity(
    history: DataFrame, as_of: date, keys: list[str], half_life_days: float, season_days: int, seasonal_weight: float
) -> DataFrame:
    """``*keys, item_id, score``: distinct buyers weighted by recency (half-life) plus
    ``seasonal_weight`` x distinct buyers in the same weeks one year earlier
    (``as_of - 365 days +- season_days``): on as_of 2011-11-01 the second term is
    November 2010's Christmas shopping, which the last weeks only start to show."""
    recency = F.pow(F.lit(0.5), _age_days(as_of) / F.lit(float(half_life_days))) if half_life_days > 0 else F.lit(1.0)
    recent = (
        history.groupBy(*keys, C.USER_ID, C.ITEM_ID)
        .agg(F.max(recency).alias("_w"))
        .groupBy(*keys, C.ITEM_ID)
        .agg(F.sum("_w").alias("_recent"))
    )
    centre = as_of - timedelta(days=365)
    lo, hi = centre - timedelta(days=season_days), centre + timedelta(days=season_days)
    last_year = history.where((F.to_date(C.EVENT_TS) >= F.lit(lo)) & (F.to_date(C.EVENT_TS) < F.lit(hi)))
    seasonal = last_year.groupBy(*keys, C.ITEM_ID).agg(F.count_distinct(C.USER_ID).cast("double").alias("_season"))
    both = recent.join(seasonal, on=[*keys, C.ITEM_ID], how="full")
    score = F.coalesce(F.col("_recent"), F.lit(0.0)) + F.lit(seasonal_weight) * F.coalesce(F.col("_season"), F.lit(0.0))
    return both.select(*keys, C.ITEM_ID, score.alias(C.SCORE))


def country_lists(
    history: DataFrame,
    as_of: date,
    n: int,
    half_life_days: float,
    season_days: int,
    seasonal_weight: float,
    min_country_buyers: int,
) -> DataFrame:
    """``country, item_id, score, rank`` (rank 1..n): the context-popular list of every country
    with history, plus the global list under country null. Countries with fewer than
    ``min_country_buyers`` buyers get the global list; short country lists are filled from it."""
    located = history.where(F.col(C.COUNTRY).isNotNull())
    buyers = located.groupBy(C.COUNTRY).agg(F.count_distinct(C.USER_ID).alias("_buyers"))
    big = buyers.where(F.col("_buyers") >= min_country_buyers).select(C.COUNTRY)
    per_country = context_popularity(
        located.join(big, on=C.COUNTRY, how="left_semi"),
        as_of,
        [C.COUNTRY],
        half_life_days,
        season_days,
        seasonal_weight,
    )
    overall = context_popularity(history, as_of, [], half_life_days, season_days, seasonal_weight)
    w_global = Window.orderBy(F.col(C.SCORE).desc(), F.col(C.ITEM_ID))  # one row per item: small
    global_top = overall.withColumn(C.RANK, F.row_number().over(w_global)).where(F.col(C.RANK) <= n)
    countries = buyers.select(C.COUNTRY)
    # Country items first (tier 0), then the global list (tier 1); duplicates keep the first.
    own = per_country.withColumn("_tier", F.lit(0))
    fill = countries.crossJoin(F.broadcast(global_top.select(C.ITEM_ID, C.SCORE))).withColumn("_tier", F.lit(1))
    both = own.unionByName(fill)
    first = Window.partitionBy(C.COUNTRY, C.ITEM_ID).orderBy("_tier")
    dedup = both.withColumn("_n", F.row_number().over(first)).where(F.col("_n") == 1)
    w = Window.partitionBy(C.COUNTRY).orderBy(F.col("_tier"), F.col(C.SCORE).desc(), F.col(C.ITEM_ID))
    lists = (
        dedup.withColumn(C.RANK, F.row_number().over(w))
        .where(F.col(C.RANK) <= n)
        .select(C.COUNTRY, C.ITEM_ID, F.col(C.SCORE).cast("double"), F.col(C.RANK).cast("int"))
    )
    return lists.unionByName(
        global_top.select(
            F.lit(None).cast("string").alias(C.COUNTRY),
            C.ITEM_ID,
            F.col(C.SCORE).cast("double"),
            F.col(C.RANK).cast("int"),
        )
    )


def popular_candidates(lists: DataFrame, users: DataFrame, n: int | None) -> DataFrame:
    """Each user gets the first n (None: all) of their country's list (the global list without one)."""
    countries = lists.select(C.COUNTRY).distinct()
    placed = users.select(C.USER_ID, C.COUNTRY).join(
        countries.withColumn("_known", F.lit(True)), on=C.COUNTRY, how="left"
    )
    key = F.when(F.col("_known"), F.col(C.COUNTRY))  # unknown or missing country: the global list
    return _serve_lists(placed.select(C.USER_ID, key.alias("_key")), lists, n)


def _serve_lists(placed: DataFrame, lists: DataFrame, n: int | None) -> DataFrame:
    top = (lists if n is None else lists.where(F.col(C.RANK) <= n)).withColumnRenamed(C.COUNTRY, "_list")
    joined = placed.join(F.broadcast(top), on=F.col("_key").eqNullSafe(F.col("_list")), how="inner")
    return joined.select(
        C.USER_ID,
        C.ITEM_ID,
        F.lit(C.SRC_POPULAR_CONTEXT).alias(C.CANDIDATE_SOURCE),
        F.col("_list").alias(C.ANCHOR),
        F.col(C.SCORE).alias(C.SOURCE_SCORE),
        F.col(C.RANK).alias(C.SOURCE_RANK),
    )


# ------------------------------------------------------------------------------ the pool
def candidate_pool(parts: list[DataFrame]) -> DataFrame:
    """One row per (user, item): the source that ranked it best, ties by ``SOURCE_PRIORITY``."""
    priority = F.array_position(F.array(*[F.lit(s) for s in SOURCE_PRIORITY]), F.col(C.CANDIDATE_SOURCE))
    union = functools.reduce(DataFrame.unionByName, [p.select(*POOL_COLUMNS) for p in parts])
    w = Window.partitionBy(C.USER_ID, C.ITEM_ID).orderBy(F.col(C.SOURCE_RANK), priority)
    return union.withColumn("_n", F.row_number().over(w)).where(F.col("_n") == 1).drop("_n")


def user_countries(history: DataFrame, users: DataFrame) -> DataFrame:
    """``user_id, country``: the country of the user's latest event with one before as_of."""
    w = Window.partitionBy(C.USER_ID).orderBy(F.col(C.EVENT_TS).desc(), F.col(C.COUNTRY))
    latest = (
        history.where(F.col(C.COUNTRY).isNotNull())
        .withColumn("_n", F.row_number().over(w))
        .where(F.col("_n") == 1)
        .select(C.USER_ID, C.COUNTRY)
    )
    return users.select(C.USER_ID).join(latest, on=C.USER_ID, how="left")


POOL_SCHEMA = T.StructType(
    [
        T.StructField(C.USER_ID, T.StringType()),
        T.StructField(C.ITEM_ID, T.StringType()),
        T.StructField(C.CANDIDATE_SOURCE, T.StringType()),
        T.StructField(C.ANCHOR, T.StringType()),
        T.StructField(C.SOURCE_SCORE, T.DoubleType()),
        T.StructField(C.SOURCE_RANK, T.IntegerType()),
    ]
)


def build_pool(
    history: DataFrame,
    users: DataFrame,
    als: DataFrame | None,
    neighbours: DataFrame,
    new_items: DataFrame,
    lists: DataFrame,
    rcfg: RecommendConfig,
    ccfg: CandidatesConfig,
    bundles: DataFrame | None = None,
    similarity: DataFrame | None = None,
) -> DataFrame:
    """Every source for ``users`` (``user_id, country``) from the purchases in ``history``.

    ``als`` is the ``als`` source in pool columns (``stored_als_candidates`` of gold.candidates,
    or ``als_candidates`` of other factors), ``bundles`` the ``bundle`` source
    (``bundles.complete.pool_source``); None leaves a source out. ``similarity``: the
    co-occurrence source's item similarity, when computed before (``cooccurrence_candidates``)."""
    parts = pool_parts(history, users, als, neighbours, new_items, lists, rcfg, ccfg, bundles, similarity)
    if not parts:
        return users.sparkSession.createDataFrame([], POOL_SCHEMA)
    return candidate_pool(parts)


def pool_parts(
    history: DataFrame,
    users: DataFrame,
    als: DataFrame | None,
    neighbours: DataFrame,
    new_items: DataFrame,
    lists: DataFrame,
    rcfg: RecommendConfig,
    ccfg: CandidatesConfig,
    bundles: DataFrame | None = None,
    similarity: DataFrame | None = None,
) -> list[DataFrame]:
    """The sources of :func:`build_pool`, one DataFrame each in pool columns, before
    :func:`candidate_pool` keeps one row per (user, item): a candidate several sources propose
    is in several of them (what the learned ranker reads, ``shoprec.ranker.features``)."""
    pool = rcfg.pool
    parts = []
    if pool.als and als is not None:
        parts.append(als.join(users.select(C.USER_ID), on=C.USER_ID, how="left_semi"))
    if pool.repeat:
        parts.append(repeat_candidates(history, users, pool.repeat))
    if pool.cooccurrence:
        parts.append(cooccurrence_candidates(history, users, ccfg, rcfg.recent_items, pool.cooccurrence, similarity))
    if pool.content:
        parts.append(content_candidates(history, users, neighbours, new_items, rcfg.recent_items, pool.content))
    if pool.popular:
        parts.append(popular_candidates(lists, users, pool.popular))
    if pool.bundle and bundles is not None:
        parts.append(bundles.join(users.select(C.USER_ID), on=C.USER_ID, how="left_semi"))
    return [p.select(*POOL_COLUMNS) for p in parts]
