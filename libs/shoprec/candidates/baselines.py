"""Baseline candidate sources (EVALUATION.md "Baselines"): buy it again, popularity, co-occurrence.

Every function takes the purchases of the history (``split.purchases(split.history(...))``:
known customers buying products before ``as_of``; rows at or after ``as_of`` are dropped
here as well, so a caller's mistake cannot leak the evaluation window), the users to
serve and ``CandidatesConfig``, and returns ``user_id, item_id, score, rank`` with rank
1..n per user. Ties in score go to the smaller item_id, so reruns give the same lists.

- :func:`repeat`: "buy it again": the user's own items by recency-decayed basket count,
  the global popular items after them; :func:`choose_repeat_half_life` picks the decay's
  half-life on the validation window.
- :func:`popular_global`: recency-weighted distinct buyers, the same list for everyone.
- :func:`popular_by_country`: the same per country of purchase, served by the user's
  country; filled from the global list when a country has fewer than n items.
- :func:`popular_by_hour`: the same per hour-of-day bucket, served by the bucket the user
  shops in most; users without history get the global list.
- :func:`cooccurrence`: items bought in the same baskets as the user's recent items.

``cfg.exclude_bought`` removes the items each user bought before ``as_of`` from every
source but :func:`repeat` (whose list is those items); lists are still filled to n where
the source has enough items.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import CandidatesConfig
from shoprec.evaluation.metrics import mean_ranking_metrics_by
from shoprec.split import TemporalSplit

CANDIDATE_COLUMNS = (C.USER_ID, C.ITEM_ID, C.SCORE, C.RANK)
SECONDS_PER_DAY = 86_400.0
REPEAT_TUNING_K = 10
_BUCKET = "hour_bucket"
_HALF_LIFE = "half_life_days"


# ------------------------------------------------------------------------- shared steps
def _history(history_purchases: DataFrame, as_of: date) -> DataFrame:
    cutoff = datetime.combine(as_of, time())  # midnight in the session time zone (UTC), as the split
    return history_purchases.where((F.col(C.EVENT_TS) < F.lit(cutoff)) & F.col(C.USER_ID).isNotNull())


def _user_ids(users: DataFrame) -> DataFrame:
    return users.select(C.USER_ID).where(F.col(C.USER_ID).isNotNull()).distinct()


def _bought(history: DataFrame, cfg: CandidatesConfig) -> DataFrame | None:
    """(user, item) pairs to keep out of the lists, or None when repeats are allowed."""
    return history.select(C.USER_ID, C.ITEM_ID).distinct() if cfg.exclude_bought else None


def _recency_weight(as_of: date, half_life_days: float | Column) -> Column:
    """0.5 ** (age in days / half-life); a half-life <= 0 turns the decay off.

    ``half_life_days`` may be a column (one list per half-life of a grid in one pass).
    """
    if not isinstance(half_life_days, Column) and half_life_days <= 0:
        return F.lit(1.0)
    as_of_seconds = calendar.timegm(as_of.timetuple())
    age_days = (F.lit(as_of_seconds) - F.unix_seconds(F.col(C.EVENT_TS))) / F.lit(SECONDS_PER_DAY)
    if not isinstance(half_life_days, Column):
        return F.pow(F.lit(0.5), age_days / F.lit(float(half_life_days)))
    return F.when(half_life_days <= 0, F.lit(1.0)).otherwise(F.pow(F.lit(0.5), age_days / half_life_days))


def _popularity(history: DataFrame, keys: list[str], cfg: CandidatesConfig, as_of: date) -> DataFrame:
    """``*keys, item_id, score``: recency-weighted distinct buyers.

    Each buyer counts once per item (a wholesaler's 50 reorders do not make a bestseller),
    weighted by the age of their latest purchase of it.
    """
    latest = history.groupBy(*keys, C.USER_ID, C.ITEM_ID).agg(
        F.max(_recency_weight(as_of, cfg.popularity_half_life_days)).alias("_weight")
    )
    return latest.groupBy(*keys, C.ITEM_ID).agg(F.sum("_weight").alias(C.SCORE))


def _ranked(scores: DataFrame, keys: list[str]) -> DataFrame:
    """Adds rank 1.. per key, best score first, ties to the smaller item_id."""
    # Without keys the order is global (one partition): one row per item, a small table.
    order = Window.partitionBy(*keys).orderBy(F.col(C.SCORE).desc(), F.col(C.ITEM_ID))
    return scores.withColumn(C.RANK, F.row_number().over(order))


def _renumbered(lists: DataFrame, n: int, order: list[Column]) -> DataFrame:
    """Ranks 1..n per user in the given order (ties to the smaller item_id)."""
    w = Window.partitionBy(C.USER_ID).orderBy(*order, F.col(C.ITEM_ID))
    return (
        lists.withColumn(C.RANK, F.row_number().over(w))
        .where(F.col(C.RANK) <= n)
        .select(C.USER_ID, C.ITEM_ID, F.col(C.SCORE).cast("double"), F.col(C.RANK).cast("int"))
    )


def _serve(ranked: DataFrame, users: DataFrame, keys: list[str], bought: DataFrame | None, n: int) -> DataFrame:
    """Each user gets the top n of the ranked list of their key (one list without keys).

    With ``bought``, a user's own items are dropped first. A user who bought b items can
    lose at most b of the first n + b, so only those are joined: the join stays n + b rows
    per user instead of the whole catalog.
    """
    if bought is None:
        top = ranked.where(F.col(C.RANK) <= n)
        lists = users.join(top, on=keys, how="inner") if keys else users.crossJoin(F.broadcast(top))
        return lists.select(C.USER_ID, C.ITEM_ID, F.col(C.SCORE).cast("double"), F.col(C.RANK).cast("int"))
    n_bought = bought.groupBy(C.USER_ID).agg(F.count(F.lit(1)).alias("_n_bought"))
    limited = users.join(n_bought, on=C.USER_ID, how="left").withColumn(
        "_limit", F.lit(n) + F.coalesce(F.col("_n_bought"), F.lit(0))
    )
    joined = limited.join(ranked, on=keys, how="inner") if keys else limited.crossJoin(ranked)
    lists = joined.where(F.col(C.RANK) <= F.col("_limit")).join(bought, on=[C.USER_ID, C.ITEM_ID], how="left_anti")
    return _renumbered(lists, n, [F.col(C.RANK)])


def _filled(own: DataFrame, fallback: DataFrame, n: int) -> DataFrame:
    """A user's own list first, then fallback items not already in it, cut at n.

    Scores keep their source's scale (a country score next to a global score); the rank
    is what orders the list.
    """
    extra = fallback.join(own.select(C.USER_ID, C.ITEM_ID), on=[C.USER_ID, C.ITEM_ID], how="left_anti")
    both = own.withColumn("_tier", F.lit(0)).unionByName(extra.withColumn("_tier", F.lit(1)))
    return _renumbered(both, n, [F.col("_tier"), F.col(C.RANK)])


def _global_lists(history: DataFrame, users: DataFrame, cfg: CandidatesConfig, as_of: date) -> DataFrame:
    ranked = _ranked(_popularity(history, [], cfg, as_of), [])
    return _serve(ranked, _user_ids(users), [], _bought(history, cfg), cfg.n)


# ------------------------------------------------------------------------- buy it again
def _repeat_lists(
    history: DataFrame, users: DataFrame, cfg: CandidatesConfig, as_of: date, half_lives: Sequence[float]
) -> DataFrame:
    """``half_life_days, user_id, item_id, score, rank``: the repeat list of every user of
    ``users`` for every half-life, in one pass (``history`` is already cut at as_of).

    Own items score sum over baskets of the decay (> 0); the popular fill scores -1, -2, ...
    (minus its popularity rank), below every own item whatever the half-life.
    """
    spark = history.sparkSession
    served = _user_ids(users)
    points = F.broadcast(spark.createDataFrame([(float(h),) for h in sorted(set(half_lives))], [_HALF_LIFE]))
    # A basket counts once however many lines hold the item; a purchase without a basket
    # id is its own occasion (as in _favourite_bucket).
    occasion = F.coalesce(F.col(C.BASKET_ID), F.col(C.EVENT_TS).cast("string"))
    baskets = (
        history.join(served, on=C.USER_ID, how="left_semi")
        .groupBy(C.USER_ID, C.ITEM_ID, occasion.alias("_basket"))
        .agg(F.max(C.EVENT_TS).alias(C.EVENT_TS))
    )
    own = (
        baskets.crossJoin(points)
        .groupBy(_HALF_LIFE, C.USER_ID, C.ITEM_ID)
        .agg(F.sum(_recency_weight(as_of, F.col(_HALF_LIFE))).alias(C.SCORE))
    )
    own_order = Window.partitionBy(_HALF_LIFE, C.USER_ID).orderBy(F.col(C.SCORE).desc(), F.col(C.ITEM_ID))
    own = own.withColumn(C.RANK, F.row_number().over(own_order)).where(F.col(C.RANK) <= cfg.n)
    # The fill: the global popular list (the popular baseline's scores) without the items
    # the user bought, the same for every half-life. A user with b own items needs n - b
    # of it, and at most b of the top n are theirs, so the top n is enough.
    popular = _serve(_ranked(_popularity(history, [], cfg, as_of), []), served, [], None, cfg.n)
    fill = (
        popular.join(baskets.select(C.USER_ID, C.ITEM_ID), on=[C.USER_ID, C.ITEM_ID], how="left_anti")
        .withColumn(C.SCORE, -F.col(C.RANK).cast("double"))
        .crossJoin(points)
    )
    both = own.withColumn("_tier", F.lit(0)).unionByName(fill.withColumn("_tier", F.lit(1)))
    order = Window.partitionBy(_HALF_LIFE, C.USER_ID).orderBy(F.col("_tier"), F.col(C.RANK), F.col(C.ITEM_ID))
    return (
        both.withColumn(C.RANK, F.row_number().over(order))
        .where(F.col(C.RANK) <= cfg.n)
        .select(_HALF_LIFE, C.USER_ID, C.ITEM_ID, F.col(C.SCORE).cast("double"), F.col(C.RANK).cast("int"))
    )


def repeat(
    history_purchases: DataFrame,
    users: DataFrame,
    cfg: CandidatesConfig,
    as_of: date,
    half_life_days: float | None = None,
) -> DataFrame:
    """ "Buy it again": the user's own items before as_of, then popular items, n per user.

    score of an own item = sum over the user's distinct baskets holding it of 0.5 ** (days
    from the basket to as_of / half-life) (half-life 0: the basket count). The half-life is
    ``half_life_days``, else ``cfg.repeat_half_life_days`` (:func:`choose_repeat_half_life`
    picks one on the validation window). After the own items come the items of
    :func:`popular_global` the user never bought, scored -1, -2, ... (below every own item).
    Users without history get the popular list alone.

    ``cfg.exclude_bought`` does not apply: buying one's own items again is this baseline.
    """
    half_life = half_life_days if half_life_days is not None else cfg.repeat_half_life_days
    if half_life is None:
        raise ValueError(
            "repeat needs a half-life: pass half_life_days or set candidates.repeat_half_life_days "
            "(choose_repeat_half_life picks one on the validation window)"
        )
    lists = _repeat_lists(_history(history_purchases, as_of), users, cfg, as_of, [half_life])
    return lists.select(*CANDIDATE_COLUMNS)


@dataclass(frozen=True)
class HalfLifeSearch:
    """The repeat baseline's half-life grid scored on the validation window."""

    half_life_days: float  # the chosen one
    ndcg: dict[float, float]  # NDCG@10 per half-life (days; 0 = no decay)
    recall: dict[float, float]  # Recall@10
    n_users: int  # warm users with purchases in the validation window

    def lines(self) -> list[str]:
        if not self.n_users:
            return [f"  repeat half-life {self.half_life_days:g} days: no warm users in the validation window"]
        out = [f"  repeat half-life on the validation window, {self.n_users:,} warm users:"]
        for h in sorted(self.ndcg):
            label = " (no decay)" if h == 0 else ""
            mark = "  <- chosen" if h == self.half_life_days else ""
            out.append(f"    {h:>6g} days  NDCG@10 {self.ndcg[h]:.4f}  Recall@10 {self.recall[h]:.4f}{label}{mark}")
        return out


def choose_repeat_half_life(
    history_purchases: DataFrame, cfg: CandidatesConfig, split: TemporalSplit
) -> HalfLifeSearch:
    """The half-life of ``cfg.repeat_half_life_grid`` whose repeat lists score best.

    The lists are built as of the validation start from the history before it and scored
    by NDCG@10 (ties: the smaller half-life) against the validation window's purchases of
    the users who bought before it (a user without history gets the same popular list at
    every half-life). Only rows before ``split.as_of`` are read.
    """
    tuning = split.for_tuning()
    history = _history(history_purchases, split.as_of)
    before = _history(history, tuning.as_of)
    truth = tuning.evaluation(history).select(C.USER_ID, C.ITEM_ID).distinct()
    users = truth.select(C.USER_ID).distinct().join(before.select(C.USER_ID), on=C.USER_ID, how="left_semi")
    truth = truth.join(users, on=C.USER_ID, how="left_semi")
    grid = sorted({float(h) for h in cfg.repeat_half_life_grid})
    lists = _repeat_lists(before, users, cfg, tuning.as_of, grid).where(F.col(C.RANK) <= REPEAT_TUNING_K)
    metrics = mean_ranking_metrics_by(lists, truth, ks=(REPEAT_TUNING_K,), by=(_HALF_LIFE,))
    rows = metrics.collect()  # small: one row per grid point
    ndcg = dict.fromkeys(grid, 0.0)
    recall = dict.fromkeys(grid, 0.0)
    for r in rows:
        ndcg[float(r[_HALF_LIFE])] = float(r[f"ndcg_at_{REPEAT_TUNING_K}"] or 0.0)
        recall[float(r[_HALF_LIFE])] = float(r[f"recall_at_{REPEAT_TUNING_K}"] or 0.0)
    best = min(grid, key=lambda h: (-round(ndcg[h], 6), h))
    return HalfLifeSearch(best, ndcg, recall, max((int(r[C.N_USERS]) for r in rows), default=0))


# ------------------------------------------------------------------------- popularity
def popular_global(history_purchases: DataFrame, users: DataFrame, cfg: CandidatesConfig, as_of: date) -> DataFrame:
    """The n items with most recency-weighted distinct buyers, for every user of ``users``.

    score = sum over the item's buyers of 0.5 ** (days from their latest purchase of it to
    as_of / ``cfg.popularity_half_life_days``).
    """
    return _global_lists(_history(history_purchases, as_of), users, cfg, as_of)


def popular_by_country(history_purchases: DataFrame, users: DataFrame, cfg: CandidatesConfig, as_of: date) -> DataFrame:
    """Popularity (as :func:`popular_global`) among purchases made in the user's country.

    ``users`` has ``user_id, country``. Countries are those of the purchase rows. A
    country with fewer than n items (after ``exclude_bought``) is filled from the global
    list; users without a country, or from a country nobody bought in, get the global list.
    """
    history = _history(history_purchases, as_of)
    per_country = _ranked(
        _popularity(history.where(F.col(C.COUNTRY).isNotNull()), [C.COUNTRY], cfg, as_of), [C.COUNTRY]
    )
    located = users.select(C.USER_ID, C.COUNTRY).where(F.col(C.USER_ID).isNotNull() & F.col(C.COUNTRY).isNotNull())
    own = _serve(per_country, located.distinct(), [C.COUNTRY], _bought(history, cfg), cfg.n)
    return _filled(own, _global_lists(history, users, cfg, as_of), cfg.n)


def hour_bucket(ts: Column, starts: tuple[int, ...]) -> Column:
    """The hour-of-day bucket of a timestamp: the latest bucket start <= its hour (UTC).

    Hours before the first start belong to the last bucket (it runs past midnight), so
    starts (6, 18) make buckets 6-17 and 18-5.
    """
    starts = tuple(sorted(set(starts)))
    if not starts or starts[0] < 0 or starts[-1] > 23:
        raise ValueError(f"hour_buckets must be hours 0..23, got {starts!r}")
    if len(starts) == 1:
        return F.lit(starts[0])
    hour = F.hour(ts)
    return F.coalesce(F.greatest(*[F.when(hour >= s, F.lit(s)) for s in starts]), F.lit(starts[-1]))


def _favourite_bucket(history: DataFrame) -> DataFrame:
    """``user_id, hour_bucket``: where the user placed most orders; ties to the latest, then earliest bucket."""
    # An order is a basket; a purchase without one counts as its own occasion.
    occasion = F.coalesce(F.col(C.BASKET_ID), F.col(C.EVENT_TS).cast("string"))
    counts = history.groupBy(C.USER_ID, _BUCKET).agg(
        F.count_distinct(occasion).alias("_orders"), F.max(C.EVENT_TS).alias("_last")
    )
    w = Window.partitionBy(C.USER_ID).orderBy(F.col("_orders").desc(), F.col("_last").desc(), F.col(_BUCKET))
    return counts.withColumn("_nth", F.row_number().over(w)).where(F.col("_nth") == 1).select(C.USER_ID, _BUCKET)


def popular_by_hour(history_purchases: DataFrame, users: DataFrame, cfg: CandidatesConfig, as_of: date) -> DataFrame:
    """Popularity (as :func:`popular_global`) within the user's favourite hour-of-day bucket.

    Buckets start at ``cfg.hour_buckets`` (UTC hours); a user's bucket is the one of most
    of their orders before as_of. Users without history get the global list; a bucket with
    fewer than n items is filled from it.
    """
    history = _history(history_purchases, as_of).withColumn(_BUCKET, hour_bucket(F.col(C.EVENT_TS), cfg.hour_buckets))
    per_bucket = _ranked(_popularity(history, [_BUCKET], cfg, as_of), [_BUCKET])
    placed = _user_ids(users).join(_favourite_bucket(history), on=C.USER_ID, how="inner")
    own = _serve(per_bucket, placed, [_BUCKET], _bought(history, cfg), cfg.n)
    return _filled(own, _global_lists(history, users, cfg, as_of), cfg.n)


# ------------------------------------------------------------------------- co-occurrence
def item_similarity(history: DataFrame, cfg: CandidatesConfig) -> DataFrame:
    """``item_a, item_b, n_together, similarity`` for items bought in the same baskets.

    Baskets with more than ``cfg.max_basket_items`` distinct items are skipped (wholesale
    pick lists pair everything with everything); pairs seen in fewer than
    ``cfg.min_cooccurrence`` baskets are dropped. similarity = n_together /
    sqrt(n_a * n_b), n_x = kept baskets holding x (cosine of the basket vectors): raw
    counts would rank every seed's partners by overall popularity, which the popularity
    baselines already cover. Both orders of a pair are present, then each item keeps its
    ``cfg.partners_per_item`` most similar partners (so A may keep B while B drops A).
    """
    # 64-bit hashes stand in for the string ids in the self-join and the pair count (a
    # collision among a catalog's items has odds ~ n^2 / 2^64); each unordered pair is
    # counted once (a < b) and mirrored after: half the join rows, half the shuffle.
    baskets = (
        history.where(F.col(C.BASKET_ID).isNotNull())
        .select(F.xxhash64(C.BASKET_ID).alias("_b"), F.xxhash64(C.ITEM_ID).alias("_i"), C.ITEM_ID)
        .distinct()
    )
    sizes = baskets.groupBy("_b").agg(F.count(F.lit(1)).alias("_size"))
    kept = baskets.join(sizes.where(F.col("_size") <= cfg.max_basket_items), on="_b", how="left_semi").persist()
    per_item = kept.groupBy("_i", C.ITEM_ID).agg(F.count(F.lit(1)).alias("_n"))
    left = kept.select("_b", F.col("_i").alias("_a"))
    right = kept.select("_b", F.col("_i").alias("_o"))
    half = (
        left.join(right, on="_b", how="inner")
        .where(F.col("_a") < F.col("_o"))
        .groupBy("_a", "_o")
        .agg(F.count(F.lit(1)).alias("n_together"))
        .where(F.col("n_together") >= cfg.min_cooccurrence)
    )
    together = half.unionByName(half.select(F.col("_o").alias("_a"), F.col("_a").alias("_o"), "n_together"))
    n_a = per_item.select(F.col("_i").alias("_a"), F.col(C.ITEM_ID).alias("item_a"), F.col("_n").alias("_n_a"))
    n_b = per_item.select(F.col("_i").alias("_o"), F.col(C.ITEM_ID).alias("item_b"), F.col("_n").alias("_n_b"))
    pairs = (
        together.join(n_a, on="_a", how="inner")
        .join(n_b, on="_o", how="inner")
        .select(
            "item_a",
            "item_b",
            "n_together",
            (F.col("n_together") / F.sqrt(F.col("_n_a") * F.col("_n_b"))).alias("similarity"),
        )
    )
    return _closest_partners(pairs, cfg.partners_per_item)


def _closest_partners(pairs: DataFrame, m: int | None) -> DataFrame:
    """Each ``item_a``'s ``m`` most similar partners (ties: the smaller ``item_b``); all when None."""
    if m is None:
        return pairs
    w = Window.partitionBy("item_a").orderBy(F.col("similarity").desc(), F.col("item_b"))
    return pairs.withColumn("_nth", F.row_number().over(w)).where(F.col("_nth") <= m).drop("_nth")


def recent_items(history: DataFrame, users: DataFrame, n_recent: int) -> DataFrame:
    """``user_id, item_id``: each user's ``n_recent`` most recently bought distinct items."""
    last = (
        history.join(_user_ids(users), on=C.USER_ID, how="left_semi")
        .groupBy(C.USER_ID, C.ITEM_ID)
        .agg(F.max(C.EVENT_TS).alias("_last"))
    )
    w = Window.partitionBy(C.USER_ID).orderBy(F.col("_last").desc(), F.col(C.ITEM_ID))
    return last.withColumn("_nth", F.row_number().over(w)).where(F.col("_nth") <= n_recent).select(C.USER_ID, C.ITEM_ID)


def cooccurrence(history_purchases: DataFrame, users: DataFrame, cfg: CandidatesConfig, as_of: date) -> DataFrame:
    """Items bought together with the user's ``cfg.recent_items`` most recent items.

    score = sum over those seed items of :func:`item_similarity`. A seed can be a
    candidate itself when it was bought together with another seed: repeat purchases are
    kept unless ``cfg.exclude_bought``, which drops every item the user bought (seeds
    included). Users without history get no list; lists can be shorter than n.
    """
    history = _history(history_purchases, as_of)
    seeds = recent_items(history, users, cfg.recent_items).withColumnRenamed(C.ITEM_ID, "item_a")
    partners = (
        seeds.join(item_similarity(history, cfg), on="item_a", how="inner")
        .groupBy(C.USER_ID, F.col("item_b").alias(C.ITEM_ID))
        .agg(F.sum("similarity").alias(C.SCORE))
    )
    bought = _bought(history, cfg)
    if bought is not None:
        partners = partners.join(bought, on=[C.USER_ID, C.ITEM_ID], how="left_anti")
    return _renumbered(partners, cfg.n, [F.col(C.SCORE).desc()])
