"""How often the next basket holds a recommended bundle partner (hit rate), against chance.

For every known user with a basket before as_of and one in the evaluation window, the
"next basket" is their first basket in the window. Hit rate@K = share of those users whose
next basket holds at least one of their top-K bundle recommendations. Baselines on the same
users, the items of the user's recent baskets left out of each, as for the bundles:
  popular_random: K items drawn at random (seeded, per user) from the ``baseline_pool``
                  items in the most multi-item baskets: "random co-purchase of popular items";
  popular_basket: the top K of that same list (a stronger, deterministic baseline).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C


def next_baskets(window_baskets: DataFrame, users: DataFrame) -> DataFrame:
    """``user_id, next_items``: each user's first basket in the window."""
    first = Window.partitionBy(C.USER_ID).orderBy(F.col(C.BASKET_TS), F.col(C.BASKET_ID))
    return (
        window_baskets.where(F.col(C.USER_ID).isNotNull())
        .join(users.select(C.USER_ID), on=C.USER_ID, how="left_semi")
        .withColumn("_n", F.row_number().over(first))
        .where(F.col("_n") == 1)
        .select(C.USER_ID, F.col(C.ITEMS).alias(C.NEXT_ITEMS))
    )


def random_popular(basket_items: DataFrame, popularity: DataFrame, pool: int, k: int, seed: int) -> DataFrame:
    """``user_id, rank, item_id``: k random picks per user among the ``pool`` most popular,
    the user's basket items left out."""
    top = popularity.orderBy(F.col(C.BASKET_COUNT).desc(), F.col(C.ITEM_ID)).limit(pool)
    users = basket_items.select(C.USER_ID).distinct()
    offered = users.crossJoin(F.broadcast(top.select(C.ITEM_ID))).join(
        basket_items.select(C.USER_ID, C.ITEM_ID), on=[C.USER_ID, C.ITEM_ID], how="left_anti"
    )
    draw = F.xxhash64(C.USER_ID, C.ITEM_ID, F.lit(seed))
    w = Window.partitionBy(C.USER_ID).orderBy(draw, F.col(C.ITEM_ID))
    return (
        offered.withColumn(C.RANK, F.row_number().over(w))
        .where(F.col(C.RANK) <= k)
        .select(C.USER_ID, C.RANK, C.ITEM_ID)
    )


def hit_rates(lists: dict[str, DataFrame], truth: DataFrame, ks: tuple[int, ...]) -> DataFrame:
    """``source, k, hit_rate, n_users`` for every list (``user_id, rank, item_id``) over the
    users of ``truth`` (``user_id, next_items``); a user without a list counts as a miss."""
    n_users = F.count(F.lit(1))
    out = None
    for source, recs in lists.items():
        hits = (
            recs.join(truth, on=C.USER_ID)
            .where(F.array_contains(F.col(C.NEXT_ITEMS), F.col(C.ITEM_ID)))
            .groupBy(C.USER_ID)
            .agg(F.min(C.RANK).alias("_first_hit"))
        )
        per_user = truth.select(C.USER_ID).join(hits, on=C.USER_ID, how="left")
        row = per_user.agg(
            n_users.alias(C.N_USERS),
            *[F.avg(F.when(F.col("_first_hit") <= k, 1.0).otherwise(0.0)).alias(f"k{k}") for k in ks],
        )
        shaped = row.select(
            F.lit(source).alias(C.CANDIDATE_SOURCE),
            F.explode(F.array(*[F.struct(F.lit(k).alias(C.K), F.col(f"k{k}").alias(C.HIT_RATE)) for k in ks])).alias(
                "_x"
            ),
            C.N_USERS,
        )
        shaped = shaped.select(C.CANDIDATE_SOURCE, "_x.*", C.N_USERS)
        out = shaped if out is None else out.unionByName(shaped)
    assert out is not None, "hit_rates needs at least one list"
    return out
