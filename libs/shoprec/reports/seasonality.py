"""The time-sensitivity report: seasonal profiles of example items and how their place in
the recommendations moves across ``as_of`` dates.

    gold.recommendations (every as_of partition present) ─┐
    silver purchases before the latest as_of ─► month index per item (features.time_profiles)
        ─► example items: the pre-Christmas and summer items (peak month index >= 2) that
           hold the most slots, and the steadiest best sellers
        ─► per as_of: share of users with the item in their top K, its mean rank there,
           its seasonal lift at that date; share of all slots held by seasonal items
        ─► seasonal_profiles.png, rank_by_as_of.png, seasonal_share.png, time_report.json

Run the pipeline (or just recommend) for two or more ``--as-of`` dates into the same data
root first; each writes its own partition of gold.recommendations.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.features import time_profiles as TP
from shoprec.reports.browse import as_of_dates
from shoprec.split import purchases

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class ItemLine:
    item_id: str
    description: str
    peak_month: int
    seasonality: float
    month_index: list[float | None]
    by_as_of: dict[str, dict[str, float | None]] = field(default_factory=dict)  # users share, mean rank, lift


@dataclass
class TimeReport:
    as_ofs: list[str]
    profile_as_of: str
    items: list[ItemLine]
    seasonal_items: int  # items counted as seasonal for the share below
    seasonal_share: dict[str, float]  # as_of -> share of all personal slots
    files: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        lines = [
            f"time report: {len(self.as_ofs)} as_of dates ({', '.join(self.as_ofs)}), profiles from the "
            f"history before {self.profile_as_of}",
            f"  slots held by the {self.seasonal_items:,} pre-Christmas items (peak month Sep-Dec, index >= 2): "
            + ", ".join(f"{a} {s:.1%}" for a, s in self.seasonal_share.items()),
        ]
        for item in self.items:
            cells = "; ".join(
                f"{a}: {v['users_share']:.1%} of users"
                + (f" (mean rank {v['mean_rank']:.1f})" if v["mean_rank"] is not None else "")
                + f", lift {v['lift']:+.2f}"
                for a, v in item.by_as_of.items()
            )
            lines.append(
                f"  {item.item_id} {item.description[:32]:<32} peak {MONTHS[item.peak_month - 1]} "
                f"x{item.seasonality:.1f}  {cells}"
            )
        lines += [f"  wrote {path}" for path in self.files]
        return lines


PRE_CHRISTMAS = (9, 10, 11, 12)  # peak months of the items the slot share counts as seasonal
SUMMER = (4, 5, 6, 7, 8)
STEADY_MIN_MONTHS = 9  # known months (on sale, shop open) an example of "no season" needs


def seasonal_items(profiles: DataFrame, min_lines: int, months: tuple[int, ...] = PRE_CHRISTMAS) -> DataFrame:
    """``item_id`` of items with at least ``min_lines`` lines whose peak month index (>= 2)
    falls in ``months``."""
    return profiles.where(
        (F.col(C.N_LINES) >= min_lines) & (F.col(C.SEASONALITY) >= 2.0) & F.col(C.PEAK_MONTH).isin(*months)
    ).select(C.ITEM_ID)


def example_items(
    profiles: DataFrame, recs: DataFrame, n_seasonal: int, n_summer: int, n_steady: int, min_lines: int
) -> list[str]:
    """The ``n_seasonal`` pre-Christmas items and the ``n_summer`` summer items that hold the
    most recommendation slots over all as_of dates (a seasonal item nobody is recommended at
    any date shows nothing), then the ``n_steady`` best sellers closest to no season over at
    least ``STEADY_MIN_MONTHS`` known months."""
    slots = recs.groupBy(C.ITEM_ID).agg(F.count(F.lit(1)).alias("_slots"))

    def most_recommended(months: tuple[int, ...], n: int) -> list[str]:
        top = (
            seasonal_items(profiles, min_lines, months)
            .join(slots, on=C.ITEM_ID)
            .orderBy(F.col("_slots").desc(), C.ITEM_ID)
            .limit(n)
        )
        return [r[C.ITEM_ID] for r in top.collect()]  # small: n items

    chosen = most_recommended(PRE_CHRISTMAS, n_seasonal) + most_recommended(SUMMER, n_summer)
    # Steady means flat over most of the year: an item launched in September has one or two
    # known months, trivially "flat".
    known = F.size(F.filter(F.col(C.MONTH_INDEX), lambda v: v.isNotNull()))
    steady = (
        profiles.where(
            (F.col(C.N_LINES) >= min_lines) & (known >= STEADY_MIN_MONTHS) & ~F.col(C.ITEM_ID).isin(chosen or [""])
        )
        .orderBy(F.col(C.SEASONALITY).asc(), F.col(C.N_LINES).desc(), C.ITEM_ID)
        .limit(n_steady)
    )
    return chosen + [r[C.ITEM_ID] for r in steady.collect()]  # small: n_steady items


def placement(recs: DataFrame, items: list[str]) -> dict[tuple[str, str], tuple[float, float | None]]:
    """(as_of, item) -> (share of the as_of's users with the item in their list, mean rank)."""
    users = recs.groupBy(C.AS_OF).agg(F.count_distinct(C.USER_ID).alias("_users"))
    hits = (
        recs.where(F.col(C.ITEM_ID).isin(items))
        .groupBy(C.AS_OF, C.ITEM_ID)
        .agg(F.count_distinct(C.USER_ID).alias("_with"), F.avg(C.RANK).alias("_rank"))
    )
    rows = users.join(hits, on=C.AS_OF, how="left").collect()  # small: as_of x items
    out = {}
    for r in rows:
        if r[C.ITEM_ID] is not None:
            out[(r[C.AS_OF].isoformat(), r[C.ITEM_ID])] = (r["_with"] / r["_users"], r["_rank"])
    return out


def seasonal_slot_share(recs: DataFrame, profiles: DataFrame, min_lines: int) -> tuple[int, dict[str, float]]:
    """(how many items count as seasonal, as_of -> share of slots they hold): seasonal =
    peak in September to December with a peak index of at least 2."""
    seasonal = seasonal_items(profiles, min_lines)
    n = seasonal.count()
    marked = recs.join(seasonal.withColumn("_seasonal", F.lit(1.0)), on=C.ITEM_ID, how="left")
    shares = marked.groupBy(C.AS_OF).agg(F.avg(F.coalesce(F.col("_seasonal"), F.lit(0.0))).alias("_share"))
    rows = shares.collect()  # small: one row per as_of
    return n, {r[C.AS_OF].isoformat(): float(r["_share"]) for r in sorted(rows, key=lambda r: r[C.AS_OF])}


def build(
    interactions: DataFrame,
    recs_all: DataFrame,
    names: DataFrame,
    out_dir: str,
    horizon_days: int,
    n_seasonal: int = 3,
    n_summer: int = 1,
    n_steady: int = 2,
    min_lines: int = 100,
    items: list[str] | None = None,
) -> TimeReport:
    """Profiles, placements and plots for every as_of partition of ``recs_all``."""
    recs = recs_all.persist()  # one row per (user, rank): cold-start lists live in their own table
    try:
        as_ofs = as_of_dates(recs)
        if not as_ofs:
            raise ValueError("gold.recommendations has no rows")
        latest = as_ofs[-1]
        history = purchases(interactions.where(F.col(C.EVENT_TS) < F.lit(latest)))
        profiles = TP.item_month_index(history).persist()
        chosen = items or example_items(profiles, recs, n_seasonal, n_summer, n_steady, min_lines)
        lines = _item_lines(profiles, names, chosen)
        placed = placement(recs, chosen)
        for as_of in as_ofs:
            lifts = _lifts_at(interactions, as_of, horizon_days, chosen)
            for line in lines:
                share, rank = placed.get((as_of.isoformat(), line.item_id), (0.0, None))
                line.by_as_of[as_of.isoformat()] = {
                    "users_share": share,
                    "mean_rank": rank,
                    "lift": lifts.get(line.item_id, 0.0),
                }
        n_seasonal_items, shares = seasonal_slot_share(recs, profiles, min_lines)
        profiles.unpersist()
    finally:
        recs.unpersist()
    report = TimeReport([a.isoformat() for a in as_ofs], latest.isoformat(), lines, n_seasonal_items, shares)
    report.files = _write(report, out_dir)
    return report


def _item_lines(profiles: DataFrame, names: DataFrame, items: list[str]) -> list[ItemLine]:
    chosen = profiles.where(F.col(C.ITEM_ID).isin(items)).join(names, on=C.ITEM_ID, how="left")
    rows = {r[C.ITEM_ID]: r for r in chosen.collect()}  # small: the example items
    return [
        ItemLine(
            i, rows[i][C.DESCRIPTION] or "", rows[i][C.PEAK_MONTH], rows[i][C.SEASONALITY], list(rows[i][C.MONTH_INDEX])
        )
        for i in items
        if i in rows
    ]


def _lifts_at(interactions: DataFrame, as_of: date, horizon_days: int, items: list[str]) -> dict[str, float]:
    """Each item's seasonal lift as the recommendations of that as_of could know it."""
    history = purchases(interactions.where(F.col(C.EVENT_TS) < F.lit(as_of)))
    lift = TP.seasonal_lift(TP.item_month_index(history), as_of, horizon_days, min_sales=1)
    rows = lift.where(F.col(C.ITEM_ID).isin(items)).collect()  # small: the few example items
    return {r[C.ITEM_ID]: r[C.SEASONAL_LIFT] for r in rows}


def _write(report: TimeReport, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    files = []

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for item in report.items:
        values = [v if v is not None else float("nan") for v in item.month_index]
        ax.plot(range(12), values, marker="o", label=f"{item.item_id} {item.description[:28]}")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(12), MONTHS)
    ax.set_ylabel("month index (item share / shop share)")
    ax.set_title(f"Seasonal profiles, history before {report.profile_as_of} (gaps: months without sales)")
    ax.legend(fontsize=7)
    files.append(_save(fig, out_dir, "seasonal_profiles.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(report.as_ofs))
    for n, as_of in enumerate(report.as_ofs):
        ax.bar(
            [i + n * width for i in range(len(report.items))],
            [item.by_as_of[as_of]["users_share"] or 0.0 for item in report.items],
            width,
            label=f"as_of {as_of}",
        )
    ax.set_xticks(
        [i + width * (len(report.as_ofs) - 1) / 2 for i in range(len(report.items))],
        [item.item_id for item in report.items],
    )
    ax.set_ylabel("share of users with the item in their top K")
    ax.set_title("Example items in the recommendations, by as_of")
    ax.legend()
    files.append(_save(fig, out_dir, "rank_by_as_of.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(report.seasonal_share), list(report.seasonal_share.values()))
    ax.set_ylabel(f"share of slots: {report.seasonal_items} seasonal items")
    ax.set_title("Seasonal (Sep-Dec peak) items in the recommendations")
    files.append(_save(fig, out_dir, "seasonal_share.png"))

    path = os.path.join(out_dir, "time_report.json")
    with open(path, "w") as fh:
        json.dump(
            {
                "as_ofs": report.as_ofs,
                "profile_as_of": report.profile_as_of,
                "seasonal_items": report.seasonal_items,
                "seasonal_share": report.seasonal_share,
                "items": [vars(i) for i in report.items],
            },
            fh,
            indent=2,
            default=str,
        )
    files.append(path)
    return files


def _save(fig: Figure, out_dir: str, name: str) -> str:
    import matplotlib.pyplot as plt

    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
