"""Small, named views of the gold tables for people: one user, one item, the strongest rules.

Notebooks call these to answer "why did this customer get that?" and "what goes with this?":
every function reads Delta tables through ``Tables``, filters to a handful of rows in Spark and
returns a pandas DataFrame with item descriptions attached (the driver only sees those rows).
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.errors import ShoprecError
from shoprec.tables import Tables


def _names(tables: Tables) -> DataFrame:
    return tables.read(C.SILVER_ITEMS).select(C.ITEM_ID, C.DESCRIPTION)


def _partition(tables: Tables, name: str, as_of: date) -> DataFrame:
    if not tables.exists(name):
        raise ShoprecError(
            f"{name} does not exist under {tables.root}",
            hint=f"run shoprec pipeline --as-of {as_of} (or the stage that writes it) first",
        )
    return tables.read_as_of(name, as_of)


def as_of_dates(df: DataFrame) -> list[date]:
    """The distinct ``as_of`` values of ``df``, oldest first."""
    return sorted(r[C.AS_OF] for r in df.select(C.AS_OF).distinct().collect())  # small: one row per as_of


def as_ofs(tables: Tables, name: str = C.GOLD_RECOMMENDATIONS) -> list[date]:
    """The cutoffs ``name`` holds partitions for, oldest first."""
    return as_of_dates(tables.read(name)) if tables.exists(name) else []


def busiest_users(tables: Tables, as_of: date, n: int = 5) -> list[str]:
    """The ``n`` customers with the most purchase baskets before as_of (examples to inspect)."""
    bought = tables.read(C.SILVER_INTERACTIONS).where(
        (F.col(C.EVENT_TYPE) == C.PURCHASE) & F.col(C.USER_ID).isNotNull() & (F.to_date(C.EVENT_TS) < F.lit(as_of))
    )
    top = (
        bought.groupBy(C.USER_ID)
        .agg(F.count_distinct(C.BASKET_ID).alias("baskets"))
        .orderBy(F.col("baskets").desc(), C.USER_ID)
        .limit(n)
        .collect()  # small: n rows
    )
    return [r[C.USER_ID] for r in top]


def user_history(tables: Tables, user_id: str, as_of: date, limit: int = 50) -> pd.DataFrame:
    """The user's latest ``limit`` purchase lines before as_of, newest first, with descriptions."""
    lines = tables.read(C.SILVER_INTERACTIONS).where(
        (F.col(C.USER_ID) == F.lit(user_id))
        & (F.col(C.EVENT_TYPE) == C.PURCHASE)
        & (F.to_date(C.EVENT_TS) < F.lit(as_of))
    )
    return (
        lines.select(C.EVENT_TS, C.BASKET_ID, C.ITEM_ID, C.QUANTITY, C.UNIT_PRICE, C.COUNTRY)
        .join(_names(tables), on=C.ITEM_ID, how="left")
        .orderBy(F.col(C.EVENT_TS).desc(), C.ITEM_ID)
        .limit(limit)
        .toPandas()  # small: limit rows
    )


def user_recommendations(tables: Tables, user_id: str, as_of: date, name: str = C.GOLD_RECOMMENDATIONS) -> pd.DataFrame:
    """The user's list in ``name`` (gold.recommendations or gold.bundle_recommendations) at
    as_of: rank, item, description, score, source, reason, and whether they bought it
    in the 28 days after as_of (``bought_after``)."""
    recs = _partition(tables, name, as_of).where(F.col(C.USER_ID) == F.lit(user_id))
    later = tables.read(C.SILVER_INTERACTIONS).where(
        (F.col(C.USER_ID) == F.lit(user_id))
        & (F.col(C.EVENT_TYPE) == C.PURCHASE)
        & (F.to_date(C.EVENT_TS) >= F.lit(as_of))
        & (F.to_date(C.EVENT_TS) < F.date_add(F.lit(as_of), 28))
    )
    bought = later.select(C.ITEM_ID).distinct().withColumn("bought_after", F.lit(True))
    return (
        recs.select(C.RANK, C.ITEM_ID, C.SCORE, C.CANDIDATE_SOURCE, C.REASON)
        .join(_names(tables), on=C.ITEM_ID, how="left")
        .join(bought, on=C.ITEM_ID, how="left")
        .fillna(False, subset=["bought_after"])
        .orderBy(C.RANK)
        .select(C.RANK, C.ITEM_ID, C.DESCRIPTION, C.SCORE, C.CANDIDATE_SOURCE, C.REASON, "bought_after")
        .toPandas()  # small: one list
    )


def find_items(tables: Tables, text: str, limit: int = 20) -> pd.DataFrame:
    """Items whose description contains ``text`` (case-insensitive)."""
    matching = _names(tables).where(F.lower(C.DESCRIPTION).contains(text.lower()))
    return matching.orderBy(C.ITEM_ID).limit(limit).toPandas()  # small: limit rows


def item_partners(tables: Tables, item_id: str, as_of: date) -> pd.DataFrame:
    """ "Frequently bought together" for one item: gold.bundle_partners with descriptions."""
    partners = _partition(tables, C.GOLD_BUNDLE_PARTNERS, as_of).where(F.col(C.ITEM_ID) == F.lit(item_id))
    named = _names(tables).select(F.col(C.ITEM_ID).alias(C.PARTNER_ITEM_ID), F.col(C.DESCRIPTION))
    return (
        partners.join(named, on=C.PARTNER_ITEM_ID, how="left")
        .select(C.RANK, C.PARTNER_ITEM_ID, C.DESCRIPTION, C.RULE_CONFIDENCE, C.LIFT, C.BASKET_COUNT)
        .orderBy(C.RANK)
        .toPandas()  # small: per_item rows
    )


def strongest_rules(tables: Tables, as_of: date, n: int = 20, min_baskets: int = 0, by: str = C.LIFT) -> pd.DataFrame:
    """The ``n`` strongest rules of gold.bundles by ``by`` (lift, confidence, support or
    basket_count), both sides named."""
    rules = _partition(tables, C.GOLD_BUNDLES, as_of).where(F.col(C.BASKET_COUNT) >= min_baskets)
    top = rules.orderBy(F.col(by).desc(), F.col(C.BASKET_COUNT).desc(), F.col(C.CONSEQUENT_ITEM)).limit(n)
    names = _names(tables)
    left = (
        top.select("*", F.posexplode(C.ANTECEDENT_ITEMS).alias("_pos", C.ITEM_ID))
        .join(names, on=C.ITEM_ID, how="left")
        .groupBy(C.ANTECEDENT_ITEMS, C.CONSEQUENT_ITEM)
        .agg(
            F.concat_ws(
                " + ",
                F.sort_array(
                    F.collect_list(F.struct(F.col("_pos"), F.coalesce(C.DESCRIPTION, C.ITEM_ID).alias("_name")))
                ).getField("_name"),
            ).alias("antecedent_names")
        )
    )
    right = names.select(F.col(C.ITEM_ID).alias(C.CONSEQUENT_ITEM), F.col(C.DESCRIPTION).alias("consequent_name"))
    return (
        top.join(left, on=[C.ANTECEDENT_ITEMS, C.CONSEQUENT_ITEM])
        .join(right, on=C.CONSEQUENT_ITEM, how="left")
        .orderBy(F.col(by).desc(), F.col(C.BASKET_COUNT).desc(), F.col(C.CONSEQUENT_ITEM))
        .select(
            "antecedent_names",
            "consequent_name",
            C.ANTECEDENT_ITEMS,
            C.CONSEQUENT_ITEM,
            C.SUPPORT,
            C.RULE_CONFIDENCE,
            C.LIFT,
            C.BASKET_COUNT,
        )
        .toPandas()  # small: n rows
    )
