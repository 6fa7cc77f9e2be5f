"""Baseline candidate sources on hand-made purchase histories (real Spark)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from shoprec import columns as C
from shoprec.candidates import baselines
from tests.builders import event, interactions

AS_OF = date(2011, 6, 1)


def lists(df):
    out: dict[str, list[str]] = {}
    for r in sorted(df.collect(), key=lambda r: (r[C.USER_ID], r[C.RANK])):
        out.setdefault(r[C.USER_ID], []).append(r[C.ITEM_ID])
    return out


def users(spark, rows):
    return spark.createDataFrame(rows, "user_id string, country string")


@pytest.fixture
def ccfg(cfg):
    return replace(cfg.candidates, n=3, popularity_half_life_days=30)


def test_popular_counts_each_buyer_once_weighted_by_recency(spark, ccfg):
    rows = [
        # A: 2 buyers 30 days ago -> 2 x 0.5 = 1.0 (u1's 5 reorders count once)
        *[event("u1", "A", "2011-05-02 00:00") for _ in range(5)],
        event("u2", "A", "2011-05-02 00:00"),
        # B: 1 buyer yesterday-ish -> ~0.98; C: 3 buyers 60 days ago -> 0.75
        event("u3", "B", "2011-05-31 00:00"),
        event("u1", "C", "2011-04-02 00:00"),
        event("u2", "C", "2011-04-02 00:00"),
        event("u3", "C", "2011-04-02 00:00"),
        event("u4", "D", "2011-01-01 00:00"),
        event("u5", "Z", "2011-06-01 00:00"),
        event("u6", "Z", "2011-06-02 00:00"),  # after as_of: ignored
    ]
    got = baselines.popular_global(interactions(spark, rows), users(spark, [("u1", None), ("new", None)]), ccfg, AS_OF)
    assert lists(got) == {"u1": ["A", "B", "C"], "new": ["A", "B", "C"]}
    scores = {r[C.ITEM_ID]: r[C.SCORE] for r in got.where("user_id = 'u1'").collect()}
    assert scores["A"] == pytest.approx(1.0) and scores["C"] == pytest.approx(0.75)
    excluded = baselines.popular_global(
        interactions(spark, rows), users(spark, [("u1", None)]), replace(ccfg, exclude_bought=True), AS_OF
    )
    assert lists(excluded) == {"u1": ["B", "D"]}  # A and C were bought; the list is what is left


def test_popular_by_country_serves_the_users_country_and_fills_from_the_global_list(spark, ccfg):
    rows = [
        event("f1", "F1", "2011-05-30 10:00", country="France"),
        event("f2", "F1", "2011-05-30 10:00", country="France"),
        event("f1", "F2", "2011-05-30 10:00", country="France"),
        *[event(f"g{i}", "G", "2011-05-30 10:00") for i in range(5)],
        *[event(f"h{i}", "H", "2011-05-30 10:00") for i in range(4)],
    ]
    serve = users(spark, [("f1", "France"), ("g0", "United Kingdom"), ("x", "Peru"), ("y", None)])
    got = lists(baselines.popular_by_country(interactions(spark, rows), serve, ccfg, AS_OF))
    assert got["f1"] == ["F1", "F2", "G"]  # France's two, then the global best
    assert got["g0"] == ["G", "H", "F1"]
    assert got["x"] == got["y"] == ["G", "H", "F1"]  # no purchases there / no country: global


def test_popular_by_hour_uses_the_bucket_of_most_orders(spark, ccfg):
    ccfg = replace(ccfg, hour_buckets=(6, 18), n=2)
    rows = [
        event("night", "N1", "2011-05-30 20:00", basket="n1"),
        event("night", "N1", "2011-05-29 02:00", basket="n2"),
        event("night", "D1", "2011-05-28 09:00", basket="n3"),
        event("owl", "N2", "2011-05-30 23:00"),
        event("owl2", "N2", "2011-05-30 22:00"),
        *[event(f"day{i}", "D1", "2011-05-30 10:00") for i in range(4)],
        event("day0", "D2", "2011-05-30 11:00"),
    ]
    got = lists(
        baselines.popular_by_hour(
            interactions(spark, rows), users(spark, [("night", None), ("day0", None), ("nobody", None)]), ccfg, AS_OF
        )
    )
    assert got["night"] == ["N2", "N1"]  # 18-05 bucket: N2 has two buyers, N1 one
    assert got["day0"] == ["D1", "D2"]
    assert got["nobody"] == ["D1", "N2"]  # global list


def test_cooccurrence_recommends_what_was_bought_together_with_recent_items(spark, ccfg):
    ccfg = replace(ccfg, min_cooccurrence=2, recent_items=1)
    rows = []
    for b in range(3):  # A and B together in 3 baskets, A and C in 2, A and D once
        rows += [
            event(f"x{b}", "A", "2011-05-01 10:00", basket=f"b{b}"),
            event(f"x{b}", "B", "2011-05-01 10:00", basket=f"b{b}"),
        ]
    for b in range(2):
        rows += [
            event(f"y{b}", "A", "2011-05-02 10:00", basket=f"c{b}"),
            event(f"y{b}", "C", "2011-05-02 10:00", basket=f"c{b}"),
        ]
    rows += [event("z", "A", "2011-05-03 10:00", basket="d"), event("z", "D", "2011-05-03 10:00", basket="d")]
    rows += [event("me", "E", "2011-04-01 10:00"), event("me", "A", "2011-05-20 10:00", basket="mine")]
    got = baselines.cooccurrence(
        interactions(spark, rows), users(spark, [("me", None), ("stranger", None)]), ccfg, AS_OF
    )
    # Seed: me's latest item A. sim(A,B) = 3/sqrt(7*3), sim(A,C) = 2/sqrt(7*2); D is below min_cooccurrence.
    assert lists(got) == {"me": ["B", "C"]}
    scores = {r[C.ITEM_ID]: r[C.SCORE] for r in got.collect()}
    assert scores["B"] == pytest.approx(3 / (7 * 3) ** 0.5)
    assert scores["C"] == pytest.approx(2 / (7 * 2) ** 0.5)
