"""Bundle recommendations per user: complete the user's recent baskets.

    the user's last ``recent_baskets`` baskets (their items)
        ─► tier 0 ``bundle``: consequents of every rule whose left side they hold
           (best rule per item: confidence, lift), anchored on the rule's left side
        ─► tier 1 ``cooccurrence``: basket-cosine partners of their items (pairs below
           the rules' support, anchored on the item they go with)
        ─► tier 2 ``popular_basket``: the items most often bought with other items
    never an item already in those baskets; per user the best ``per_user``, tier first.

With a champion hybrid model, tiers 0 and 1 are re-ordered inside the tier by
``(1 - deep_weight) x rank-normalised rule score + deep_weight x rank-normalised deep
score``: the rules know the pair, the model knows the person.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.bundles.rules import fired_rules, rule_strength
from shoprec.candidates.baselines import item_similarity
from shoprec.candidates.scores import normalised
from shoprec.config import BundlesConfig, CandidatesConfig

PERSONAL_TIERS = (0, 1)
_ORDER = "_order_score"


def _best_per_item(df: DataFrame, order: list[Column]) -> DataFrame:
    w = Window.partitionBy(C.USER_ID, C.ITEM_ID).orderBy(*order)
    return df.withColumn("_n", F.row_number().over(w)).where(F.col("_n") == 1).drop("_n")


def rule_candidates(basket_items: DataFrame, rules: DataFrame) -> DataFrame:
    """Tier 0: ``user_id, item_id, source, anchor_item, source_score (confidence), tier``."""
    fired = fired_rules(basket_items, rules).withColumnRenamed(C.CONSEQUENT_ITEM, C.ITEM_ID)
    best = _best_per_item(fired, [*rule_strength(), F.concat_ws(",", C.ANTECEDENT_ITEMS)])
    return best.select(
        C.USER_ID,
        C.ITEM_ID,
        F.lit(C.SRC_BUNDLE).alias(C.CANDIDATE_SOURCE),
        F.concat_ws(" + ", C.ANTECEDENT_ITEMS).alias(C.ANCHOR),
        F.col(C.RULE_CONFIDENCE).alias(C.SOURCE_SCORE),
        F.lit(0).alias(C.TIER),
    )


def cooccurrence_candidates(
    basket_items: DataFrame, history_purchases: DataFrame, ccfg: CandidatesConfig, per_item: int
) -> DataFrame:
    """Tier 1: basket-cosine partners of the basket items the user does not hold (each
    item's ``per_item`` closest partners: a best seller pairs with hundreds of items)."""
    seeds = basket_items.select(C.USER_ID, F.col(C.ITEM_ID).alias("item_a"))
    closest = Window.partitionBy("item_a").orderBy(F.col("similarity").desc(), F.col("item_b"))
    similar = (
        item_similarity(history_purchases, ccfg)
        .withColumn("_n", F.row_number().over(closest))
        .where(F.col("_n") <= per_item)
        .drop("_n")
    )
    partners = seeds.join(similar, on="item_a").select(
        C.USER_ID, F.col("item_b").alias(C.ITEM_ID), F.col("item_a").alias(C.ANCHOR), F.col("similarity")
    )
    partners = partners.join(basket_items.select(C.USER_ID, C.ITEM_ID), on=[C.USER_ID, C.ITEM_ID], how="left_anti")
    best = _best_per_item(partners, [F.col("similarity").desc(), F.col(C.ANCHOR)])
    return best.select(
        C.USER_ID,
        C.ITEM_ID,
        F.lit(C.SRC_COOCCURRENCE).alias(C.CANDIDATE_SOURCE),
        C.ANCHOR,
        F.col("similarity").alias(C.SOURCE_SCORE),
        F.lit(1).alias(C.TIER),
    )


def basket_popularity(history_baskets: DataFrame) -> DataFrame:
    """``item_id, basket_count``: baskets with two or more items that hold the item."""
    multi = history_baskets.where(F.col(C.N_ITEMS) >= 2)
    return (
        multi.select(F.explode(C.ITEMS).alias(C.ITEM_ID))
        .groupBy(C.ITEM_ID)
        .agg(F.count(F.lit(1)).alias(C.BASKET_COUNT))
    )


def popular_candidates(basket_items: DataFrame, popularity: DataFrame, n: int) -> DataFrame:
    """Tier 2: the most-bought-together items, the user's own basket items left out."""
    # n + 50: room for the user's own basket items among the best sellers.
    top = popularity.orderBy(F.col(C.BASKET_COUNT).desc(), F.col(C.ITEM_ID)).limit(n + 50)
    users = basket_items.select(C.USER_ID).distinct()
    offered = users.crossJoin(F.broadcast(top)).join(
        basket_items.select(C.USER_ID, C.ITEM_ID), on=[C.USER_ID, C.ITEM_ID], how="left_anti"
    )
    return offered.select(
        C.USER_ID,
        C.ITEM_ID,
        F.lit(C.SRC_POPULAR_BASKET).alias(C.CANDIDATE_SOURCE),
        F.lit(None).cast("string").alias(C.ANCHOR),
        F.col(C.BASKET_COUNT).cast("double").alias(C.SOURCE_SCORE),
        F.lit(2).alias(C.TIER),
    )


def candidates(
    basket_items: DataFrame,
    rules: DataFrame,
    history_purchases: DataFrame,
    popularity: DataFrame,
    bcfg: BundlesConfig,
    ccfg: CandidatesConfig,
) -> DataFrame:
    """Every tier's candidates, one row per (user, item): the lowest tier that offers it."""
    parts = [
        rule_candidates(basket_items, rules),
        cooccurrence_candidates(basket_items, history_purchases, ccfg, 2 * bcfg.per_user),
        popular_candidates(basket_items, popularity, bcfg.per_user),
    ]
    union = parts[0].unionByName(parts[1]).unionByName(parts[2])
    return _best_per_item(union, [F.col(C.TIER), F.col(C.SOURCE_SCORE).desc()])


def ranked(cands: DataFrame, per_user: int, deep_weight: float = 0.0) -> DataFrame:
    """``user_id, rank, item_id, score, source, anchor_item, source_score``: tier first, then
    the rule score, or its blend with ``deep_score`` when that column is present."""
    # Rank-normalised within the user's tier, as fusion normalises per user.
    cands = normalised(cands, C.SOURCE_SCORE, "rank", "_rule_n", by=(C.USER_ID, C.TIER))
    if C.DEEP_SCORE in cands.columns and deep_weight > 0:
        cands = normalised(cands, C.DEEP_SCORE, "rank", "_deep_n", by=(C.USER_ID, C.TIER))
        blend = (1.0 - deep_weight) * F.col("_rule_n") + deep_weight * F.col("_deep_n")
        cands = cands.withColumn(_ORDER, F.when(F.col(C.TIER).isin(*PERSONAL_TIERS), blend).otherwise(F.col("_rule_n")))
    else:
        cands = cands.withColumn(_ORDER, F.col("_rule_n"))
    w = Window.partitionBy(C.USER_ID).orderBy(F.col(C.TIER), F.col(_ORDER).desc(), F.col(C.ITEM_ID))
    # The score says the order across tiers too: tier 0 in (2, 3], tier 1 in (1, 2], tier 2 in [0, 1].
    score = F.lit(2.0) - F.col(C.TIER) + F.col(_ORDER)
    return (
        cands.withColumn(C.RANK, F.row_number().over(w).cast("int"))
        .where(F.col(C.RANK) <= per_user)
        .select(
            C.USER_ID,
            C.RANK,
            C.ITEM_ID,
            score.cast("double").alias(C.SCORE),
            C.CANDIDATE_SOURCE,
            C.ANCHOR,
            C.SOURCE_SCORE,
        )
    )


def pool_source(basket_items: DataFrame, rules: DataFrame, n: int) -> DataFrame:
    """The ``bundle`` candidate source of ``shoprec recommend``, in its pool columns: per user
    the consequents of the rules their recent baskets fire, best ``n`` by rule strength,
    anchored on the rule's first left-side item (the one the reason names)."""
    fired = rule_candidates(basket_items, rules)
    w = Window.partitionBy(C.USER_ID).orderBy(F.col(C.SOURCE_SCORE).desc(), F.col(C.ITEM_ID))
    return (
        fired.withColumn(C.SOURCE_RANK, F.row_number().over(w).cast("int"))
        .where(F.col(C.SOURCE_RANK) <= n)
        .select(
            C.USER_ID,
            C.ITEM_ID,
            C.CANDIDATE_SOURCE,
            F.split(C.ANCHOR, r" \+ ")[0].alias(C.ANCHOR),
            F.col(C.SOURCE_SCORE).cast("double"),
            C.SOURCE_RANK,
        )
    )
