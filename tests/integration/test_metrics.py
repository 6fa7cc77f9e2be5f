"""Ranking and beyond-accuracy metrics against values worked out by hand (EVALUATION.md)."""

from __future__ import annotations

import math

import pytest

from shoprec.evaluation import metrics as M

RECS = "user_id string, item_id string, rank int"
TRUTH = "user_id string, item_id string"
LOG2_3 = math.log2(3)


def per_user(spark, recs, truth, ks=(5, 10, 20), **kw):
    df = M.ranking_metrics(spark.createDataFrame(recs, RECS), spark.createDataFrame(truth, TRUTH), ks, **kw)
    return {r["user_id"]: r.asDict() for r in df.collect()}


def test_single_hit_at_rank_1_is_perfect_ndcg_and_k_beyond_the_list_works(spark):
    # One relevant item, list of 3, K up to 20: the list is shorter than every K.
    got = per_user(spark, [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3)], [("u1", "a")])["u1"]
    for k in (5, 10, 20):
        assert got[f"ndcg_at_{k}"] == 1.0
        assert got[f"precision_at_{k}"] == pytest.approx(1 / k)  # denominator K, not the list length
        assert got[f"recall_at_{k}"] == 1.0
        assert got[f"recall_capped_at_{k}"] == 1.0
        assert got[f"map_at_{k}"] == 1.0
        assert got[f"hit_rate_at_{k}"] == 1.0
        assert got[f"f1_at_{k}"] == pytest.approx(2 * (1 / k) / (1 / k + 1))
    assert got["mrr"] == 1.0
    assert got["n_truth"] == 1


def test_no_hits_give_zero_everywhere(spark):
    got = per_user(spark, [("u2", "x", 1), ("u2", "y", 2)], [("u2", "z")])["u2"]
    assert {k: v for k, v in got.items() if k not in ("user_id", "n_truth")} == dict.fromkeys(
        M.ranking_metric_columns((5, 10, 20)), 0.0
    )


def test_hit_at_rank_3_with_two_relevant_items(spark):
    # truth {r, t}; list p q r s: one hit, r at rank 3.
    #   K=5: precision 1/5; recall 1/2; capped recall 1/min(5,2) = 1/2
    #        DCG = 1/log2(3+1) = 0.5; IDCG = 1/log2(2) + 1/log2(3) = 1 + 0.6309 = 1.6309
    #        NDCG = 0.5 / 1.6309 = 0.30657; AP = (1 hit up to rank 3 / 3) / min(5,2) = 1/6
    #        F1 = 2 * 0.2 * 0.5 / 0.7 = 0.28571
    #   K=2: rank 3 is beyond K, nothing counts; MRR = 1/3 uses the whole list.
    recs = [("u3", "p", 1), ("u3", "q", 2), ("u3", "r", 3), ("u3", "s", 4)]
    got = per_user(spark, recs, [("u3", "r"), ("u3", "t")], ks=(2, 5))["u3"]
    assert got["precision_at_5"] == pytest.approx(0.2)
    assert got["recall_at_5"] == pytest.approx(0.5)
    assert got["recall_capped_at_5"] == pytest.approx(0.5)
    assert got["ndcg_at_5"] == pytest.approx(0.5 / (1 + 1 / LOG2_3))
    assert got["ndcg_at_5"] == pytest.approx(0.306573, abs=1e-6)
    assert got["map_at_5"] == pytest.approx(1 / 6)
    assert got["f1_at_5"] == pytest.approx(2 * 0.2 * 0.5 / 0.7)
    assert got["hit_rate_at_5"] == 1.0
    for m in M.RANKING_METRICS:
        assert got[f"{m}_at_2"] == 0.0
    assert got["mrr"] == pytest.approx(1 / 3)


def test_two_hits_average_precision_and_capped_recall(spark):
    # truth {a, c}; list a b c. K=5: AP = (1/1 + 2/3) / 2 = 0.8333;
    # NDCG = (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309 = 0.91972.
    # K=1: one hit, capped recall 1/min(1,2) = 1, recall 1/2, AP = 1/1 / 1 = 1.
    got = per_user(spark, [("u", "a", 1), ("u", "b", 2), ("u", "c", 3)], [("u", "a"), ("u", "c")], ks=(1, 5))["u"]
    assert got["map_at_5"] == pytest.approx((1 + 2 / 3) / 2)
    assert got["ndcg_at_5"] == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    assert got["recall_capped_at_1"] == 1.0 and got["recall_at_1"] == 0.5
    assert got["map_at_1"] == 1.0 and got["ndcg_at_1"] == 1.0


def test_user_without_recs_counts_as_zero_and_duplicates_keep_the_best_rank(spark):
    recs = [
        ("u1", "a", 1),
        ("u5", "a", 3),
        ("u5", "a", 1),
        ("u5", "b", 2),  # a twice: rank 1 counts
    ]
    truth = [("u1", "a"), ("u4", "a"), ("u5", "a"), ("u5", "a")]  # u4 has no list
    got = per_user(spark, recs, truth, ks=(5,))
    assert set(got) == {"u1", "u4", "u5"}
    assert got["u4"]["ndcg_at_5"] == 0.0 and got["u4"]["mrr"] == 0.0 and got["u4"]["n_truth"] == 1
    assert got["u5"]["ndcg_at_5"] == 1.0 and got["u5"]["mrr"] == 1.0 and got["u5"]["n_truth"] == 1
    assert got["u5"]["precision_at_5"] == pytest.approx(0.2)  # one hit, not two
    means = M.mean_ranking_metrics(spark.createDataFrame(recs, RECS), spark.createDataFrame(truth, TRUTH), ks=(5,))
    assert means["n_users"] == 3
    assert means["ndcg_at_5"] == pytest.approx(2 / 3)
    assert means["hit_rate_at_5"] == pytest.approx(2 / 3)


def test_users_argument_and_empty_inputs(spark):
    recs = spark.createDataFrame([("u1", "a", 1)], RECS)
    truth = spark.createDataFrame([("u1", "a")], TRUTH)
    users = spark.createDataFrame([("u1",), ("u9",)], "user_id string")
    got = {r["user_id"]: r for r in M.ranking_metrics(recs, truth, (5,), users=users).collect()}
    assert got["u9"]["n_truth"] == 0 and got["u9"]["recall_at_5"] == 0.0 and got["u9"]["ndcg_at_5"] == 0.0
    empty = M.mean_ranking_metrics(recs, spark.createDataFrame([], TRUTH), ks=(5,))
    assert empty["n_users"] == 0 and empty["ndcg_at_5"] == 0.0
    with pytest.raises(ValueError):
        M.ranking_metrics(recs, truth, ks=(0,))


def test_grouping_by_source_scores_every_source_over_the_same_users(spark):
    # Source s1 only has a list for u1, s2 only for u2; both users are in truth, so each
    # source is averaged over both users, the missing list counting 0.
    recs = spark.createDataFrame(
        [("s1", "u1", "a", 1), ("s2", "u2", "b", 2), ("s2", "u2", "x", 1)], "source string, " + RECS
    )
    truth = spark.createDataFrame([("u1", "a"), ("u2", "b")], TRUTH)
    rows = {r["source"]: r for r in M.mean_ranking_metrics_by(recs, truth, (5,), by=("source",)).collect()}
    assert rows["s1"]["n_users"] == 2 and rows["s2"]["n_users"] == 2
    assert rows["s1"]["ndcg_at_5"] == pytest.approx(0.5)
    assert rows["s2"]["ndcg_at_5"] == pytest.approx(0.5 / LOG2_3)  # hit at rank 2: 1/log2(3), halved
    assert rows["s2"]["mrr"] == pytest.approx(0.25)
    # A grouping column on the truth side: segments of users, crossed with the sources.
    seg_truth = spark.createDataFrame([("u1", "a", "warm"), ("u2", "b", "cold")], TRUTH + ", segment string")
    got = {
        (r["source"], r["segment"]): r
        for r in M.mean_ranking_metrics_by(recs, seg_truth, (5,), by=("source", "segment")).collect()
    }
    assert set(got) == {("s1", "warm"), ("s1", "cold"), ("s2", "warm"), ("s2", "cold")}
    assert got[("s1", "warm")]["ndcg_at_5"] == 1.0 and got[("s1", "cold")]["ndcg_at_5"] == 0.0


# ------------------------------------------------------------------------- AUC
CATALOG = [("a",), ("b",), ("c",), ("z",)]


def test_sampled_auc_hand_example(spark):
    recs = spark.createDataFrame(
        [
            ("u1", "a", 1),
            ("u1", "b", 2),
            ("u2", "a", 1),
            ("u2", "b", 2),
            ("u2", "c", 3),
            ("u4", "a", 1),
            ("u4", "b", 2),
        ],
        RECS,
    )
    # u1: positive a at rank 1 beats every negative (b at rank 2, c and z off the list): 1.0
    # u2: positive z is off the list, every possible negative (a, b, c) is on it: 0.0
    # u3: no list at all: every pair is a tie at -infinity: 0.5
    # u4: positive b at rank 2; negatives a (rank 1: 0), c and z (off the list: 1): 2/3
    truth = spark.createDataFrame([("u1", "a"), ("u2", "z"), ("u3", "c"), ("u4", "b")], TRUTH)
    catalog = spark.createDataFrame(CATALOG, "item_id string")
    negatives = M.sample_negatives(truth, catalog, 10, seed=42)
    drawn = {(r["user_id"], r["negative_item"]) for r in negatives.collect()}
    assert drawn == {
        (u, i) for u, pos in (("u1", "a"), ("u2", "z"), ("u3", "c"), ("u4", "b")) for (i,) in CATALOG if i != pos
    }  # 20 draws from 4 items reach all 3 negatives
    got = {r["user_id"]: r["auc"] for r in M.sampled_auc_per_user(recs, truth, catalog, 10, 42).collect()}
    assert got == pytest.approx({"u1": 1.0, "u2": 0.0, "u3": 0.5, "u4": 2 / 3})
    assert M.sampled_auc(recs, truth, catalog, 10, 42) == pytest.approx((1 + 0 + 0.5 + 2 / 3) / 4)


def test_sampled_negatives_are_deterministic_capped_and_never_relevant(spark):
    catalog = spark.createDataFrame([(f"i{n:02d}",) for n in range(40)], "item_id string")
    truth = spark.createDataFrame([("u1", "i01"), ("u1", "i02"), ("u2", "i03")], TRUTH)
    first = sorted(M.sample_negatives(truth, catalog, 5, seed=7).collect())
    again = sorted(M.sample_negatives(truth, catalog, 5, seed=7).collect())
    other = sorted(M.sample_negatives(truth, catalog, 5, seed=8).collect())
    assert first == again and first != other
    per_positive = {}
    for r in first:
        per_positive.setdefault((r["user_id"], r["positive_item"]), set()).add(r["negative_item"])
    assert set(per_positive) == {("u1", "i01"), ("u1", "i02"), ("u2", "i03")}
    assert all(len(v) == 5 for v in per_positive.values())
    assert not per_positive[("u1", "i01")] & {"i01", "i02"} and "i03" not in per_positive[("u2", "i03")]


# ------------------------------------------------------------------------- beyond accuracy
POP = "item_id string, n_buyers long"


def test_catalog_coverage(spark):
    recs = spark.createDataFrame(
        [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "a", 1), ("u2", "d", 2), ("u2", "e", 3)], RECS
    )
    assert M.catalog_coverage(recs, 10, 2) == pytest.approx(3 / 10)  # a, b, d
    assert M.catalog_coverage(recs, 10, 3) == pytest.approx(5 / 10)
    assert M.catalog_coverage(recs, 10, 50) == pytest.approx(5 / 10)


def test_novelty_is_mean_self_information(spark):
    # 8 history users; a bought by 4 (p 1/2: 1 bit), b by 2 (2 bits), c by 1 (3 bits),
    # e by nobody: counted as one buyer (3 bits, the maximum).
    pop = spark.createDataFrame([("a", 4), ("b", 2), ("c", 1), ("d", 1)], POP)
    recs = spark.createDataFrame([("u1", "a", 1), ("u1", "b", 2), ("u2", "c", 1), ("u2", "e", 2)], RECS)
    assert M.novelty(recs, pop, 8, 2) == pytest.approx((1 + 2 + 3 + 3) / 4)
    assert M.novelty(recs, pop, 8, 1) == pytest.approx((1 + 3) / 2)


def test_popularity_bias_is_mean_popularity_percentile(spark):
    # Percentiles (share of items at most as popular): a (3) 1.0, b (2) 0.75, c and d (1) 0.5;
    # x is not in the catalog's popularity: 0.0.
    pop = spark.createDataFrame([("a", 3), ("b", 2), ("c", 1), ("d", 1)], POP)
    pct = {r["item_id"]: r["popularity_pct"] for r in M.popularity_percentiles(pop).collect()}
    assert pct == {"a": 1.0, "b": 0.75, "c": 0.5, "d": 0.5}
    recs = spark.createDataFrame([("u1", "a", 1), ("u1", "c", 2), ("u2", "b", 1), ("u2", "x", 2)], RECS)
    assert M.popularity_bias(recs, pop, 2) == pytest.approx((1 + 0.5 + 0.75 + 0) / 4)
    assert M.popularity_bias(recs, pop, 1) == pytest.approx((1 + 0.75) / 2)


def test_intra_list_diversity(spark):
    # a=(1,0) b=(0,1) c=(1,1) d=(2,0) (parallel to a) e=(0,0) (no direction: left out).
    vectors = spark.createDataFrame(
        [("a", [1.0, 0.0]), ("b", [0.0, 1.0]), ("c", [1.0, 1.0]), ("d", [2.0, 0.0]), ("e", [0.0, 0.0])],
        "item_id string, text_vector array<double>",
    )
    recs = spark.createDataFrame(
        [
            ("u1", "a", 1),
            ("u1", "b", 2),
            ("u1", "c", 3),
            ("u2", "a", 1),
            ("u2", "d", 2),
            ("u2", "e", 3),
            ("u3", "b", 1),
            ("u3", "x", 2),
        ],  # one vectored item: not counted
        RECS,
    )
    # K=2: u1 cos(a,b)=0 -> 1.0; u2 cos(a,d)=1 -> 0.0; mean 0.5
    # K=3: u1 mean(0, 1/sqrt2, 1/sqrt2) = 0.4714 -> 0.5286; u2 unchanged (e has no vector) -> 0.0
    assert M.intra_list_diversity(recs, vectors, 2) == pytest.approx(0.5)
    assert M.intra_list_diversity(recs, vectors, 3) == pytest.approx((1 - 2 / 3 / math.sqrt(2)) / 2)
    by = M.intra_list_diversity_by(recs, vectors, (1, 2)).first()
    assert by["diversity_at_1"] is None and by["diversity_users_at_1"] == 0
    assert by["diversity_users_at_2"] == 2
    assert M.intra_list_diversity(recs.where("user_id = 'u3'"), vectors, 2) is None


def test_beyond_accuracy_groups_by_source(spark):
    pop = spark.createDataFrame([("a", 4), ("b", 2), ("c", 1), ("d", 1)], POP)
    recs = spark.createDataFrame(
        [("s1", "u1", "a", 1), ("s1", "u2", "a", 1), ("s2", "u1", "c", 1), ("s2", "u1", "d", 2)],
        "source string, " + RECS,
    )
    got = {r["source"]: r for r in M.beyond_accuracy(recs, pop, 8, 4, (1, 2), by=("source",)).collect()}
    assert got["s1"]["coverage_at_2"] == pytest.approx(1 / 4) and got["s1"]["n_users"] == 2
    assert got["s2"]["coverage_at_1"] == pytest.approx(1 / 4) and got["s2"]["coverage_at_2"] == pytest.approx(2 / 4)
    assert got["s1"]["novelty_at_2"] == pytest.approx(1.0) and got["s2"]["novelty_at_2"] == pytest.approx(3.0)
    assert got["s1"]["popularity_bias_at_1"] == 1.0 and got["s2"]["popularity_bias_at_2"] == pytest.approx(0.5)
