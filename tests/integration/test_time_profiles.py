"""Seasonal month index, seasonal lift at a date, hour/weekday profiles, the re-ranking's context terms."""

from __future__ import annotations

import math
from datetime import date

import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.features import time_profiles as TP
from tests.builders import event, interactions, rows_of
from tests.conftest import make_config


def _season_shop(spark):
    # The shop sells 4 lines in January and 4 in July: X mostly in January, Y mostly in July.
    rows = [event("u", "X", f"2021-01-0{d} 10:00") for d in (1, 2, 3)] + [event("u", "X", "2021-07-01 10:00")]
    rows += [event("v", "Y", "2021-01-04 10:00")] + [event("v", "Y", f"2021-07-0{d} 18:00") for d in (2, 3, 4)]
    return interactions(spark, rows)


def test_month_index_is_the_items_share_over_the_shops_share(spark):
    profiles = TP.item_month_index(_season_shop(spark))
    unknown = [None] * 5
    assert rows_of(profiles) == [
        ("X", [1.5, None, None, None, None, None, 0.5, *unknown], 4, 1.5, 1),
        ("Y", [0.5, None, None, None, None, None, 1.5, *unknown], 4, 1.5, 7),
    ]


def test_months_before_an_items_first_sale_are_unknown(spark):
    # The shop sells in January, March and July; N is launched in March: January is not a
    # month N failed to sell in. Over March-July the shop sold 3 + 4 lines, N 1 + 1.
    rows = [event("u", "old", f"2021-{m}-0{d} 10:00") for m in ("01", "03") for d in (1, 2)]
    rows += [event("u", "old", f"2021-07-0{d} 10:00") for d in (1, 2, 3)] + [
        event("v", "N", "2021-03-05 10:00"),
        event("v", "N", "2021-07-05 10:00"),
    ]
    got = {r[C.ITEM_ID]: r[C.MONTH_INDEX] for r in TP.item_month_index(interactions(spark, rows)).collect()}
    assert got["N"] == [
        None,
        None,
        pytest.approx(0.5 / (3 / 7)),
        None,
        None,
        None,
        pytest.approx(0.5 / (4 / 7)),
        None,
        None,
        None,
        None,
        None,
    ]
    # "old" was on sale all along: compared with all 9 of the shop's lines.
    assert got["old"][0] == pytest.approx((2 / 7) / (2 / 9)) and got["old"][2] == pytest.approx((2 / 7) / (3 / 9))


@pytest.mark.parametrize(
    ("as_of", "x", "y"),
    [
        (date(2022, 1, 1), math.log(1.5), math.log(0.5)),  # January ahead: X's season
        (date(2022, 7, 1), math.log(0.5), math.log(1.5)),  # July ahead: Y's
        (date(2022, 4, 1), 0.0, 0.0),  # April: no known month within two
    ],
)
def test_seasonal_lift_reads_the_months_ahead(spark, as_of, x, y):
    lift = TP.seasonal_lift(TP.item_month_index(_season_shop(spark)), as_of, 28, min_sales=1)
    assert rows_of(lift) == [("X", round(x, 9)), ("Y", round(y, 9))]
    rare = TP.seasonal_lift(TP.item_month_index(_season_shop(spark)), as_of, 28, min_sales=5)
    assert rows_of(rare) == [("X", 0.0), ("Y", 0.0)]


def test_kernel_reaches_unknown_months_through_their_neighbours():
    # 2011-11-01: the data holds no November; October and December carry it, half each.
    w = TP.kernel_weights(date(2011, 11, 1), 28)
    assert w[10] == 1.0 and w[9] == w[11] == 0.5 and w[8] == w[0] == 0.25
    assert sum(1 for v in w if v) == 5
    split = TP.kernel_weights(date(2011, 11, 20), 20)  # 11 days of November, 9 of December
    assert split[10] == pytest.approx(11 / 20 + 9 / 20 * 0.5) and split[11] == pytest.approx(9 / 20 + 11 / 20 * 0.5)


def test_hour_and_weekday_profiles_and_the_time_fit(spark):
    history = _season_shop(spark)
    profiles = {r[C.ITEM_ID]: r for r in TP.time_of_day_profiles(history, C.ITEM_ID).collect()}
    assert profiles["X"][C.HOUR_SHARE][10] == 1.0
    assert profiles["Y"][C.HOUR_SHARE][10] == 0.25 and profiles["Y"][C.HOUR_SHARE][18] == 0.75
    # 2021-01-01 was a Friday, 2021-07-01 a Thursday.
    assert profiles["X"][C.WEEKDAY_SHARE] == [0.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25]
    shop, _ = TP.shop_time_shares(history)
    assert shop[10] == 5 / 8 and shop[18] == 3 / 8
    users = TP.time_of_day_profiles(history, C.USER_ID).withColumnRenamed(C.HOUR_SHARE, "_u")
    pairs = users.crossJoin(TP.time_of_day_profiles(history, C.ITEM_ID).select(C.ITEM_ID, C.HOUR_SHARE))
    fit = {
        (r[C.USER_ID], r[C.ITEM_ID]): r["fit"]
        for r in pairs.select(
            C.USER_ID, C.ITEM_ID, TP.time_fit(pairs["_u"], pairs[C.HOUR_SHARE], shop).alias("fit")
        ).collect()
    }
    # u buys at 10 only: X (all at 10) fits 1 / (5/8); Y (a quarter at 10) fits a quarter of that.
    assert fit[("u", "X")] == pytest.approx(math.log(8 / 5))
    assert fit[("u", "Y")] == pytest.approx(math.log(0.25 * 8 / 5))
    assert fit[("v", "Y")] > fit[("v", "X")]


def test_profiles_are_pulled_towards_the_shops_by_pseudo_lines(spark):
    history = _season_shop(spark)
    hours, days = TP.shop_time_shares(history)
    assert hours[10] == 5 / 8 and hours[18] == 3 / 8 and sum(days) == pytest.approx(1.0)
    # The same shares from the per-item profiles (what recommend reads from gold).
    of_items = TP.shop_time_shares_of(TP.item_time_profiles(history, date(2022, 1, 1), 28, 1))
    assert of_items[0] == pytest.approx(hours) and of_items[1] == pytest.approx(days)
    profiles = TP.time_of_day_profiles(history, C.ITEM_ID)
    pulled = {
        r[C.ITEM_ID]: r["h"]
        for r in profiles.select(
            C.ITEM_ID, TP.smoothed(F.col(C.HOUR_SHARE), F.col(C.N_LINES), hours, 4).alias("h")
        ).collect()
    }
    # X: 4 lines all at 10, plus 4 pseudo-lines spread as the shop's (5/8 at 10, 3/8 at 18).
    assert pulled["X"][10] == pytest.approx((4 * 1.0 + 4 * 5 / 8) / 8) and pulled["X"][18] == pytest.approx(3 / 16)
    unchanged = profiles.select(TP.smoothed(F.col(C.HOUR_SHARE), F.col(C.N_LINES), hours, 0).alias("h"))
    assert sorted(r["h"][10] for r in unchanged.collect()) == [0.25, 1.0]


def _context_pool(spark):
    """u and v with one candidate each of X (a January, 10 o'clock item) and Y (July, 18 o'clock)."""

    rows = [("u", "X", 0.5), ("u", "Y", 1.0), ("v", "X", 1.0), ("v", "Y", 0.5)]
    return spark.createDataFrame(rows, [C.USER_ID, C.ITEM_ID, C.FUSED_SCORE])


def test_context_terms_give_seasonal_lift_and_time_fit_per_candidate(spark):
    from shoprec.ranking import rerank

    rr = make_config(
        "/tmp/unused", "recommend.rerank.season_min_lines=1", "recommend.rerank.time_prior_lines=0"
    ).recommend.rerank
    terms = rerank.context_terms(_season_shop(spark), date(2022, 1, 1), rr)
    got = {
        (r[C.USER_ID], r[C.ITEM_ID]): (r[C.SEASONAL_LIFT], r[C.TIME_FIT])
        for r in rerank.with_context(_context_pool(spark), terms).collect()
    }
    # January ahead: X's season. u buys X's way (10 o'clock, X's weekdays), v mostly Y's.
    assert got[("u", "X")][0] == got[("v", "X")][0] == pytest.approx(math.log(1.5))
    assert got[("u", "Y")][0] == pytest.approx(math.log(0.5))
    assert got[("u", "X")][1] > got[("u", "Y")][1] and got[("v", "Y")][1] > got[("v", "X")][1]
    # Serving reads the features stage's gold profiles instead: the same terms.
    gold = rerank.terms_from_profiles(
        TP.item_time_profiles(_season_shop(spark), date(2021, 6, 1), 7, 99),
        TP.user_time_profiles(_season_shop(spark)),
        date(2022, 1, 1),
        rr,
    )
    from_gold = {
        (r[C.USER_ID], r[C.ITEM_ID]): (r[C.SEASONAL_LIFT], r[C.TIME_FIT])
        for r in rerank.with_context(_context_pool(spark), gold).collect()
    }
    assert from_gold.keys() == got.keys()
    assert all(from_gold[k] == pytest.approx(got[k]) for k in got)


def test_context_weights_are_chosen_on_the_truth(spark):
    from shoprec.ranking import rerank

    rr = make_config(
        "/tmp/unused",
        "recommend.rerank.season_min_lines=1",
        "recommend.rerank.time_weight=0",
        "recommend.rerank.season_weights=[0.0, 1.0]",
    ).recommend.rerank
    pool = rerank.with_context(_context_pool(spark), rerank.context_terms(_season_shop(spark), date(2022, 1, 1), rr))
    # Both users bought X in January: the fused score alone puts Y first for u, the lift mends it.
    truth = spark.createDataFrame([("u", "X"), ("v", "X")], [C.USER_ID, C.ITEM_ID])
    search = rerank.choose_context_weights(pool, truth, rr)
    assert (search.season_weight, search.time_weight) == (1.0, 0.0)
    assert search.ndcg[(1.0, 0.0)] == 1.0 > search.ndcg[(0.0, 0.0)] and search.n_users == 2
    assert any("chosen (*): season 1, time 0" in line for line in search.lines())


def test_time_report_follows_items_across_as_of_dates(spark, tmp_path):
    import io
    import json
    import os
    from datetime import datetime

    from mlflow import MlflowClient

    from shoprec.stages.context import JobContext
    from shoprec.stages.recommend import RECOMMENDATIONS_SCHEMA
    from shoprec.stages.time_report import time_report_stage
    from tests.builders import write_silver
    from tests.conftest import make_config

    ctx = JobContext.create(make_config(tmp_path / "lakehouse"), io.StringIO())
    rows = [
        event(f"m{n}", "mug", f"{y}-{m:02d}-1{n} 10:00", description="white mug")
        for y, months in ((2020, range(1, 13)), (2021, range(1, 11)))
        for m in months
        for n in range(2)
    ]
    rows += [
        event(f"x{n}", "xmas", f"2020-{m}-{n + 1:02d} 10:00", description="christmas bauble")
        for m, k in ((11, 6), (12, 8))
        for n in range(k)
    ]
    rows += [event(f"x{n}", "xmas", f"2021-10-{n + 1:02d} 10:00", description="christmas bauble") for n in range(4)]
    # One bauble sold in January 2020: on sale from the start, so compared with the whole year.
    rows += [
        event("x9", "xmas", "2021-06-15 10:00", description="christmas bauble"),
        event("x8", "xmas", "2020-01-20 10:00", description="christmas bauble"),
        event("o", "other", "2021-03-01 10:00"),
    ]
    write_silver(ctx.tables, spark, rows)
    lists = {
        date(2021, 6, 1): {"u1": ["mug", "other"], "u2": ["mug", "other"]},
        date(2021, 11, 1): {"u1": ["xmas", "mug"], "u2": ["xmas"]},
    }
    for as_of, users in lists.items():
        recs = [
            (u, r + 1, item, 1.0, "als", "why", "m", "1", as_of, datetime(2021, 1, 1))
            for u, items in users.items()
            for r, item in enumerate(items)
        ]
        ctx.tables.replace_partition(
            spark.createDataFrame(recs, RECOMMENDATIONS_SCHEMA), C.GOLD_RECOMMENDATIONS, {C.AS_OF: as_of}
        )

    report = time_report_stage(ctx, ["xmas", "mug"], min_lines=10)
    assert report.as_ofs == ["2021-06-01", "2021-11-01"]
    xmas, mug = report.items
    assert (xmas.item_id, xmas.peak_month, mug.item_id) == ("xmas", 12, "mug")
    assert [xmas.by_as_of[a]["users_share"] for a in report.as_ofs] == [0.0, 1.0]
    assert [mug.by_as_of[a]["users_share"] for a in report.as_ofs] == [1.0, 0.5]
    # June is far from the bauble's months; November sits between its October and December.
    lift = {(line.item_id, a): line.by_as_of[a]["lift"] for line in report.items for a in report.as_ofs}
    assert lift[("xmas", "2021-06-01")] == -1.0 < lift[("mug", "2021-06-01")]
    assert lift[("xmas", "2021-11-01")] > 0 > lift[("mug", "2021-11-01")]
    assert report.seasonal_items == 1 and report.seasonal_share == {"2021-06-01": 0.0, "2021-11-01": 2 / 3}
    names = sorted(os.path.basename(f) for f in report.files)
    assert names == ["rank_by_as_of.png", "seasonal_profiles.png", "seasonal_share.png", "time_report.json"]
    with open(report.files[-1]) as fh:
        assert json.load(fh)["seasonal_share"]["2021-11-01"] == 2 / 3
    client = MlflowClient()
    run = client.search_runs(
        client.get_experiment_by_name("shoprec").experiment_id, filter_string="tags.`shoprec.stage` = 'time-report'"
    )[0]
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "time_report")) == [
        f"time_report/{n}" for n in names
    ]
    # Without --items: the pre-Christmas item that holds slots, then the steadiest best seller
    # ("other" sold once: below min_lines).
    assert [i.item_id for i in time_report_stage(ctx, None, min_lines=10).items] == ["xmas", "mug"]


def test_context_search_drops_only_candidates_that_cannot_reach_a_top_10(spark):
    import random

    from shoprec.ranking import fusion, rerank

    rr = make_config("/tmp/unused").recommend.rerank
    rnd = random.Random(7)
    rows = [
        (f"u{u}", f"i{i}", 1.0 - i / 59, rnd.uniform(-1, 1), rnd.uniform(-2, 2)) for u in range(8) for i in range(60)
    ]
    rows += [("small", f"i{i}", 1.0 - i / 4, 0.0, 0.0) for i in range(5)]  # fewer than 10: all kept
    pool = spark.createDataFrame(rows, [C.USER_ID, C.ITEM_ID, C.FUSED_SCORE, C.SEASONAL_LIFT, C.TIME_FIT])
    truth = spark.createDataFrame(
        [(u, f"i{rnd.randrange(60)}") for u in (f"u{n}" for n in range(8)) for _ in range(3)] + [("small", "i4")],
        [C.USER_ID, C.ITEM_ID],
    )
    search = rerank.choose_context_weights(pool, truth, rr)
    grid = [(s, t) for s in rr.season_weights for t in rr.time_weights]
    score = F.col(C.FUSED_SCORE) + rerank.context_boost(F.col(C.SEASON_WEIGHT), F.col(C.TIME_WEIGHT))
    everything, _, n_users = fusion.grid_metrics(pool, truth, grid, (C.SEASON_WEIGHT, C.TIME_WEIGHT), score)
    assert search.ndcg == pytest.approx(everything) and search.n_users == n_users == 9
    assert search.candidates == 485 and search.searched < search.candidates
    kept = rerank.reachable(pool, list(rr.season_weights), list(rr.time_weights), 10)
    assert kept.where(F.col(C.USER_ID) == "small").count() == 5
