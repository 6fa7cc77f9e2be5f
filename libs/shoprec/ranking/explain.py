"""A short, human-readable ``reason`` per recommendation, from its source and anchor item.

bundle           goes with 22326 (ROUND SNACK BOXES SET OF4 WOODLAND) from your recent basket
cooccurrence     bought together with 85123A (WHITE HANGING HEART T-LIGHT HOLDER)
content          similar to 85123A (WHITE HANGING HEART T-LIGHT HOLDER) you bought
new_item         new in the shop, similar to 85123A (...) you bought
repeat           you bought it in 3 earlier orders
als              customers who buy what you buy also buy it
popular_context  popular in France around this time of year
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C

DESCRIPTION_CHARS = 40


def named(item: Column, description: Column) -> Column:
    short = F.when(
        F.length(description) > DESCRIPTION_CHARS,
        F.concat(F.substring(description, 1, DESCRIPTION_CHARS - 3), F.lit("...")),
    ).otherwise(description)
    return F.when(
        description.isNotNull() & (F.trim(description) != ""), F.concat(item, F.lit(" ("), F.trim(short), F.lit(")"))
    ).otherwise(item)


def reason_column(anchor_named: Column) -> Column:
    src, score = F.col(C.CANDIDATE_SOURCE), F.col(C.SOURCE_SCORE)
    orders = F.when(
        score >= 2, F.concat(F.lit("you bought it in "), score.cast("int").cast("string"), F.lit(" earlier orders"))
    ).otherwise(F.lit("you bought it before"))
    place = F.coalesce(F.col(C.ANCHOR), F.lit("the shop"))
    return (
        F.when(src == C.SRC_BUNDLE, F.concat(F.lit("goes with "), anchor_named, F.lit(" from your recent basket")))
        .when(src == C.SRC_COOCCURRENCE, F.concat(F.lit("bought together with "), anchor_named))
        .when(src == C.SRC_CONTENT, F.concat(F.lit("similar to "), anchor_named, F.lit(" you bought")))
        .when(
            src == C.SRC_NEW_ITEM, F.concat(F.lit("new in the shop, similar to "), anchor_named, F.lit(" you bought"))
        )
        .when(src == C.SRC_REPEAT, orders)
        .when(src == C.SRC_ALS, F.lit("customers who buy what you buy also buy it"))
        .when(src == C.SRC_POPULAR_CONTEXT, F.concat(F.lit("popular in "), place, F.lit(" around this time of year")))
        .otherwise(F.lit("recommended for you"))
    )


def with_reasons(recs: DataFrame, item_features: DataFrame) -> DataFrame:
    """``recs`` (with source, anchor_item, source_score) plus ``reason``."""
    names = item_features.select(F.col(C.ITEM_ID).alias(C.ANCHOR), F.col(C.DESCRIPTION).alias("_anchor_description"))
    return (
        recs.join(F.broadcast(names), on=C.ANCHOR, how="left")
        .withColumn(C.REASON, reason_column(named(F.col(C.ANCHOR), F.col("_anchor_description"))))
        .drop("_anchor_description")
    )
