"""shoprec recommend: candidate sources, fusion, re-ranking, reasons, and the stage end to end."""

from __future__ import annotations

import dataclasses
import io
import math
from datetime import date

import pandas as pd
import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.candidates import sources as S
from shoprec.candidates.baselines import item_similarity
from shoprec.ranking import explain, fusion, rerank
from shoprec.stages.context import JobContext
from shoprec.stages.features import features_stage
from shoprec.stages.recommend import recommend_stage
from shoprec.stages.train_als import train_als_stage
from shoprec.stages.train_hybrid import train_hybrid_stage
from shoprec.tables import faults
from tests.builders import event, interactions, rows_of, write_silver
from tests.conftest import make_config
from tests.integration.test_hybrid import TINY, group_shop

AS_OF = date(2021, 3, 1)


# ------------------------------------------------------------------------------ sources
def test_repeat_cooccurrence_and_popular_sources(spark):
    rows = [
        event("u", "A", "2021-01-01 10:00"),
        event("u", "B", "2021-01-01 10:00"),
        event("u", "A", "2021-01-20 10:00"),
        event("v", "A", "2021-01-05 10:00"),
        event("v", "C", "2021-01-05 10:00"),
        event("w", "B", "2021-01-06 10:00", country="France"),
        event("w", "C", "2021-01-06 10:00", country="France"),
    ]
    history = interactions(spark, rows)
    users = spark.createDataFrame([("u",)], [C.USER_ID])
    repeat = S.repeat_candidates(history, users, 5)
    assert rows_of(repeat) == [("u", "A", C.SRC_REPEAT, "A", 2.0, 1), ("u", "B", C.SRC_REPEAT, "B", 1.0, 2)]

    cfg = make_config("/tmp/unused", "candidates.min_cooccurrence=1")
    partners = S.cooccurrence_candidates(history, users, cfg.candidates, 5, 5)
    # Baskets u{A,B} u{A} v{A,C} w{B,C}: cosine A-B = A-C = 1/sqrt(3*2), B-C = 1/2. u's seeds
    # are A and B; C is a partner of both (summed), the anchor is the seed it is closest to.
    third = 1 / math.sqrt(6)
    assert rows_of(partners) == [
        ("u", "A", C.SRC_COOCCURRENCE, "B", round(third, 9), 2),
        ("u", "B", C.SRC_COOCCURRENCE, "A", round(third, 9), 3),
        ("u", "C", C.SRC_COOCCURRENCE, "B", round(third + 0.5, 9), 1),
    ]

    # One partner per item: A's best is B or C (a tie, the smaller id), B's and C's each other.
    closest = item_similarity(
        history,
        make_config("/tmp/unused", "candidates.min_cooccurrence=1", "candidates.partners_per_item=1").candidates,
    )
    assert sorted((r["item_a"], r["item_b"]) for r in closest.collect()) == [("A", "B"), ("B", "C"), ("C", "B")]

    lists = S.country_lists(history, AS_OF, 2, 0.0, 28, 0.0, min_country_buyers=2)
    assert rows_of(lists.where(F.col(C.COUNTRY).isNull()), C.SCORE) == [(None, "A", 1), (None, "B", 2)]
    # France has one buyer (< 2): the global list; the UK has its own (A: u, v; B and C: one each).
    assert rows_of(lists.where(F.col(C.COUNTRY) == "France"), C.SCORE) == [("France", "A", 1), ("France", "B", 2)]
    assert rows_of(lists.where(F.col(C.COUNTRY) == "United Kingdom"), C.SCORE) == [
        ("United Kingdom", "A", 1),
        ("United Kingdom", "B", 2),
    ]
    placed = spark.createDataFrame(
        [("x", "France"), ("y", "Narnia"), ("z", None)], f"{C.USER_ID} string, {C.COUNTRY} string"
    )
    served = S.popular_candidates(lists, placed, 1).select(C.USER_ID, C.ITEM_ID, C.ANCHOR)
    assert rows_of(served) == [("x", "A", "France"), ("y", "A", None), ("z", "A", None)]


def test_pool_keeps_one_row_per_pair_from_the_best_source(spark):
    schema = S.POOL_SCHEMA
    parts = [
        spark.createDataFrame([("u", "A", C.SRC_ALS, None, 0.9, 1), ("u", "B", C.SRC_ALS, None, 0.5, 2)], schema),
        spark.createDataFrame([("u", "A", C.SRC_COOCCURRENCE, "Z", 0.3, 1)], schema),
        spark.createDataFrame([("u", "B", C.SRC_REPEAT, "B", 2.0, 5)], schema),
    ]
    pool = S.candidate_pool(parts)
    assert rows_of(pool) == [("u", "A", C.SRC_COOCCURRENCE, "Z", 0.3, 1), ("u", "B", C.SRC_ALS, None, 0.5, 2)]


def test_content_neighbours_are_cosine_nearest_and_never_the_item_itself(spark):
    items = spark.createDataFrame(
        [("A", [1.0, 0.0]), ("B", [0.9, 0.1]), ("C", [0.0, 1.0]), ("D", None)],
        f"{C.ITEM_ID} string, {C.TEXT_VECTOR} array<double>",
    )
    got = S.content_neighbours(items, 1).collect()
    assert {(r["item_a"], r["item_b"]) for r in got} == {("A", "B"), ("B", "A"), ("C", "B")}


# ------------------------------------------------------------------------------ fusion
def test_normalisation_and_fusion_per_user(spark):
    df = spark.createDataFrame(
        [("u", "A", 10.0, 0.2), ("u", "B", 0.0, 0.8), ("u", "C", None, 0.5), ("v", "A", 3.0, 0.1)],
        f"{C.USER_ID} string, {C.ITEM_ID} string, {C.CF_SCORE} double, {C.DEEP_SCORE} double",
    )
    n = fusion.with_normalised_scores(df, "minmax").withColumn(C.FUSED_SCORE, fusion.fused(0.25))
    got = {(r[C.USER_ID], r[C.ITEM_ID]): (r["_cf_n"], r["_deep_n"], r[C.FUSED_SCORE]) for r in n.collect()}
    assert got[("u", "A")] == pytest.approx((1.0, 0.0, 0.25))
    assert got[("u", "B")] == pytest.approx((0.0, 1.0, 0.75))
    assert got[("u", "C")] == pytest.approx((0.0, 0.5, 0.375))  # unknown to ALS: the user's lowest
    assert got[("v", "A")] == pytest.approx((1.0, 1.0, 1.0))  # a single candidate
    ranked = fusion.with_normalised_scores(df, "rank").collect()
    assert {(r[C.ITEM_ID], r["_deep_n"]) for r in ranked if r[C.USER_ID] == "u"} == {("B", 1.0), ("C", 0.5), ("A", 0.0)}


def test_weight_search_finds_the_weight_that_ranks_the_truth_first(spark):
    # ALS puts the bought item first, the deep model last: w = 1 wins; ties go to the smaller w.
    # At w = 0.5 both fuse to 0.5 and the tie goes to the smaller item id: the miss.
    df = spark.createDataFrame(
        [("u", "z_hit", 1.0, 0.0), ("u", "a_miss", 0.0, 1.0)],
        f"{C.USER_ID} string, {C.ITEM_ID} string, {C.CF_SCORE} double, {C.DEEP_SCORE} double",
    )
    truth = spark.createDataFrame([("u", "z_hit")], [C.USER_ID, C.ITEM_ID])
    search = fusion.choose_weight(fusion.with_normalised_scores(df, "minmax"), truth, (0.0, 0.5, 0.75, 1.0))
    assert search.weight == 0.75 and search.ndcg[0.0] < search.ndcg[1.0] == 1.0
    assert search.n_users == 1 and any("<- chosen" in line for line in search.lines())


# ------------------------------------------------------------------------------ re-ranking
def _candidates(*rows):
    return pd.DataFrame(
        rows, columns=[C.USER_ID, C.ITEM_ID, C.FINAL_SCORE, C.CANDIDATE_SOURCE, C.ANCHOR, C.SOURCE_SCORE, C.TEXT_VECTOR]
    )


def test_mmr_trades_relevance_for_diversity_and_caps_new_items():
    pdf = _candidates(
        ("u", "A", 1.0, C.SRC_ALS, None, 1.0, [1.0, 0.0]),
        ("u", "A2", 0.95, C.SRC_ALS, None, 1.0, [1.0, 0.0]),  # a near copy of A
        ("u", "B", 0.8, C.SRC_ALS, None, 1.0, [0.0, 1.0]),
        ("u", "N1", 0.99, C.SRC_NEW_ITEM, "A", 0.5, [0.7, 0.7]),
        ("u", "N2", 0.98, C.SRC_NEW_ITEM, "A", 0.5, [0.6, 0.8]),
    )
    relevance_only = rerank._mmr(pdf, 3, 1.0, max_new=3)
    assert list(relevance_only[C.ITEM_ID]) == ["A", "N1", "N2"]
    diverse = rerank._mmr(pdf, 3, 0.5, max_new=0)
    assert list(diverse[C.ITEM_ID]) == ["A", "B", "A2"] and list(diverse[C.RANK]) == [1, 2, 3]
    one_new = rerank._mmr(pdf, 4, 1.0, max_new=1)
    assert list(one_new[C.ITEM_ID]) == ["A", "N1", "A2", "B"]


def test_rebuy_policy(spark):
    history = interactions(
        spark,
        [
            event("u", "soap", "2021-01-01 10:00"),
            event("u", "soap", "2021-01-09 10:00"),
            event("u", "vase", "2021-01-01 10:00"),
        ],
    )
    pool = spark.createDataFrame([("u", i, C.SRC_REPEAT, i, 1.0, 1) for i in ("soap", "vase", "cup")], S.POOL_SCHEMA)
    cfg = make_config("/tmp/unused")

    def kept(policy: str) -> list[str]:
        settings = cfg.recommend.__class__(**{**cfg.recommend.__dict__, "rebuy": policy, "min_repeat_rate": 0.5})
        return sorted(r[C.ITEM_ID] for r in rerank.apply_rebuy(pool, history, settings).collect())

    assert kept("allow") == ["cup", "soap", "vase"]
    assert kept("exclude") == ["cup"]
    assert kept("consumables") == ["cup", "soap"]  # soap: its one buyer bought it twice


def test_reasons_name_the_anchor_item(spark):
    items = spark.createDataFrame([("85123A", "WHITE HANGING HEART T-LIGHT HOLDER")], [C.ITEM_ID, C.DESCRIPTION])
    recs = spark.createDataFrame(
        [
            ("u", "X", C.SRC_COOCCURRENCE, "85123A", 0.3),
            ("u", "Y", C.SRC_CONTENT, "85123A", 0.9),
            ("u", "Z", C.SRC_REPEAT, "Z", 3.0),
            ("u", "W", C.SRC_POPULAR_CONTEXT, "France", 5.0),
            ("u", "V", C.SRC_ALS, None, 1.0),
        ],
        [C.USER_ID, C.ITEM_ID, C.CANDIDATE_SOURCE, C.ANCHOR, C.SOURCE_SCORE],
    )
    got = {r[C.ITEM_ID]: r[C.REASON] for r in explain.with_reasons(recs, items).collect()}
    assert got == {
        "X": "bought together with 85123A (WHITE HANGING HEART T-LIGHT HOLDER)",
        "Y": "similar to 85123A (WHITE HANGING HEART T-LIGHT HOLDER) you bought",
        "Z": "you bought it in 3 earlier orders",
        "W": "popular in France around this time of year",
        "V": "customers who buy what you buy also buy it",
    }


# ------------------------------------------------------------------------------ the stage
def _shop_rows():
    rows = group_shop()
    # A light user (one basket), a browser (views only), a cold user (first purchase after as_of)
    # and a new red item nobody bought before as_of (only viewed).
    rows.append(event("light_user", "red1", "2021-02-20 11:00", description="red cup number 1"))
    rows.append(
        event(
            "browser", "blue2", "2021-02-21 11:00", event_type=C.VIEW, country="France", description="blue cup number 2"
        )
    )
    rows.append(event("red_user0", "red_new", "2021-02-25 11:00", event_type=C.VIEW, description="red cup number new"))
    rows.append(event("cold_user", "red3", "2021-03-03 11:00", description="red cup number 3"))
    return rows


@pytest.fixture(scope="module")
def recommended(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend") / "lakehouse"
    cfg = make_config(
        root,
        *TINY,
        "als.rank=4",
        "als.tune=false",
        "features.text.clusters=2",
        "split.validation_days=14",
        "split.evaluation_days=14",
        "recommend.k=5",
        "recommend.cold_start.min_country_buyers=2",
        "recommend.cold_start.new_item_share=0.2",
    )
    out = io.StringIO()
    ctx = JobContext.create(cfg, out)
    write_silver(ctx.tables, spark, _shop_rows())
    for stage in (features_stage, train_als_stage, train_hybrid_stage):
        stage(ctx, AS_OF)
    first = recommend_stage(ctx, AS_OF)
    recs = ctx.tables.read_as_of(C.GOLD_RECOMMENDATIONS, AS_OF).toPandas()
    return cfg, ctx, first, recs, out.getvalue()


@pytest.mark.horovod
def test_every_user_seen_before_as_of_gets_k_recommendations(recommended):
    _, ctx, first, recs, _ = recommended
    users = set(recs[C.USER_ID])
    expected = {f"{c}_user{u}" for c in ("red", "blue") for u in range(12)} | {"light_user", "browser"}
    assert users == expected
    assert "cold_user" not in users and "late_user" not in users
    # Users not seen yet: one list per country (and "*" for any other) in their own table.
    lists = ctx.tables.read_as_of(C.GOLD_COLD_START_LISTS, AS_OF).toPandas()
    assert {"United Kingdom", "France", C.COLD_START_ANY_COUNTRY} <= set(lists[C.LIST_KEY])
    assert lists.groupby(C.LIST_KEY)[C.RANK].max().le(5).all() and first.cold_lists == lists[C.LIST_KEY].nunique()
    assert set(lists[C.MODEL_NAME]) == {"shoprec-cold-start"} and set(lists[C.CANDIDATE_SOURCE]) == {
        C.SRC_POPULAR_CONTEXT
    }
    sizes = recs.groupby(C.USER_ID)[C.RANK].agg(["count", "max", "min"])
    assert (sizes["count"] == 5).all() and (sizes["max"] == 5).all() and (sizes["min"] == 1).all()
    assert recs.groupby(C.USER_ID)[C.ITEM_ID].nunique().eq(5).all()
    assert first.users == len(expected) and first.rows == len(recs)
    assert recs[C.REASON].str.len().gt(0).all()


@pytest.mark.horovod
def test_recommendations_follow_the_groups_and_are_stamped(recommended):
    _, ctx, _first, recs, out = recommended
    warm = recs[recs[C.USER_ID].str.match(r"^(red|blue)_user")]
    for user, rows in warm.groupby(C.USER_ID):
        colour = user.split("_")[0]
        top = rows.sort_values(C.RANK).head(3)
        assert top[C.ITEM_ID].str.startswith(colour).all(), (user, list(top[C.ITEM_ID]))
    personal = recs[~recs[C.CANDIDATE_SOURCE].eq(C.SRC_POPULAR_CONTEXT)]
    assert set(personal[C.MODEL_NAME]) == {"shoprec-hybrid"} and set(personal[C.MODEL_VERSION]) == {"1"}
    assert set(recs.loc[recs[C.USER_ID] == "browser", C.CANDIDATE_SOURCE]) == {C.SRC_POPULAR_CONTEXT}
    lists = ctx.tables.read_as_of(C.GOLD_COLD_START_LISTS, AS_OF).toPandas()
    assert set(lists.loc[lists[C.LIST_KEY] == "France", C.REASON]) == {"popular in France around this time of year"}
    assert "fusion weight w =" in out and "gold.recommendations version" in out
    assert "gold.cold_start_lists version" in out


@pytest.mark.horovod
def test_new_items_enter_through_content_and_are_capped(recommended):
    _, _, _, recs, _ = recommended
    fresh = recs[recs[C.ITEM_ID] == "red_new"]
    assert len(fresh) > 0 and set(fresh[C.CANDIDATE_SOURCE]) == {C.SRC_NEW_ITEM}
    # Word2Vec on a 21-item catalog is noisy, but the red buyers are who it reaches.
    assert (fresh[C.USER_ID].str.startswith("red") | fresh[C.USER_ID].eq("light_user")).mean() > 0.8
    assert fresh[C.REASON].str.startswith("new in the shop, similar to ").all()
    red = fresh[fresh[C.USER_ID].str.startswith("red")]
    assert red[C.REASON].str.match(r"new in the shop, similar to red\d \(red cup number \d\) you bought").all()
    per_user = recs[recs[C.CANDIDATE_SOURCE] == C.SRC_NEW_ITEM].groupby(C.USER_ID).size()
    assert (per_user <= 1).all()  # 0.2 x K = 1


# Last in the module: it rewrites the fixture's tables (the tests above read its frames only).
@pytest.mark.horovod
def test_recommend_killed_between_its_commits_leaves_each_partition_whole_and_the_rerun_completes(recommended):
    cfg, ctx, first, recs, _ = recommended

    def lists(context):
        recs_now = context.tables.read_as_of(C.GOLD_RECOMMENDATIONS, AS_OF)
        cold_now = context.tables.read_as_of(C.GOLD_COLD_START_LISTS, AS_OF)
        return (
            sorted(map(tuple, recs_now.select(C.USER_ID, C.RANK, C.ITEM_ID).collect())),
            sorted(map(str, cold_now.drop(C.GENERATED_AT).collect())),
        )

    before = lists(ctx)
    # Lists of 3 instead of 5 change both tables; killed right after the first commit.
    three = JobContext.create(
        dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, k=3)), io.StringIO()
    )
    with faults.crash_after(C.GOLD_RECOMMENDATIONS), pytest.raises(faults.Crash):
        recommend_stage(three, AS_OF)
    crashed = lists(three)
    recommend_stage(three, AS_OF)
    after = lists(three)
    assert len(before[0]) == len(recs) == first.rows and before != after
    # The rerun replaced the partition (3 per user, not 5 + 3), for the same users.
    assert {r for _, r, _ in after[0]} == {1, 2, 3} and len(after[0]) == 3 * len({u for u, _, _ in before[0]})
    assert {u for u, _, _ in after[0]} == {u for u, _, _ in before[0]}
    # gold.recommendations is the new partition, whole; the cold-start lists the old one, untouched.
    assert crashed == (after[0], before[1])
