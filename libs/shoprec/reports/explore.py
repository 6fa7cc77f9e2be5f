"""A first look at a shop's purchases: size, long tail, when people buy, seasonal items.

Each function aggregates in Spark and returns a small pandas DataFrame (or a dict) for a
notebook to show; :func:`plot_overview` draws the four standard charts into one PNG.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.features import time_profiles as TP


def product_purchases(interactions: DataFrame, before: date | None = None) -> DataFrame:
    """Purchase lines of products (anonymous ones included), before ``before`` when given."""
    bought = interactions.where((F.col(C.EVENT_TYPE) == C.PURCHASE) & F.col(C.IS_PRODUCT))
    return bought.where(F.to_date(C.EVENT_TS) < F.lit(before)) if before else bought


def overview(purchases: DataFrame) -> dict[str, object]:
    """Lines, baskets, customers, items, the first and last day, and the anonymous share."""
    row = purchases.agg(
        F.count(F.lit(1)).alias("lines"),
        F.count_distinct(C.BASKET_ID).alias("baskets"),
        F.count_distinct(C.USER_ID).alias("customers"),
        F.count_distinct(C.ITEM_ID).alias("items"),
        F.min(F.to_date(C.EVENT_TS)).alias("first_day"),
        F.max(F.to_date(C.EVENT_TS)).alias("last_day"),
        F.avg(F.col(C.USER_ID).isNull().cast("double")).alias("anonymous_share"),
    ).first()
    assert row is not None  # a global aggregate: one row
    return row.asDict()


def long_tail(purchases: DataFrame) -> pd.DataFrame:
    """Items by purchase lines, most sold first: ``item_rank``, ``lines``, ``item_share``
    (rank / items) and ``cumulative_share`` of all lines. One row per item."""
    per_item = purchases.groupBy(C.ITEM_ID).agg(F.count(F.lit(1)).alias("lines"))
    ordered = Window.orderBy(F.col("lines").desc(), F.col(C.ITEM_ID))  # one row per item: a catalog-sized table
    everything = Window.partitionBy()
    return (
        per_item.withColumn("item_rank", F.row_number().over(ordered))
        .withColumn("cumulative_share", F.sum("lines").over(ordered) / F.sum("lines").over(everything))
        .withColumn("item_share", F.col("item_rank") / F.count(F.lit(1)).over(everything))
        .orderBy("item_rank")
        .toPandas()  # small: one row per item
    )


def head_share(tail: pd.DataFrame, item_share: float) -> float:
    """The share of all lines sold by the best-selling ``item_share`` of items."""
    head = tail[tail["item_share"] <= item_share]
    return float(head["cumulative_share"].iloc[-1]) if len(head) else 0.0


def lines_per_customer(purchases: DataFrame) -> pd.DataFrame:
    """Quantiles of purchase lines and baskets per known customer."""
    per_user = (
        purchases.where(F.col(C.USER_ID).isNotNull())
        .groupBy(C.USER_ID)
        .agg(F.count(F.lit(1)).alias("lines"), F.count_distinct(C.BASKET_ID).alias("baskets"))
    )
    qs = [0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    lines = per_user.approxQuantile("lines", qs, 0.001)
    baskets = per_user.approxQuantile("baskets", qs, 0.001)
    return pd.DataFrame({"quantile": qs, "lines": lines, "baskets": baskets})


def monthly(purchases: DataFrame) -> pd.DataFrame:
    """Lines, baskets and customers per calendar month (``month`` as the first day)."""
    month = F.trunc(F.to_date(C.EVENT_TS), "month").alias("month")
    return (
        purchases.groupBy(month)
        .agg(
            F.count(F.lit(1)).alias("lines"),
            F.count_distinct(C.BASKET_ID).alias("baskets"),
            F.count_distinct(C.USER_ID).alias("customers"),
        )
        .orderBy("month")
        .toPandas()  # small: one row per month
    )


def time_of_day(purchases: DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shop's share of lines per hour (UTC) and per ISO weekday (1 = Monday)."""
    hours, days = TP.shop_time_shares(purchases)
    return pd.DataFrame({"hour": range(24), "hour_share": hours}), pd.DataFrame(
        {"weekday": range(1, 8), "weekday_share": days}
    )


def seasonal_items(purchases: DataFrame, names: DataFrame, n: int = 10, min_lines: int = 50) -> pd.DataFrame:
    """The ``n`` items whose sales concentrate most in one calendar month (month index,
    ``features/time_profiles.py``) among items with at least ``min_lines`` lines."""
    profiles = TP.item_month_index(purchases).where(F.col(C.N_LINES) >= min_lines)
    top = profiles.orderBy(F.col(C.SEASONALITY).desc(), F.col(C.ITEM_ID)).limit(n)
    return (
        top.join(names, on=C.ITEM_ID, how="left")
        .orderBy(F.col(C.SEASONALITY).desc(), F.col(C.ITEM_ID))
        .select(C.ITEM_ID, C.DESCRIPTION, C.PEAK_MONTH, C.SEASONALITY, C.N_LINES, C.MONTH_INDEX)
        .toPandas()  # small: n rows
    )


def plot_overview(
    tail: pd.DataFrame, months: pd.DataFrame, hours: pd.DataFrame, seasonal: pd.DataFrame, path: str
) -> str:
    """Long tail, lines per month, lines per hour and the month index of the most seasonal
    items, as one 2 x 2 PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), layout="constrained")
    FigureCanvasAgg(fig)
    (a, b), (c, d) = fig.subplots(2, 2)
    a.plot(tail["item_share"], tail["cumulative_share"])
    a.set(
        title="long tail: share of lines sold by the top x of items", xlabel="share of items", ylabel="share of lines"
    )
    b.bar(months["month"].astype(str), months["lines"])
    b.set_title("purchase lines per month")
    b.tick_params(axis="x", labelrotation=60, labelsize="small")
    c.bar(hours["hour"], hours["hour_share"])
    c.set(title="share of lines per hour (UTC)", xlabel="hour")
    for _, row in seasonal.head(4).iterrows():
        index = [v if v is not None else float("nan") for v in row[C.MONTH_INDEX]]
        d.plot(range(1, 13), index, marker="o", label=f"{row[C.ITEM_ID]} {str(row[C.DESCRIPTION] or '')[:24]}")
    d.axhline(1.0, color="grey", linewidth=0.8)
    d.set(title="month index of the most seasonal items (1 = like the shop)", xlabel="month")
    d.set_xticks(range(1, 13))
    d.legend(fontsize="x-small")
    for ax in (a, b, c, d):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    return path
