"""When items sell and when users buy: seasonal, hour-of-day and weekday profiles.

Month index. For item i and calendar month m (over the history before as_of):

    index(i, m) = share of i's purchase lines in m / share of all purchase lines in m

1 is "sells in m like the shop does", 3 is "three times as concentrated in m". Dividing by
the shop's own monthly share removes growth and the shop's overall season, so what is
left is the item's season. Both shares are taken over the months the item was on sale
(from its first sale on). Months without any sales in the history, or before the item's
first sale, are null (unknown), not zero: Online Retail as of 2011-11-01 has no November
at all, and an item launched in August 2011 has no December.

Seasonal lift at a date: the log month index of the weeks ahead, read through a circular
kernel over neighbouring months (weights 1, 1/2, 1/4 at distance 0, 1, 2), skipping the
unknown months; clipped to [-1, 1]; 0 for items with fewer than ``min_sales`` lines.
Christmas decorations sold in December 2010 and in September-October 2011 get a high lift
on 2011-11-01 (December and October are November's neighbours) and a low one on
2011-06-01 (May and July, the neighbours of June, are far from their season).

Hour and weekday profiles are shares over 24 hours and 7 ISO weekdays; ``time_fit``
compares a user's profile with an item's, as the re-ranking's time-of-day term.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shoprec import columns as C

KERNEL = (1.0, 0.5, 0.25)  # weight of a month at circular distance 0, 1, 2


def item_month_index(history: DataFrame) -> DataFrame:
    """``item_id, month_index, peak_month, seasonality, n_lines`` from purchase lines.

    Each item is compared with the shop over the months it was on sale (from the calendar
    month of its first sale on): an item launched in August 2011 has no December 2010 to
    have "not sold" in, so that month is unknown (null) for it, not a zero that would read
    as "sells badly at Christmas". The launch month counts whole for the shop."""
    ym = F.trunc(C.EVENT_TS, "month")
    shop = history.groupBy(ym.alias("_ym")).agg(F.count(F.lit(1)).alias("_shop_n"))  # small: one row a month
    per_ym = history.groupBy(C.ITEM_ID, ym.alias("_ym")).agg(F.count(F.lit(1)).alias("_n"))
    first = per_ym.groupBy(C.ITEM_ID).agg(F.min("_ym").alias("_first"), F.sum("_n").alias(C.N_LINES))
    # The shop's lines per calendar month while the item was on sale, and their total.
    on_sale = (
        first.crossJoin(F.broadcast(shop))
        .where(F.col("_ym") >= F.col("_first"))
        .groupBy(C.ITEM_ID, F.month("_ym").alias(C.MONTH))
        .agg(F.sum("_shop_n").alias("_shop_n"))
    )
    on_sale = on_sale.withColumn("_shop_share", F.col("_shop_n") / F.sum("_shop_n").over(Window.partitionBy(C.ITEM_ID)))
    sold = per_ym.groupBy(C.ITEM_ID, F.month("_ym").alias(C.MONTH)).agg(F.sum("_n").alias("_n"))
    # Months on sale without a sale of the item: 0; months before its launch stay unknown.
    shares = (
        on_sale.join(sold, on=[C.ITEM_ID, C.MONTH], how="left")
        .join(first.select(C.ITEM_ID, C.N_LINES), on=C.ITEM_ID)
        .select(
            C.ITEM_ID,
            C.MONTH,
            ((F.coalesce(F.col("_n"), F.lit(0)) / F.col(C.N_LINES)) / F.col("_shop_share")).alias("_index"),
        )
    )
    as_map = shares.groupBy(C.ITEM_ID).agg(F.map_from_entries(F.collect_list(F.struct(C.MONTH, "_index"))).alias("_m"))
    index = F.array(*[F.col("_m")[m] for m in range(1, 13)])
    return (
        as_map.join(first.select(C.ITEM_ID, C.N_LINES), on=C.ITEM_ID)
        .select(C.ITEM_ID, index.alias(C.MONTH_INDEX), C.N_LINES)
        .withColumn(C.SEASONALITY, F.array_max(C.MONTH_INDEX))  # months without sales (null) skipped
        .withColumn(C.PEAK_MONTH, F.expr(f"array_position({C.MONTH_INDEX}, {C.SEASONALITY})").cast("int"))
    )


def months_ahead(as_of: date, horizon_days: int) -> dict[int, float]:
    """Calendar months of [as_of, as_of + horizon) with the share of those days in each."""
    n = max(1, horizon_days)
    counts: dict[int, int] = {}
    for d in range(n):
        month = (as_of + timedelta(days=d)).month
        counts[month] = counts.get(month, 0) + 1
    return {month: c / n for month, c in counts.items()}


def kernel_weights(as_of: date, horizon_days: int) -> list[float]:
    """Weight of each calendar month (index 0 = January) for the weeks after as_of."""
    weights = np.zeros(12)
    for month, share in months_ahead(as_of, horizon_days).items():
        for m in range(12):
            distance = min(abs(m - (month - 1)), 12 - abs(m - (month - 1)))
            if distance < len(KERNEL):
                weights[m] += share * KERNEL[distance]
    return [float(w) for w in weights]


def seasonal_lift(profiles: DataFrame, as_of: date, horizon_days: int, min_sales: int) -> DataFrame:
    """``item_id, seasonal_lift``: the kernel-weighted mean log month index of the weeks
    ahead of as_of, over the months with sales; clipped to [-1, 1]."""
    weights = kernel_weights(as_of, horizon_days)
    # log of a zero index (never sold that month) is floored at log(1/8): "rarely", not "never".
    logs = [F.log(F.greatest(F.col(C.MONTH_INDEX)[m], F.lit(0.125))) for m in range(12)]
    known = [F.col(C.MONTH_INDEX)[m].isNotNull() for m in range(12)]
    num = sum((F.when(known[m], logs[m] * weights[m]).otherwise(0.0) for m in range(12) if weights[m]), F.lit(0.0))
    den = sum((F.when(known[m], F.lit(weights[m])).otherwise(0.0) for m in range(12) if weights[m]), F.lit(0.0))
    lift = F.when((den > 0) & (F.col(C.N_LINES) >= min_sales), num / den).otherwise(F.lit(0.0))
    return profiles.select(C.ITEM_ID, F.greatest(F.lit(-1.0), F.least(F.lit(1.0), lift)).alias(C.SEASONAL_LIFT))


def _iso_weekday() -> Column:
    return (F.dayofweek(C.EVENT_TS) + 5) % 7 + 1  # Spark: 1 = Sunday; ISO: 1 = Monday


def _shares(history: DataFrame, key: str, part: Column, size: int, out: str, offset: int) -> DataFrame:
    counts = history.groupBy(key, part.alias("_p")).agg(F.count(F.lit(1)).alias("_n"))
    totals = counts.groupBy(key).agg(
        F.sum("_n").alias(C.N_LINES), F.map_from_entries(F.collect_list(F.struct("_p", "_n"))).alias("_m")
    )
    share = F.array(*[F.coalesce(F.col("_m")[p + offset], F.lit(0)) / F.col(C.N_LINES) for p in range(size)])
    return totals.select(key, share.cast("array<double>").alias(out), C.N_LINES)


def time_of_day_profiles(history: DataFrame, key: str) -> DataFrame:
    """``<key>, hour_share, weekday_share, n_lines`` (purchase lines per hour of the day, UTC,
    and per ISO weekday, Monday first) for every item or user of ``history``."""
    hours = _shares(history, key, F.hour(C.EVENT_TS), 24, C.HOUR_SHARE, 0)
    weekdays = _shares(history, key, _iso_weekday(), 7, C.WEEKDAY_SHARE, 1)
    return hours.join(weekdays.drop(C.N_LINES), on=key)


def smoothed(share: Column, n_lines: Column, shop_share: list[float], prior_lines: float) -> Column:
    """``share`` pulled towards the shop's by ``prior_lines`` pseudo-lines: a profile from three
    purchases says little, and without this one sale at 3 pm makes every other hour "never"."""
    if prior_lines <= 0:
        return share
    shop = F.array(*[F.lit(float(s)) for s in shop_share])
    n, m = n_lines.cast("double"), F.lit(float(prior_lines))
    return F.zip_with(share, shop, lambda a, s: (a * n + s * m) / (n + m))


def time_fit(user_share: Column, item_share: Column, shop_share: list[float]) -> Column:
    """log sum_b user(b) x item(b) / shop(b): > 0 when the item sells at the user's usual times
    more than the shop does; 0 when either profile is missing."""
    terms = [user_share[b] * item_share[b] / F.lit(max(s, 1e-9)) for b, s in enumerate(shop_share)]
    value = F.log(F.greatest(sum(terms[1:], terms[0]), F.lit(1e-3)))
    return F.when(user_share.isNull() | item_share.isNull(), F.lit(0.0)).otherwise(value)


def shop_time_shares(history: DataFrame) -> tuple[list[float], list[float]]:
    """The shop's purchase lines per hour of the day (24 shares) and per ISO weekday (7)."""
    counts = history.groupBy(F.hour(C.EVENT_TS).alias("_h"), _iso_weekday().alias("_d")).count()
    rows = counts.collect()  # small: <= 168 rows
    total = sum(r["count"] for r in rows) or 1
    hours, days = [0.0] * 24, [0.0] * 7
    for r in rows:
        hours[r["_h"]] += r["count"] / total
        days[r["_d"] - 1] += r["count"] / total
    return hours, days


def shop_time_shares_of(item_profiles: DataFrame) -> tuple[list[float], list[float]]:
    """The shop's hour and weekday shares from per-item profiles (``hour_share``,
    ``weekday_share``, ``n_lines``): every purchase line has an item, so the shop's share is
    the items' shares weighted by their lines; no second pass over the history."""
    n = F.col(C.N_LINES).cast("double")
    sums = [F.sum(F.col(C.HOUR_SHARE)[b] * n) for b in range(24)] + [
        F.sum(F.col(C.WEEKDAY_SHARE)[d] * n) for d in range(7)
    ]
    row = item_profiles.where(F.col(C.HOUR_SHARE).isNotNull()).agg(F.sum(n), *sums).first()  # small: one row of 32 sums
    assert row is not None  # a global aggregate: one row
    total = float(row[0] or 0.0) or 1.0
    shares = [float(v or 0.0) / total for v in list(row)[1:]]
    return shares[:24], shares[24:]


def item_profiles(history: DataFrame) -> DataFrame:
    """Per item sold in ``history``: month index, peak month, seasonality, hour and weekday
    shares and purchase lines (what the seasonal lift and the time fit read)."""
    times = time_of_day_profiles(history, C.ITEM_ID).drop(C.N_LINES)
    return item_month_index(history).join(times, on=C.ITEM_ID, how="left")


def item_time_profiles(history: DataFrame, as_of: date, horizon_days: int, min_lines: int) -> DataFrame:
    """gold.item_time_profiles: ``item_profiles`` plus the seasonal lift at as_of."""
    profiles = item_profiles(history)
    lift = seasonal_lift(profiles, as_of, horizon_days, min_lines)
    return profiles.join(lift, on=C.ITEM_ID).select(
        C.ITEM_ID, C.MONTH_INDEX, C.PEAK_MONTH, C.SEASONALITY, C.SEASONAL_LIFT, C.HOUR_SHARE, C.WEEKDAY_SHARE, C.N_LINES
    )


def user_time_profiles(history: DataFrame) -> DataFrame:
    """gold.user_time_profiles: per known buyer, hour and weekday shares and purchase lines."""
    return time_of_day_profiles(history.where(F.col(C.USER_ID).isNotNull()), C.USER_ID)
