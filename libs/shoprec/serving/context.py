"""Request-time context terms: the batch re-ranker's season and time-of-day terms computed for
the moment of a request instead of for as_of (NumPy over gold.item_time_profiles).

    seasonal lift(item, day)   kernel-weighted mean log month index of the weeks after ``day``,
                               clipped to [-1, 1] (``features.time_profiles.seasonal_lift``)
    moment fit(item, hour, wd) (log item(hour)/shop(hour) + log item(wd)/shop(wd)) / 2: the batch
                               time fit with the user's profile replaced by the request's moment

Both use the item profiles smoothed towards the shop's as the batch re-ranker does
(``recommend.rerank.time_prior_lines``); items without a profile get 0.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from shoprec import columns as C
from shoprec.config import RerankConfig
from shoprec.features.time_profiles import kernel_weights

_FLOOR_INDEX = 0.125  # as the batch lift: a month without sales is "rarely", not "never"
_FLOOR_FIT = 1e-3


@dataclass(frozen=True)
class Profiles:
    row: dict[str, int]  # item id -> row of the arrays
    month_index: np.ndarray  # (items, 12), NaN where the month has no sales
    n_lines: np.ndarray  # (items,)
    hours: np.ndarray  # (items, 24), smoothed towards the shop's
    days: np.ndarray  # (items, 7), Monday first
    shop_hours: np.ndarray  # (24,)
    shop_days: np.ndarray  # (7,)
    lift_as_of: np.ndarray  # (items,) the lift the batch list was scored with
    season_days: int
    min_lines: int
    _cache: dict = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def empty(cls) -> Profiles:
        z = np.zeros((0,))
        return cls({}, np.zeros((0, 12)), z, np.zeros((0, 24)), np.zeros((0, 7)), np.zeros(24), np.zeros(7), z, 28, 10)

    def lift(self, day: date) -> np.ndarray:
        """Every item's seasonal lift for the weeks after ``day``."""
        return self._cached(("lift", day), lambda: self._lift(day))

    def moment_fit(self, at: datetime) -> np.ndarray:
        """Every item's fit to the hour and ISO weekday of ``at`` (UTC, as the profiles are)."""
        utc = at.astimezone(UTC) if at.tzinfo else at
        key = ("moment", utc.hour, utc.isoweekday())
        return self._cached(key, lambda: self._moment(utc.hour, utc.isoweekday()))

    def _cached(self, key: tuple, compute) -> np.ndarray:  # type: ignore[no-untyped-def]
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            hit = compute()
            with self._lock:
                if len(self._cache) > 4096:  # days x hours of a long-running process
                    self._cache.clear()
                self._cache[key] = hit
        return hit

    def _lift(self, day: date) -> np.ndarray:
        w = np.asarray(kernel_weights(day, self.season_days))
        known = ~np.isnan(self.month_index)
        logs = np.log(np.maximum(np.where(known, self.month_index, 1.0), _FLOOR_INDEX))
        num = (np.where(known, logs, 0.0) * w).sum(axis=1)
        den = (known * w).sum(axis=1)
        ok = (den > 0) & (self.n_lines >= self.min_lines)
        lift = np.divide(num, den, out=np.zeros_like(num), where=ok)
        return np.clip(lift, -1.0, 1.0)

    def _moment(self, hour: int, weekday: int) -> np.ndarray:
        if not len(self.row):
            return np.zeros(0)
        h = self.hours[:, hour] / max(float(self.shop_hours[hour]), 1e-9)
        d = self.days[:, weekday - 1] / max(float(self.shop_days[weekday - 1]), 1e-9)
        return (np.log(np.maximum(h, _FLOOR_FIT)) + np.log(np.maximum(d, _FLOOR_FIT))) / 2.0

    def deltas(self, item_ids: list[str], at: datetime, as_of: date | None, season_w: float, moment_w: float):  # type: ignore[no-untyped-def]
        """Per item: season_w x (lift at ``at`` - lift at as_of) + moment_w x moment fit."""
        out = np.zeros(len(item_ids))
        if not len(self.row) or (season_w == 0 and moment_w == 0):
            return out
        rows = np.array([self.row.get(i, -1) for i in item_ids])
        have = rows >= 0
        if not have.any():
            return out
        r = rows[have]
        season = self.lift(at.date()) - (self.lift(as_of) if as_of is not None else self.lift_as_of)
        out[have] = season_w * season[r] + moment_w * self.moment_fit(at)[r]
        return out


def _matrix(values: list, width: int) -> np.ndarray:
    m = np.full((len(values), width), np.nan)
    for i, v in enumerate(values):
        if v is not None and len(v) == width:
            m[i] = [np.nan if x is None else x for x in v]
    return m


def profiles_from(table: pa.Table, rr: RerankConfig) -> Profiles:
    """Profiles of gold.item_time_profiles' rows (one as_of partition)."""
    ids = [str(i) for i in table.column(C.ITEM_ID).to_pylist()]
    n = np.asarray(table.column(C.N_LINES).to_pylist(), dtype=np.float64)
    month = _matrix(table.column(C.MONTH_INDEX).to_pylist(), 12)
    hours = np.nan_to_num(_matrix(table.column(C.HOUR_SHARE).to_pylist(), 24))
    days = np.nan_to_num(_matrix(table.column(C.WEEKDAY_SHARE).to_pylist(), 7))
    # The shop's shares: the items' shares weighted by their lines (as shop_time_shares_of).
    total = float(n.sum()) or 1.0
    shop_h, shop_d = (hours * n[:, None]).sum(axis=0) / total, (days * n[:, None]).sum(axis=0) / total
    m = float(rr.time_prior_lines)
    if m > 0:
        hours = (hours * n[:, None] + shop_h * m) / (n[:, None] + m)
        days = (days * n[:, None] + shop_d * m) / (n[:, None] + m)
    lift = np.asarray([0.0 if v is None else v for v in table.column(C.SEASONAL_LIFT).to_pylist()], dtype=np.float64)
    return Profiles(
        row={i: k for k, i in enumerate(ids)},
        month_index=month,
        n_lines=n,
        hours=hours,
        days=days,
        shop_hours=shop_h,
        shop_days=shop_d,
        lift_as_of=lift,
        season_days=rr.season_days,
        min_lines=rr.season_min_lines,
    )
