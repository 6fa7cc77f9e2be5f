"""Association rules over baskets with Spark MLlib FPGrowth, and per-item partner lists.

baskets (distinct items) ─► FPGrowth(min_support, min_confidence) ─► rules
    ─► antecedent size <= max_antecedent, lift >= min_lift ─► gold.bundles
one-item rules ─► per item, the best ``per_item`` partners ─► gold.bundle_partners
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import BundlesConfig


def mine_rules(mined_baskets: DataFrame, n_baskets: int, bcfg: BundlesConfig, partitions: int) -> DataFrame:
    """``antecedent_items, consequent_item, support, confidence, lift, basket_count``.

    ``n_baskets`` is the number of rows of ``mined_baskets`` (support's denominator, known
    to the caller already). Ties in later orderings are broken by the items themselves, so
    a rerun on the same baskets gives the same rows.
    """
    from pyspark.ml.fpm import FPGrowth

    if n_baskets == 0:
        return _empty_rules(mined_baskets)
    model = FPGrowth(
        itemsCol=C.ITEMS, minSupport=bcfg.min_support, minConfidence=bcfg.min_confidence, numPartitions=partitions
    ).fit(mined_baskets)
    rules = model.associationRules
    return rules.where((F.size("antecedent") <= bcfg.max_antecedent) & (F.col("lift") >= bcfg.min_lift)).select(
        F.array_sort("antecedent").alias(C.ANTECEDENT_ITEMS),
        F.col("consequent")[0].alias(C.CONSEQUENT_ITEM),
        F.col("support").cast("double").alias(C.SUPPORT),
        F.col("confidence").cast("double").alias(C.RULE_CONFIDENCE),
        F.col("lift").cast("double").alias(C.LIFT),
        F.round(F.col("support") * F.lit(n_baskets)).cast("long").alias(C.BASKET_COUNT),
    )


def _empty_rules(like: DataFrame) -> DataFrame:
    spark = like.sparkSession
    return spark.createDataFrame(
        [],
        f"{C.ANTECEDENT_ITEMS} array<string>, {C.CONSEQUENT_ITEM} string, "
        f"{C.SUPPORT} double, {C.RULE_CONFIDENCE} double, {C.LIFT} double, "
        f"{C.BASKET_COUNT} long",
    )


def rule_strength() -> list[Column]:
    """The order of rules for one consequent or one antecedent: confidence, then lift, then
    support, then the items (deterministic)."""
    return [F.col(C.RULE_CONFIDENCE).desc(), F.col(C.LIFT).desc(), F.col(C.SUPPORT).desc()]


def partners(rules: DataFrame, per_item: int) -> DataFrame:
    """``item_id, rank, partner_item_id, confidence, lift, support, basket_count``: for every
    item on the left of a one-item rule, its best ``per_item`` partners."""
    pairs = rules.where(F.size(C.ANTECEDENT_ITEMS) == 1).select(
        F.col(C.ANTECEDENT_ITEMS)[0].alias(C.ITEM_ID),
        F.col(C.CONSEQUENT_ITEM).alias(C.PARTNER_ITEM_ID),
        C.RULE_CONFIDENCE,
        C.LIFT,
        C.SUPPORT,
        C.BASKET_COUNT,
    )
    w = Window.partitionBy(C.ITEM_ID).orderBy(*rule_strength(), F.col(C.PARTNER_ITEM_ID))
    return (
        pairs.withColumn(C.RANK, F.row_number().over(w).cast("int"))
        .where(F.col(C.RANK) <= per_item)
        .select(C.ITEM_ID, C.RANK, C.PARTNER_ITEM_ID, C.RULE_CONFIDENCE, C.LIFT, C.SUPPORT, C.BASKET_COUNT)
    )


def with_rule_ids(rules: DataFrame) -> DataFrame:
    """``rules`` plus ``rule_id`` (a hash of its items) and ``antecedent_size``."""
    return rules.withColumn(C.RULE_ID, F.xxhash64(F.concat_ws("|", C.ANTECEDENT_ITEMS), C.CONSEQUENT_ITEM)).withColumn(
        C.ANTECEDENT_SIZE, F.size(C.ANTECEDENT_ITEMS)
    )


def fired_rules(basket_items: DataFrame, rules: DataFrame) -> DataFrame:
    """``user_id, consequent_item, antecedent_items, confidence, lift, support``: every rule
    whose whole left side is among the user's basket items (``user_id, item_id``) and whose
    right side is not."""
    ided = with_rule_ids(rules)
    sides = ided.select(C.RULE_ID, C.ANTECEDENT_SIZE, F.explode(C.ANTECEDENT_ITEMS).alias(C.ITEM_ID))
    matched = (
        basket_items.select(C.USER_ID, C.ITEM_ID)
        .distinct()
        .join(F.broadcast(sides), on=C.ITEM_ID)
        .groupBy(C.USER_ID, C.RULE_ID, C.ANTECEDENT_SIZE)
        .agg(F.count(F.lit(1)).alias("_matched"))
        .where(F.col("_matched") == F.col(C.ANTECEDENT_SIZE))
    )
    fired = matched.join(F.broadcast(ided.drop(C.ANTECEDENT_SIZE)), on=C.RULE_ID).drop(
        C.RULE_ID, C.ANTECEDENT_SIZE, "_matched"
    )
    owned = basket_items.select(C.USER_ID, F.col(C.ITEM_ID).alias(C.CONSEQUENT_ITEM))
    return fired.join(owned, on=[C.USER_ID, C.CONSEQUENT_ITEM], how="left_anti")
