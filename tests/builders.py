"""Small silver tables built by hand, for tests of the stages after ingest.

``event(...)`` makes one ``silver.interactions`` row with sensible defaults; ``write_silver``
writes interactions plus the ``silver.items``/``silver.users`` the ingest job would derive
from them, through the same ``build_items``/``build_users`` code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from shoprec import columns as C
from shoprec.ingest.silver import INTERACTIONS_SCHEMA, build_items, build_users


def event(
    user: str | None,
    item: str,
    ts: str | datetime,
    event_type: str = C.PURCHASE,
    quantity: int = 1,
    price: float = 1.0,
    basket: str | None = None,
    country: str = "United Kingdom",
    description: str | None = None,
    is_product: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """One interaction; ``ts`` as ``"YYYY-MM-DD HH:MM"``; the basket defaults to user + day."""
    when = ts if isinstance(ts, datetime) else datetime.fromisoformat(ts)
    return {
        C.INTERACTION_ID: None,  # filled from the row's position by ``interactions``
        C.USER_ID: user,
        C.ITEM_ID: item,
        C.EVENT_TYPE: event_type,
        C.QUANTITY: quantity,
        C.UNIT_PRICE: price,
        C.EVENT_TS: when,
        C.BASKET_ID: basket or f"{user}-{when:%Y%m%d}",
        C.SESSION_ID: None,
        C.COUNTRY: country,
        C.DEVICE: device,
        C.DESCRIPTION: description if description is not None else f"product {item}",
        C.ITEM_KIND: C.KIND_PRODUCT if is_product else "postage",
        C.IS_PRODUCT: is_product,
        C.IS_ANONYMOUS: user is None,
        C.SOURCE: "test",
        C.SOURCE_FILE: "test.csv",
        C.LINE_NUMBER: 0,
        C.INGESTED_AT: datetime(2020, 1, 1),
    }


def interactions(spark: SparkSession, rows: list[dict[str, Any]]) -> DataFrame:
    """The rows as silver.interactions; ids are ``i<position>``, so a list extended at the end
    keeps the ids of its first rows."""
    rows = [{**r, C.INTERACTION_ID: r[C.INTERACTION_ID] or f"i{n}"} for n, r in enumerate(rows)]
    ordered = [tuple(r[f.name] for f in INTERACTIONS_SCHEMA.fields) for r in rows]
    return spark.createDataFrame(ordered, INTERACTIONS_SCHEMA)


def write_silver(tables, spark: SparkSession, rows: list[dict[str, Any]]) -> DataFrame:
    """Overwrite silver.interactions/items/users with ``rows``; returns the interactions."""
    df = interactions(spark, rows)
    tables.overwrite(df, C.SILVER_INTERACTIONS)
    tables.overwrite(build_items(df), C.SILVER_ITEMS)
    tables.overwrite(build_users(df), C.SILVER_USERS)
    return df


def rows_of(df: DataFrame, *drop: str) -> list[tuple]:
    """A DataFrame's rows as sorted tuples (columns in order, ``drop`` left out).

    Top-level doubles are rounded to 9 decimals: Spark sums in partition order, so the
    same inputs can differ in the last bits between runs.
    """
    kept = [c for c in df.columns if c not in drop]
    rows = (tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in df.select(*kept).collect())
    return sorted(rows, key=repr)
