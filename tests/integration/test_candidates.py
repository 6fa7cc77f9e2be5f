"""Baseline candidate sources on hand-made purchase histories (real Spark)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date

import pytest

from shoprec import columns as C
from shoprec.candidates import baselines
from shoprec.split import TemporalSplit
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


# ---------------------------------------------------------------------------- buy it again
def repeat_shop():
    """me: OLD in 3 baskets ~half a year before as_of, NEW yesterday on two lines of one
    basket; others make POP the bestseller, then OLD, NEW, SEC."""
    rows = [event("me", "OLD", f"2010-12-0{d} 00:00") for d in (1, 2, 3)]
    rows += [event("me", "NEW", "2011-05-31 00:00"), event("me", "NEW", "2011-05-31 00:00")]
    rows += [event(f"p{i}", "POP", "2011-05-30 00:00") for i in range(3)]
    rows += [event(f"p{i}", "OLD", "2011-05-30 00:00") for i in range(2)]
    rows += [event("p0", "SEC", "2011-05-30 00:00")]
    return rows


def scored_lists(df):
    return {u: [(i, round(s, 9)) for i, s in items] for u, items in _pairs(df).items()}


def _pairs(df):
    out: dict[str, list[tuple[str, float]]] = {}
    for r in sorted(df.collect(), key=lambda r: (r[C.USER_ID], r[C.RANK])):
        out.setdefault(r[C.USER_ID], []).append((r[C.ITEM_ID], r[C.SCORE]))
    return out


def test_repeat_ranks_own_items_by_decayed_basket_count_then_popular_items(spark, ccfg):
    ccfg = replace(ccfg, n=4)
    history = interactions(spark, repeat_shop())
    serve = users(spark, [("me", None), ("new", None)])
    day = 0.5 ** (1 / 30)  # NEW's one basket, 1 day before as_of, at half-life 30
    # Half-life 0 counts baskets: OLD's 3 beat NEW's 1 (its two lines are one basket).
    # Then the popular items me never bought, scored minus their popularity rank.
    plain = scored_lists(baselines.repeat(history, serve, ccfg, AS_OF, half_life_days=0))
    assert plain["me"] == [("OLD", 3.0), ("NEW", 1.0), ("POP", -1.0), ("SEC", -4.0)]
    assert plain["new"] == [("POP", -1.0), ("OLD", -2.0), ("NEW", -3.0), ("SEC", -4.0)]  # no history: popular
    # Half-life 30: OLD's baskets are ~6 half-lives old (3 x 0.5^6 ~ 0.05), NEW's one day.
    decayed = scored_lists(baselines.repeat(history, serve, ccfg, AS_OF, half_life_days=30))
    old = sum(0.5 ** ((date(2011, 6, 1) - date(2010, 12, d)).days / 30) for d in (1, 2, 3))
    assert decayed["me"] == [("NEW", round(day, 9)), ("OLD", round(old, 9)), ("POP", -1.0), ("SEC", -4.0)]
    # The config's half-life when none is passed; exclude_bought does not empty the list.
    fixed = replace(ccfg, repeat_half_life_days=30.0, exclude_bought=True)
    assert scored_lists(baselines.repeat(history, serve, fixed, AS_OF)) == decayed
    with pytest.raises(ValueError, match="half-life"):
        baselines.repeat(history, serve, ccfg, AS_OF)
    # Rows at or after as_of change nothing.
    poisoned = [
        *repeat_shop(),
        event("me", "LEAK", "2011-06-01 00:00"),
        *[event("me", "SEC", f"2011-06-0{d} 00:00") for d in (2, 3, 4, 5)],
        *[event(f"q{i}", "LEAK", "2011-06-02 00:00") for i in range(9)],
    ]
    again = baselines.repeat(interactions(spark, poisoned), serve, ccfg, AS_OF, half_life_days=30)
    assert scored_lists(again) == decayed


def test_repeat_fills_to_n_without_duplicates_and_cuts_long_histories(spark, ccfg):
    ccfg = replace(ccfg, n=3)
    rows = repeat_shop() + [event("many", f"M{i}", "2011-05-01 00:00") for i in range(5)]
    serve = users(spark, [("me", None), ("many", None)])
    got = _pairs(baselines.repeat(interactions(spark, rows), serve, ccfg, AS_OF, half_life_days=7))
    assert [i for i, _ in got["me"]] == ["NEW", "OLD", "POP"]  # OLD is popular too: listed once
    assert [i for i, _ in got["many"]] == ["M0", "M1", "M2"]  # 5 equal own items: ties to the smaller id
    assert all(s > 0 for _, s in got["many"])


def validation_shop(rebuy: str):
    """u0..u3 bought OLD in 3 baskets in January and NEW the day before the validation window
    (2011-05-18 .. 2011-06-01); in the window each rebuys ``rebuy``. After as_of they all
    buy the other one (the evaluation window: never read). c is a cold buyer of the window."""
    other = "NEW" if rebuy == "OLD" else "OLD"
    rows = []
    for u in range(4):
        rows += [event(f"u{u}", "OLD", f"2011-01-0{d} 10:00") for d in (1, 2, 3)]
        rows += [event(f"u{u}", "NEW", "2011-05-17 10:00"), event(f"u{u}", rebuy, "2011-05-25 10:00")]
        rows += [event(f"u{u}", other, f"2011-06-0{d} 10:00") for d in (2, 3, 4, 5)]
    rows += [event("c", rebuy, "2011-05-25 10:00")]
    return rows


@pytest.mark.parametrize(("rebuy", "chosen"), [("NEW", 30.0), ("OLD", 0.0)])
def test_repeat_half_life_is_the_one_the_validation_window_favours(spark, ccfg, rebuy, chosen):
    split = TemporalSplit(AS_OF, validation_days=14, evaluation_days=14)
    ccfg = replace(ccfg, n=5, repeat_half_life_grid=(365.0, 30.0, 0.0))
    search = baselines.choose_repeat_half_life(interactions(spark, validation_shop(rebuy)), ccfg, split)
    # As of 2011-05-18, OLD (3 baskets, ~137 days old) leads at half-life 0 and 365, NEW
    # (one basket, a day old) at 30: the rebought item at rank 1 scores 1, at rank 2 1/log2(3).
    second = 1 / math.log2(3)
    expected = {h: 1.0 if (h == 30.0) == (rebuy == "NEW") else second for h in (0.0, 30.0, 365.0)}
    assert search.ndcg == pytest.approx(expected)
    assert search.half_life_days == chosen  # OLD: 0 and 365 tie, the smaller wins
    assert search.n_users == 4  # the warm users; c had no history before the window
    assert any("<- chosen" in line for line in search.lines())
