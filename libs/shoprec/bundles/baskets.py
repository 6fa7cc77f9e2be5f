"""Baskets: the distinct products of one invoice (one session for event logs).

Anonymous baskets count: a basket without a customer still says which items go together.
Returns and cancellations are not baskets; non-products (postage, fees) are not items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C


@dataclass(frozen=True)
class BasketCounts:
    baskets: int  # baskets in the window
    mined: int  # of them, fed to FPGrowth
    too_large: int  # left out: more than max_basket_items distinct items
    single_item: int  # in the support denominator, but they pair nothing


def product_purchases(interactions: DataFrame) -> DataFrame:
    """Purchase lines of products in a basket, customers known or not."""
    return interactions.where(
        (F.col(C.EVENT_TYPE) == C.PURCHASE) & F.col(C.IS_PRODUCT) & F.col(C.BASKET_ID).isNotNull()
    )


def baskets(interactions: DataFrame, start: date, end: date) -> DataFrame:
    """``basket_id, user_id, basket_ts, items, n_items`` for baskets placed in [start, end).

    ``items`` is sorted and distinct (FPGrowth rejects repeated items); ``user_id`` is
    null for anonymous baskets; ``basket_ts`` is the basket's first line.
    """
    lo, hi = (datetime.combine(d, time()) for d in (start, end))  # midnight UTC, as the split
    lines = product_purchases(interactions).where((F.col(C.EVENT_TS) >= F.lit(lo)) & (F.col(C.EVENT_TS) < F.lit(hi)))
    return (
        lines.groupBy(C.BASKET_ID)
        .agg(
            F.first(C.USER_ID, ignorenulls=True).alias(C.USER_ID),
            F.min(C.EVENT_TS).alias(C.BASKET_TS),
            F.array_sort(F.collect_set(C.ITEM_ID)).alias(C.ITEMS),
        )
        .withColumn(C.N_ITEMS, F.size(C.ITEMS))
    )


def history_baskets(interactions: DataFrame, as_of: date, history_days: int) -> DataFrame:
    """Baskets of the ``history_days`` before ``as_of``."""
    return baskets(interactions, as_of - timedelta(days=history_days), as_of)


def for_mining(all_baskets: DataFrame, max_items: int) -> tuple[DataFrame, BasketCounts]:
    """(``basket_id, items`` of the baskets FPGrowth sees, counts of what was left out)."""
    row = all_baskets.agg(
        F.count(F.lit(1)).alias("baskets"),
        F.sum(F.when(F.col(C.N_ITEMS) > max_items, 1).otherwise(0)).alias("too_large"),
        F.sum(F.when(F.col(C.N_ITEMS) == 1, 1).otherwise(0)).alias("single"),
    ).first()
    assert row is not None  # a global aggregate: one row
    total, too_large = int(row["baskets"] or 0), int(row["too_large"] or 0)
    counts = BasketCounts(total, total - too_large, too_large, int(row["single"] or 0))
    return all_baskets.where(F.col(C.N_ITEMS) <= max_items).select(C.BASKET_ID, C.ITEMS), counts


def recent_basket_items(history_baskets_: DataFrame, n_baskets: int) -> DataFrame:
    """``user_id, item_id, basket_ts``: the items of each known user's ``n_baskets`` latest
    baskets (an item in several of them keeps its latest time)."""
    latest = Window.partitionBy(C.USER_ID).orderBy(F.col(C.BASKET_TS).desc(), F.col(C.BASKET_ID).desc())
    recent = (
        history_baskets_.where(F.col(C.USER_ID).isNotNull())
        .withColumn(C.BASKET_ORDER, F.row_number().over(latest))
        .where(F.col(C.BASKET_ORDER) <= n_baskets)
    )
    return (
        recent.select(C.USER_ID, F.explode(C.ITEMS).alias(C.ITEM_ID), C.BASKET_TS)
        .groupBy(C.USER_ID, C.ITEM_ID)
        .agg(F.max(C.BASKET_TS).alias(C.BASKET_TS))
    )
