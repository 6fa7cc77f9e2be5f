"""Ranking and beyond-accuracy metrics in Spark, as ``EVALUATION.md`` defines them.

Inputs
------
``recs``
    ``user_id, item_id, rank`` (int, 1 = best), plus any grouping columns (``source``).
    When a user has the same item more than once, its best rank counts. Ranks are the
    list positions as given (they are not renumbered); they should be distinct per user.
``truth``
    ``user_id, item_id``: the relevant items (duplicates are ignored), plus any grouping
    columns (``segment``, ``variant``).

Grouping (``by``)
-----------------
Every function that aggregates takes ``by``: the columns its output is grouped by, so that
all candidate sources (and segments, truth variants) are scored in one Spark pass instead
of one job per source. A grouping column lives in ``recs``, in ``truth`` (or ``users``), or
in both; inputs are matched on the grouping columns they share. A grouping column only
``recs`` carries (say ``source``) is crossed with the evaluated users, so a user without
a list from some source counts as a miss for that source.

Definitions (K = cutoff, T = |truth| of the user, hits = relevant items at rank <= K)
------------------------------------------------------------------------------------
- ``precision_at_K`` = hits / K (a list shorter than K is not rewarded for it)
- ``recall_at_K`` = hits / T; ``recall_capped_at_K`` = hits / min(K, T)
- ``f1_at_K`` from precision and the uncapped recall
- ``ndcg_at_K``: binary relevance, DCG = sum over hits of 1 / log2(rank + 1); IDCG is the
  DCG of min(K, T) hits at ranks 1..min(K, T)
- ``map_at_K`` = sum over hits of (hits at rank <= r) / r, divided by min(K, T)
- ``hit_rate_at_K`` = 1.0 when hits > 0
- ``mrr`` = 1 / rank of the first hit anywhere in the list, 0 without one
A user without relevant items (only possible when ``users`` is given) scores 0 everywhere.

Beyond accuracy (over the lists' top K, see each function): catalog coverage, novelty,
popularity bias, intra-list diversity; and a sampled AUC of the list ranking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C

DEFAULT_KS = (5, 10, 20)
# item_popularity: the number of distinct history users who bought the item.
AUC = "auc"

# Metrics with a cutoff, in the order they appear in outputs.
RANKING_METRICS = ("precision", "recall", "recall_capped", "f1", "ndcg", "map", "hit_rate")
MRR = "mrr"
COVERAGE = "coverage"
NOVELTY = "novelty"
POPULARITY_BIAS = "popularity_bias"
DIVERSITY = "diversity"
# Users a diversity value is averaged over (those with >= 2 vectored items in the top K).


def metric_column(metric: str, k: int | None = None) -> str:
    """Output column of a metric: ``ndcg_at_10``, or the bare name (``mrr``) without a cutoff."""
    return metric if k is None else f"{metric}_at_{k}"


def ranking_metric_columns(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Per-user metric columns of :func:`ranking_metrics`, in output order."""
    return [metric_column(m, k) for m in RANKING_METRICS for k in _check_ks(ks)] + [MRR]


# ------------------------------------------------------------------------- helpers
def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in ks}))
    if not out or out[0] < 1:
        raise ValueError(f"cutoffs K must be positive integers, got {tuple(ks)!r}")
    return out


def _present(by: Sequence[str], df: DataFrame) -> list[str]:
    return [c for c in by if c in df.columns]


def _check_by(by: Sequence[str], *frames: DataFrame) -> None:
    missing = [c for c in by if not any(c in f.columns for f in frames)]
    if missing:
        raise ValueError(f"grouping columns {missing} are in none of the inputs")


def best_rank(
    recs: DataFrame,
    by: Sequence[str] = (),
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> DataFrame:
    """One row per (by, user, item) with the item's best (smallest) rank."""
    keys = [*_present(by, recs), col_user, col_item]
    return recs.groupBy(*keys).agg(F.min(col_rank).cast("int").alias(col_rank))


def _cross_with_rec_groups(df: DataFrame, recs: DataFrame, by: Sequence[str]) -> DataFrame:
    """Give ``df`` the grouping columns only ``recs`` has: one copy of each row per rec group.

    The rec groups are a handful of distinct values (sources x variants), so they are
    broadcast; rows are matched on the grouping columns both already share.
    """
    by_recs = _present(by, recs)
    missing = [c for c in by_recs if c not in df.columns]
    if not missing:
        return df
    shared = [c for c in by_recs if c in df.columns]
    groups = F.broadcast(recs.select(*by_recs).distinct())
    return df.join(groups, on=shared, how="inner") if shared else df.crossJoin(groups)


def _ordered(by: Sequence[str], *frames: DataFrame) -> list[str]:
    return [c for c in by if any(c in f.columns for f in frames)]


# ------------------------------------------------------------------------- accuracy
def _hit_stats(
    ranked: DataFrame,
    relevant: DataFrame,
    ks: tuple[int, ...],
    by: Sequence[str],
    col_user: str,
    col_item: str,
    col_rank: str,
) -> DataFrame:
    """Per (by, user): hits, DCG and the AP sum at every K, and the first hit's rank."""
    shared = [c for c in _present(by, ranked) if c in relevant.columns]
    hits = ranked.join(relevant, on=[*shared, col_user, col_item], how="inner")
    group = [*_ordered(by, ranked, relevant), col_user]
    # Precision at a hit's rank r needs the hits at ranks <= r: a running count over rank
    # (a range frame, so items that share a rank count alike).
    upto = Window.partitionBy(*group).orderBy(col_rank).rangeBetween(Window.unboundedPreceding, Window.currentRow)
    hits = hits.withColumn("_hits_upto", F.count(F.lit(1)).over(upto))
    rank = F.col(col_rank)
    aggs: list[Column] = []
    for k in ks:
        within = rank <= k
        aggs += [
            F.count(F.when(within, True)).alias(f"_hits_{k}"),
            F.sum(F.when(within, 1.0 / F.log2(rank + 1))).alias(f"_dcg_{k}"),
            F.sum(F.when(within, F.col("_hits_upto") / rank)).alias(f"_ap_{k}"),
        ]
    aggs.append(F.min(col_rank).alias("_first_hit"))
    return hits.groupBy(*group).agg(*aggs)


def _idcg(n_hits: Column) -> Column:
    """DCG of ``n_hits`` hits at ranks 1..n_hits, summed in Spark like DCG itself."""
    terms = F.sequence(F.lit(1), F.greatest(n_hits, F.lit(1)))
    ideal = F.aggregate(terms, F.lit(0.0), lambda acc, r: acc + 1.0 / F.log2(r + 1))
    return F.when(n_hits > 0, ideal)


def _metric_columns(ks: tuple[int, ...]) -> list[Column]:
    n = F.col(C.N_TRUTH)
    out: list[Column] = []
    per_k: dict[str, list[Column]] = {m: [] for m in RANKING_METRICS}
    for k in ks:
        hits = F.coalesce(F.col(f"_hits_{k}"), F.lit(0)).cast("double")
        capped = F.least(F.lit(k), n)
        precision = hits / k
        recall = F.when(n > 0, hits / n).otherwise(F.lit(0.0))
        per_k["precision"].append(precision.alias(metric_column("precision", k)))
        per_k["recall"].append(recall.alias(metric_column("recall", k)))
        per_k["recall_capped"].append(
            F.when(capped > 0, hits / capped).otherwise(F.lit(0.0)).alias(metric_column("recall_capped", k))
        )
        per_k["f1"].append(
            F.when(hits > 0, 2 * precision * recall / (precision + recall))
            .otherwise(F.lit(0.0))
            .alias(metric_column("f1", k))
        )
        per_k["ndcg"].append(F.coalesce(F.col(f"_dcg_{k}") / _idcg(capped), F.lit(0.0)).alias(metric_column("ndcg", k)))
        per_k["map"].append(
            F.coalesce(F.col(f"_ap_{k}") / F.when(capped > 0, capped), F.lit(0.0)).alias(metric_column("map", k))
        )
        per_k["hit_rate"].append(F.when(hits > 0, F.lit(1.0)).otherwise(F.lit(0.0)).alias(metric_column("hit_rate", k)))
    for m in RANKING_METRICS:
        out += per_k[m]
    out.append(F.coalesce(1.0 / F.col("_first_hit"), F.lit(0.0)).alias(MRR))
    return out


def ranking_metrics(
    recs: DataFrame,
    truth: DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    users: DataFrame | None = None,
    by: Sequence[str] = (),
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> DataFrame:
    """Per-user accuracy metrics (module docstring) at every K, and MRR.

    Returns one row per user of ``users`` (default: the distinct users of ``truth``) and
    group of ``by``: ``*by, user_id, n_truth, precision_at_K.., recall_at_K..,
    recall_capped_at_K.., f1_at_K.., ndcg_at_K.., map_at_K.., hit_rate_at_K.., mrr``.
    Users without recommendations score 0. ``users`` must carry the grouping columns
    ``truth`` carries.

    >>> ranking_metrics(recs, truth, ks=(10,), by=("source",))   # doctest: +SKIP
    """
    ks = _check_ks(ks)
    by = tuple(by)
    _check_by(by, recs, truth, *([users] if users is not None else []))
    by_truth = _present(by, truth)
    relevant = truth.select(*by_truth, col_user, col_item).distinct()
    if users is None:
        users = relevant.select(*by_truth, col_user).distinct()
    else:
        lacking = [c for c in by_truth if c not in users.columns]
        if lacking:
            raise ValueError(f"users must carry the grouping columns of truth; missing {lacking}")
        users = users.select(*_present(by, users), col_user).distinct()
    ranked = best_rank(recs, by, col_user, col_item, col_rank)
    grid = _cross_with_rec_groups(users, ranked, by)
    n_truth = relevant.groupBy(*by_truth, col_user).agg(F.count(F.lit(1)).alias(C.N_TRUTH))
    hits = _hit_stats(ranked, relevant, ks, by, col_user, col_item, col_rank)
    group = [*_ordered(by, grid), col_user]
    scored = (
        grid.join(n_truth, on=[*by_truth, col_user], how="left")
        .withColumn(C.N_TRUTH, F.coalesce(F.col(C.N_TRUTH), F.lit(0)).cast("long"))
        .join(hits, on=[*_ordered(by, ranked, relevant), col_user], how="left")
    )
    return scored.select(*group, C.N_TRUTH, *_metric_columns(ks))


def mean_ranking_metrics_by(
    recs: DataFrame,
    truth: DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    users: DataFrame | None = None,
    by: Sequence[str] = (),
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> DataFrame:
    """Means of :func:`ranking_metrics` over users: ``*by, n_users, <metric columns>``."""
    per_user = ranking_metrics(recs, truth, ks, users, by, col_user, col_item, col_rank)
    group = [c for c in by if c in per_user.columns]
    means = [F.avg(c).alias(c) for c in ranking_metric_columns(ks)]
    return per_user.groupBy(*group).agg(F.count(F.lit(1)).alias(C.N_USERS), *means)


def mean_ranking_metrics(
    recs: DataFrame,
    truth: DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    users: DataFrame | None = None,
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> dict[str, float]:
    """Means over all users, as a dict (one aggregation); ``n_users`` is the user count.

    Without any user every metric is 0.0.
    """
    row = mean_ranking_metrics_by(recs, truth, ks, users, (), col_user, col_item, col_rank).first()
    out: dict[str, float] = {C.N_USERS: int(row[C.N_USERS]) if row else 0}
    for c in ranking_metric_columns(ks):
        value = row[c] if row else None
        out[c] = float(value) if value is not None else 0.0
    return out


# ------------------------------------------------------------------------- AUC
def _catalog_index(catalog: DataFrame, col_item: str) -> DataFrame:
    # A global order needs one partition; the catalog is one row per item (thousands to
    # a few hundred thousand), and a stable index is what makes the draws reproducible.
    order = Window.orderBy(col_item).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    items = catalog.select(col_item).where(F.col(col_item).isNotNull()).distinct()
    return items.select(F.col(col_item).alias(C.NEGATIVE_ITEM), (F.count(F.lit(1)).over(order) - 1).alias("_idx"))


def sample_negatives(
    truth: DataFrame,
    catalog: DataFrame,
    negatives_per_positive: int,
    seed: int,
    by: Sequence[str] = (),
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
) -> DataFrame:
    """For every (user, relevant item): up to ``negatives_per_positive`` distinct catalog items
    that are not in the user's truth.

    Returns ``*by, user_id, positive_item, negative_item``. Draws are a hash of (seed, user,
    positive, draw number) into the catalog's item order, so the same inputs and seed give
    the same negatives on any cluster. Twice as many draws as asked are made and the first
    ``negatives_per_positive`` usable ones kept; a user whose truth covers almost all of
    the catalog may get fewer.
    """
    if negatives_per_positive < 1:
        raise ValueError(f"negatives_per_positive must be >= 1, got {negatives_per_positive}")
    by_truth = _present(by, truth)
    relevant = truth.select(*by_truth, col_user, col_item).distinct()
    indexed = _catalog_index(catalog, col_item)
    size = indexed.agg(F.count(F.lit(1)).alias("_n_catalog"))
    draws = (
        relevant.select(
            *by_truth,
            col_user,
            F.col(col_item).alias(C.POSITIVE_ITEM),
            F.explode(F.sequence(F.lit(0), F.lit(2 * negatives_per_positive - 1))).alias("_draw"),
        )
        .crossJoin(F.broadcast(size))
        .where(F.col("_n_catalog") > 0)
        .withColumn(
            "_idx",
            F.pmod(
                F.xxhash64(F.lit(seed), F.col(col_user), F.col(C.POSITIVE_ITEM), F.col("_draw")), F.col("_n_catalog")
            ),
        )
        .join(indexed, on="_idx", how="inner")
        .join(
            relevant.select(*by_truth, col_user, F.col(col_item).alias(C.NEGATIVE_ITEM)),
            on=[*by_truth, col_user, C.NEGATIVE_ITEM],
            how="left_anti",
        )
    )
    keys = [*by_truth, col_user, C.POSITIVE_ITEM]
    first_draw = draws.groupBy(*keys, C.NEGATIVE_ITEM).agg(F.min("_draw").alias("_draw"))
    order = Window.partitionBy(*keys).orderBy("_draw")
    return (
        first_draw.withColumn("_nth", F.row_number().over(order))
        .where(F.col("_nth") <= negatives_per_positive)
        .select(*keys, C.NEGATIVE_ITEM)
    )


def _pair_value(pos_rank: Column, neg_rank: Column) -> Column:
    # Score = -rank in the list, -infinity off the list; ties (both off the list) count 0.5.
    return (
        F.when(pos_rank.isNull() & neg_rank.isNull(), 0.5)
        .when(pos_rank.isNull(), 0.0)
        .when(neg_rank.isNull(), 1.0)
        .when(pos_rank < neg_rank, 1.0)
        .when(pos_rank == neg_rank, 0.5)
        .otherwise(0.0)
    )


def sampled_auc_per_user(
    recs: DataFrame,
    truth: DataFrame,
    catalog: DataFrame,
    negatives_per_positive: int,
    seed: int,
    by: Sequence[str] = (),
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> DataFrame:
    """Per-user AUC of the list ranking: ``*by, user_id, auc, n_pairs``.

    Each held-out positive is compared with its sampled negatives
    (:func:`sample_negatives`); an item scores -rank when in the user's list, -infinity
    otherwise; a pair counts 1 when the positive scores higher, 0.5 on a tie. A user's AUC
    is the mean over their pairs; a user without a list scores 0.5.
    """
    by = tuple(by)
    _check_by(by, recs, truth)
    ranked = best_rank(recs, by, col_user, col_item, col_rank)
    pairs = _cross_with_rec_groups(
        sample_negatives(truth, catalog, negatives_per_positive, seed, by, col_user, col_item), ranked, by
    )
    by_recs = _present(by, ranked)
    pos = ranked.select(*by_recs, col_user, F.col(col_item).alias(C.POSITIVE_ITEM), F.col(col_rank).alias("_pos_rank"))
    neg = ranked.select(*by_recs, col_user, F.col(col_item).alias(C.NEGATIVE_ITEM), F.col(col_rank).alias("_neg_rank"))
    scored = (
        pairs.join(pos, on=[*by_recs, col_user, C.POSITIVE_ITEM], how="left")
        .join(neg, on=[*by_recs, col_user, C.NEGATIVE_ITEM], how="left")
        .withColumn("_value", _pair_value(F.col("_pos_rank"), F.col("_neg_rank")))
    )
    group = [*_ordered(by, pairs), col_user]
    return scored.groupBy(*group).agg(F.avg("_value").alias(AUC), F.count(F.lit(1)).alias(C.N_PAIRS))


def sampled_auc(
    recs: DataFrame,
    truth: DataFrame,
    catalog: DataFrame,
    negatives_per_positive: int,
    seed: int,
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> float:
    """Mean over users of :func:`sampled_auc_per_user` (0.5 means no better than chance)."""
    per_user = sampled_auc_per_user(
        recs, truth, catalog, negatives_per_positive, seed, (), col_user, col_item, col_rank
    )
    row = per_user.agg(F.avg(AUC)).first()
    assert row is not None  # a global aggregate: one row
    value = row[0]
    return float(value) if value is not None else float("nan")


# ------------------------------------------------------------------------- beyond accuracy
def popularity_percentiles(item_popularity: DataFrame, col_item: str = C.ITEM_ID) -> DataFrame:
    """``item_id, n_buyers, popularity_pct``: the share of catalog items at most as popular.

    ``item_popularity`` holds one row per catalog item (zero-buyer items included) with
    ``n_buyers``. The most popular item has 1.0; with 4 items of 3, 2, 1, 1 buyers the
    percentiles are 1.0, 0.75, 0.5, 0.5.
    """
    # cume_dist is a ranking function: Spark fixes its frame. One partition is fine: one
    # row per catalog item.
    order = Window.orderBy(F.col(C.N_BUYERS))
    return item_popularity.select(col_item, C.N_BUYERS, F.cume_dist().over(order).alias("popularity_pct"))


def _self_information(n_users: int) -> Column:
    # p(item) = share of history users who bought it; an item nobody bought counts as
    # bought once, so its self-information stays finite (log2 n_users, the maximum).
    buyers = F.greatest(F.coalesce(F.col(C.N_BUYERS), F.lit(0)), F.lit(1)).cast("double")
    return -F.log2(buyers / F.lit(float(max(n_users, 1))))


def beyond_accuracy(
    recs: DataFrame,
    item_popularity: DataFrame,
    n_users: int,
    n_catalog_items: int,
    ks: Sequence[int] = DEFAULT_KS,
    by: Sequence[str] = (),
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> DataFrame:
    """Coverage, novelty and popularity bias of the lists' top K, in one aggregation.

    Returns ``*by, n_users, coverage_at_K.., novelty_at_K.., popularity_bias_at_K..``
    (``n_users``: users with a list in the group). Definitions:

    - coverage: distinct items recommended in any top K / ``n_catalog_items``
    - novelty: mean over recommended (user, item) pairs in the top K of -log2 p(item),
      p = ``n_buyers`` / ``n_users`` (history users)
    - popularity bias: mean over the same pairs of the item's popularity percentile
      (:func:`popularity_percentiles`: 1.0 = the most popular item, items missing from
      ``item_popularity`` count 0.0); a popularity recommender scores near 1.0, a uniform
      random one about 0.5.
    """
    ks = _check_ks(ks)
    by_recs = _present(by, recs)
    top = best_rank(recs, by_recs, col_user, col_item, col_rank).where(F.col(col_rank) <= max(ks))
    scored = top.join(popularity_percentiles(item_popularity, col_item), on=col_item, how="left")
    self_info = _self_information(n_users)
    pct = F.coalesce(F.col("popularity_pct"), F.lit(0.0))
    aggs: list[Column] = [F.count_distinct(col_user).alias(C.N_USERS)]
    for k in ks:
        within = F.col(col_rank) <= k
        aggs.append(
            (F.count_distinct(F.when(within, F.col(col_item))) / F.lit(float(max(n_catalog_items, 1)))).alias(
                metric_column(COVERAGE, k)
            )
        )
    aggs += [F.avg(F.when(F.col(col_rank) <= k, self_info)).alias(metric_column(NOVELTY, k)) for k in ks]
    aggs += [F.avg(F.when(F.col(col_rank) <= k, pct)).alias(metric_column(POPULARITY_BIAS, k)) for k in ks]
    return scored.groupBy(*by_recs).agg(*aggs)


def _scalar(df: DataFrame, column: str) -> float | None:
    row = df.select(column).first()
    return float(row[0]) if row is not None and row[0] is not None else None


def catalog_coverage(
    recs: DataFrame, n_catalog_items: int, k: int, col_item: str = C.ITEM_ID, col_rank: str = C.RANK
) -> float:
    """Share of the catalog that appears in at least one user's top k."""
    top = recs.where(F.col(col_rank) <= k)
    row = top.agg(F.count_distinct(col_item).alias("n")).first()
    assert row is not None  # a global aggregate: one row
    distinct = row["n"]
    return distinct / max(n_catalog_items, 1)


def novelty(
    recs: DataFrame,
    item_popularity: DataFrame,
    n_users: int,
    k: int,
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> float | None:
    """Mean self-information -log2 p(item) of recommended items in the top k (None: no recs)."""
    df = beyond_accuracy(recs, item_popularity, n_users, 1, (k,), (), col_user, col_item, col_rank)
    return _scalar(df, metric_column(NOVELTY, k))


def popularity_bias(
    recs: DataFrame,
    item_popularity: DataFrame,
    k: int,
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
) -> float | None:
    """Mean popularity percentile of the items in the top k (see :func:`beyond_accuracy`)."""
    df = beyond_accuracy(recs, item_popularity, 1, 1, (k,), (), col_user, col_item, col_rank)
    return _scalar(df, metric_column(POPULARITY_BIAS, k))


def _unit_vectors(item_vectors: DataFrame, col_item: str, col_vector: str) -> DataFrame:
    # Normalise once per item so that a pair's cosine is a plain dot product. Items with
    # no vector or a zero vector have no direction and are left out.
    norm = F.sqrt(F.aggregate(F.transform(col_vector, lambda x: x * x), F.lit(0.0), lambda acc, x: acc + x))
    with_norm = item_vectors.select(col_item, F.col(col_vector).cast("array<double>").alias("_v"), norm.alias("_norm"))
    return with_norm.where(F.col("_norm") > 0).select(
        col_item, F.transform("_v", lambda x: x / F.col("_norm")).alias("_unit")
    )


def intra_list_diversity_by(
    recs: DataFrame,
    item_vectors: DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    by: Sequence[str] = (),
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
    col_vector: str = C.TEXT_VECTOR,
) -> DataFrame:
    """1 - mean pairwise cosine of the item vectors in each user's top K, averaged over users.

    Returns ``*by, diversity_at_K.., diversity_users_at_K..``; a user counts at K when at
    least 2 of their top-K items have a (non-zero) vector. The pairs come from a self-join
    of the top-K rows on (by, user): at most K(K-1)/2 pairs per user, no loop over users.
    """
    ks = _check_ks(ks)
    by_recs = _present(by, recs)
    keys = [*by_recs, col_user]
    top = (
        best_rank(recs, by_recs, col_user, col_item, col_rank)
        .where(F.col(col_rank) <= max(ks))
        .join(_unit_vectors(item_vectors, col_item, col_vector), on=col_item, how="inner")
    )
    left = top.select(
        *keys, F.col(col_item).alias("_item_a"), F.col(col_rank).alias("_rank_a"), F.col("_unit").alias("_vec_a")
    )
    right = top.select(
        *keys, F.col(col_item).alias("_item_b"), F.col(col_rank).alias("_rank_b"), F.col("_unit").alias("_vec_b")
    )
    pairs = left.join(right, on=keys, how="inner").where(F.col("_item_a") < F.col("_item_b"))
    cosine = F.aggregate(F.zip_with("_vec_a", "_vec_b", lambda x, y: x * y), F.lit(0.0), lambda acc, x: acc + x)
    deeper = F.greatest("_rank_a", "_rank_b")
    per_user = pairs.groupBy(*keys).agg(*[F.avg(F.when(deeper <= k, cosine)).alias(f"_cos_{k}") for k in ks])
    aggs = [F.avg(1.0 - F.col(f"_cos_{k}")).alias(metric_column(DIVERSITY, k)) for k in ks]
    aggs += [F.count(f"_cos_{k}").alias(metric_column(C.DIVERSITY_USERS, k)) for k in ks]
    return per_user.groupBy(*by_recs).agg(*aggs)


def intra_list_diversity(
    recs: DataFrame,
    item_vectors: DataFrame,
    k: int,
    col_user: str = C.USER_ID,
    col_item: str = C.ITEM_ID,
    col_rank: str = C.RANK,
    col_vector: str = C.TEXT_VECTOR,
) -> float | None:
    """Intra-list diversity at k over all users (None when no user has 2 vectored items)."""
    df = intra_list_diversity_by(recs, item_vectors, (k,), (), col_user, col_item, col_rank, col_vector)
    return _scalar(df, metric_column(DIVERSITY, k))
