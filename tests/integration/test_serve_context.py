"""The API's request-time context terms (NumPy, shoprec.serving.context) equal the batch
re-ranker's Spark ones (features.time_profiles) on the same profiles: the seasonal lift for a
day, and the time fit with the user's profile replaced by the request's hour and weekday."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import RerankConfig
from shoprec.features import time_profiles as TP
from shoprec.serving.context import profiles_from

RR = RerankConfig(season_days=28, season_min_lines=10, time_prior_lines=10)
NONE = None


def _profiles() -> list[dict]:
    rng = np.random.default_rng(5)
    rows = []
    for n, lines in enumerate([500, 40, 12, 9, 300]):
        month = [float(x) for x in rng.gamma(2.0, 0.5, 12)]
        if n == 1:
            month[11] = 0.0  # never sold in December: floored, not -inf
        if n == 2:
            month[10] = NONE  # a month without data
        hours = rng.dirichlet(np.ones(24))
        days = rng.dirichlet(np.ones(7))
        rows.append(
            {
                C.ITEM_ID: f"i{n}",
                C.MONTH_INDEX: month,
                C.SEASONAL_LIFT: 0.0,
                C.HOUR_SHARE: [float(x) for x in hours],
                C.WEEKDAY_SHARE: [float(x) for x in days],
                C.N_LINES: lines,
            }
        )
    return rows


@pytest.mark.parametrize("day", [date(2011, 11, 1), date(2011, 12, 20), date(2012, 3, 30)])
def test_seasonal_lift_equals_the_batch_one(spark, day):
    rows = _profiles()
    numpy_lift = profiles_from(pa.Table.from_pylist(rows), RR).lift(day)
    spark_rows = TP.seasonal_lift(spark.createDataFrame(rows), day, RR.season_days, RR.season_min_lines).collect()
    spark_lift = {r[C.ITEM_ID]: r[C.SEASONAL_LIFT] for r in spark_rows}
    assert np.allclose(numpy_lift, [spark_lift[r[C.ITEM_ID]] for r in rows], atol=1e-12), (numpy_lift, spark_lift)
    assert numpy_lift[3] == 0.0  # 9 lines: below season_min_lines, no lift


@pytest.mark.parametrize("at", [datetime(2011, 12, 5, 10, 30, tzinfo=UTC), datetime(2011, 12, 11, 23, 0)])
def test_moment_fit_is_the_batch_time_fit_for_a_one_hot_user(spark, at):
    rows = _profiles()
    profiles = profiles_from(pa.Table.from_pylist(rows), RR)
    items = spark.createDataFrame(rows)
    hours, days = TP.shop_time_shares_of(items)
    n = F.col(C.N_LINES)
    one_hot = spark.createDataFrame(
        [
            (
                [1.0 if h == at.hour else 0.0 for h in range(24)],
                [1.0 if d == at.isoweekday() else 0.0 for d in range(1, 8)],
            )
        ],
        "user_hours array<double>, user_days array<double>",
    )
    fit = (
        TP.time_fit(F.col("user_hours"), TP.smoothed(F.col(C.HOUR_SHARE), n, hours, RR.time_prior_lines), hours)
        + TP.time_fit(F.col("user_days"), TP.smoothed(F.col(C.WEEKDAY_SHARE), n, days, RR.time_prior_lines), days)
    ) / 2.0
    got = {r[C.ITEM_ID]: r["fit"] for r in items.crossJoin(one_hot).select(C.ITEM_ID, fit.alias("fit")).collect()}
    assert np.allclose(profiles.moment_fit(at), [got[r[C.ITEM_ID]] for r in rows], atol=1e-9)
