"""Silver tables: their schemas, and items/users derived from interactions.

``silver.interactions`` is the one event table every later stage reads, whatever the
source: invoice lines (purchases and returns) or clickstream events (views, carts,
purchases). ``silver.items`` and ``silver.users`` are recomputed from it on every ingest,
which keeps them exact under incremental loads and reruns.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C

INTERACTIONS_SCHEMA = T.StructType(
    [
        T.StructField(C.INTERACTION_ID, T.StringType()),
        T.StructField(C.USER_ID, T.StringType()),  # null for anonymous rows
        T.StructField(C.ITEM_ID, T.StringType()),
        T.StructField(C.EVENT_TYPE, T.StringType()),  # view | cart | purchase | return
        T.StructField(C.QUANTITY, T.IntegerType()),  # units, always > 0; event_type gives direction
        T.StructField(C.UNIT_PRICE, T.DoubleType()),
        T.StructField(C.EVENT_TS, T.TimestampType()),  # UTC
        T.StructField(C.BASKET_ID, T.StringType()),  # invoice, or session for event logs
        T.StructField(C.SESSION_ID, T.StringType()),
        T.StructField(C.COUNTRY, T.StringType()),
        T.StructField(C.DEVICE, T.StringType()),
        T.StructField(C.DESCRIPTION, T.StringType()),  # item text as given on this row
        T.StructField(C.ITEM_KIND, T.StringType()),  # product, postage, fee, ...
        T.StructField(C.IS_PRODUCT, T.BooleanType()),
        T.StructField(C.IS_ANONYMOUS, T.BooleanType()),
        T.StructField(C.SOURCE, T.StringType()),
        T.StructField(C.SOURCE_FILE, T.StringType()),
        T.StructField(C.LINE_NUMBER, T.LongType()),
        T.StructField(C.INGESTED_AT, T.TimestampType()),
    ]
)

ITEMS_SCHEMA = T.StructType(
    [
        T.StructField(C.ITEM_ID, T.StringType()),
        T.StructField(C.DESCRIPTION, T.StringType()),
        T.StructField(C.CATEGORY, T.StringType()),
        T.StructField(C.ITEM_KIND, T.StringType()),
        T.StructField(C.IS_PRODUCT, T.BooleanType()),
        T.StructField(C.LAST_PRICE, T.DoubleType()),
        T.StructField(C.FIRST_SEEN, T.TimestampType()),
        T.StructField(C.LAST_SEEN, T.TimestampType()),
        T.StructField(C.N_EVENTS, T.LongType()),
        T.StructField(C.N_PURCHASES, T.LongType()),
    ]
)

USERS_SCHEMA = T.StructType(
    [
        T.StructField(C.USER_ID, T.StringType()),
        T.StructField(C.COUNTRY, T.StringType()),
        T.StructField(C.FIRST_SEEN, T.TimestampType()),
        T.StructField(C.LAST_SEEN, T.TimestampType()),
        T.StructField(C.N_EVENTS, T.LongType()),
        T.StructField(C.N_PURCHASES, T.LongType()),
    ]
)

CATALOG_SCHEMA = T.StructType(
    [
        T.StructField(C.ITEM_ID, T.StringType()),
        T.StructField(C.DESCRIPTION, T.StringType()),
        T.StructField(C.CATEGORY, T.StringType()),
        T.StructField("price", T.DoubleType()),
    ]
)


def build_items(interactions: DataFrame, catalog: DataFrame | None = None) -> DataFrame:
    """One row per item seen in interactions (anonymous rows included: they are sales too).

    description: the catalog's when there is one, else the item's most frequent cleaned
    description (ties go to the most recent). last_price: price of the latest purchase
    with a positive price.
    """
    described = (
        interactions.filter(F.col(C.DESCRIPTION).isNotNull())
        .groupBy(C.ITEM_ID, C.DESCRIPTION)
        .agg(F.count("*").alias("_n"), F.max(C.EVENT_TS).alias("_latest"))
    )
    w = Window.partitionBy(C.ITEM_ID).orderBy(F.col("_n").desc(), F.col("_latest").desc(), F.col(C.DESCRIPTION))
    best_description = (
        described.withColumn("_rank", F.row_number().over(w))
        .filter(F.col("_rank") == 1)
        .select(C.ITEM_ID, C.DESCRIPTION)
    )
    purchases = F.col(C.EVENT_TYPE) == C.PURCHASE
    stats = interactions.groupBy(C.ITEM_ID).agg(
        F.max_by(C.UNIT_PRICE, F.when(purchases & (F.col(C.UNIT_PRICE) > 0), F.col(C.EVENT_TS))).alias(C.LAST_PRICE),
        F.min(C.EVENT_TS).alias(C.FIRST_SEEN),
        F.max(C.EVENT_TS).alias(C.LAST_SEEN),
        F.count("*").alias(C.N_EVENTS),
        F.count(F.when(purchases, True)).alias(C.N_PURCHASES),
        F.first(C.ITEM_KIND, ignorenulls=True).alias(C.ITEM_KIND),
        F.bool_or(C.IS_PRODUCT).alias(C.IS_PRODUCT),
    )
    items = stats.join(best_description, on=C.ITEM_ID, how="left")
    if catalog is not None:
        cat = catalog.select(
            C.ITEM_ID,
            F.col(C.DESCRIPTION).alias("_cat_description"),
            F.col(C.CATEGORY).alias("_cat_category"),
            F.col("price").alias("_cat_price"),
        )
        items = (
            items.join(cat, on=C.ITEM_ID, how="left")
            .withColumn(C.DESCRIPTION, F.coalesce("_cat_description", C.DESCRIPTION))
            .withColumn(C.CATEGORY, F.col("_cat_category"))
            .withColumn(C.LAST_PRICE, F.coalesce(C.LAST_PRICE, "_cat_price"))
        )
    else:
        items = items.withColumn(C.CATEGORY, F.lit(None).cast("string"))
    return items.select(*[F.col(f.name).cast(f.dataType) for f in ITEMS_SCHEMA.fields])


def build_users(interactions: DataFrame) -> DataFrame:
    """One row per known (non-anonymous) user; country is the most recent one seen."""
    known = interactions.filter(~F.col(C.IS_ANONYMOUS) & F.col(C.USER_ID).isNotNull())
    users = known.groupBy(C.USER_ID).agg(
        F.max_by(C.COUNTRY, F.when(F.col(C.COUNTRY).isNotNull(), F.col(C.EVENT_TS))).alias(C.COUNTRY),
        F.min(C.EVENT_TS).alias(C.FIRST_SEEN),
        F.max(C.EVENT_TS).alias(C.LAST_SEEN),
        F.count("*").alias(C.N_EVENTS),
        F.count(F.when(F.col(C.EVENT_TYPE) == C.PURCHASE, True)).alias(C.N_PURCHASES),
    )
    return users.select(*[F.col(f.name).cast(f.dataType) for f in USERS_SCHEMA.fields])
