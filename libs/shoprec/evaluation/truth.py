"""Ground truth and segments of the temporal split (EVALUATION.md "Split").

Purchases are those of :func:`shoprec.split.purchases`: a known customer buying a product.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Literal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.split import TemporalSplit, purchases

TruthWindow = Literal["evaluation", "validation"]


def _midnight(d: date) -> datetime:
    # Naive midnight, read in Spark's session time zone (UTC), as TemporalSplit does.
    return datetime.combine(d, time())


def ground_truth(
    interactions: DataFrame,
    split: TemporalSplit,
    window: TruthWindow = "evaluation",
    history_exclusion: bool = False,
) -> DataFrame:
    """``user_id, item_id``: the distinct products each known user bought in the window.

    ``window``: "evaluation" (from ``as_of``) or "validation" (the last days before it).
    ``history_exclusion``: drop the items the user bought before the window started, the
    "new to the user" truth; without it repeat purchases count (the "with repeats" truth).
    """
    bought = purchases(interactions)
    if window == "evaluation":
        in_window, start = split.evaluation(bought), split.as_of
    elif window == "validation":
        in_window, start = split.validation(bought), split.validation_start
    else:
        raise ValueError(f"window must be 'evaluation' or 'validation', got {window!r}")
    truth = in_window.select(C.USER_ID, C.ITEM_ID).distinct()
    if history_exclusion:
        before = bought.where(F.col(C.EVENT_TS) < F.lit(_midnight(start))).select(C.USER_ID, C.ITEM_ID)
        truth = truth.join(before, on=[C.USER_ID, C.ITEM_ID], how="left_anti")
    return truth.select(C.USER_ID, C.ITEM_ID)


def user_segments(interactions: DataFrame, split: TemporalSplit) -> DataFrame:
    """``user_id, segment``: warm users (a purchase before ``as_of``) and cold users (first
    purchase inside the evaluation window). Users who only buy later are in neither.
    """
    bought = purchases(interactions).where(F.col(C.EVENT_TS) < F.lit(_midnight(split.evaluation_end)))
    first = bought.groupBy(C.USER_ID).agg(F.min(C.EVENT_TS).alias("_first_purchase"))
    segment = F.when(F.col("_first_purchase") < F.lit(split.as_of_ts), F.lit(C.SEGMENT_WARM)).otherwise(
        F.lit(C.SEGMENT_COLD)
    )
    return first.select(C.USER_ID, segment.alias(C.SEGMENT))


def new_items(interactions: DataFrame, split: TemporalSplit) -> DataFrame:
    """``item_id``: products first sold inside the evaluation window.

    Any sale counts, anonymous ones included: an item an anonymous customer bought last
    month is not new.
    """
    sales = interactions.where((F.col(C.EVENT_TYPE) == C.PURCHASE) & F.col(C.IS_PRODUCT))
    first = sales.groupBy(C.ITEM_ID).agg(F.min(C.EVENT_TS).alias("_first_sale"))
    inside = (F.col("_first_sale") >= F.lit(split.as_of_ts)) & (
        F.col("_first_sale") < F.lit(_midnight(split.evaluation_end))
    )
    return first.where(inside).select(C.ITEM_ID)
