"""ALS pieces on real Spark: stable id maps, the blocked top-N against MLlib's own, learning a pattern."""

from __future__ import annotations

import random

import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.als.model import AlsParams, fit_als, item_factors, user_factors
from shoprec.als.topn import top_n_for_users
from shoprec.stages import id_maps


def two_group_ratings(spark, users_per_group=12, items_per_group=10, per_user=6, seed=1):
    """Users of group g buy only items of group g: a pattern ALS must pick up."""
    rnd = random.Random(seed)
    rows = []
    for g in range(2):
        for u in range(users_per_group):
            user = g * users_per_group + u
            for item in rnd.sample(range(g * items_per_group, (g + 1) * items_per_group), per_user):
                rows.append((user, item, float(rnd.randint(1, 3))))
    return spark.createDataFrame(rows, f"{C.USER_IDX} int, {C.ITEM_IDX} int, {C.CONFIDENCE} double")


@pytest.fixture(scope="module")
def fitted(spark):
    ratings = two_group_ratings(spark)
    fit = fit_als(ratings, AlsParams(rank=4, reg_param=0.05, alpha=5.0, max_iter=8), num_blocks=2, seed=3)
    return ratings, fit.model


def test_id_map_keeps_indices_and_appends_new_ids(spark, tables):
    first = id_maps.user_map(tables, spark.createDataFrame([("c",), ("a",), ("b",), ("a",)], "user_id string"))
    assert sorted(map(tuple, first.collect())) == [("a", 0), ("b", 1), ("c", 2)]
    second = id_maps.user_map(tables, spark.createDataFrame([("b",), ("e",), ("d",)], "user_id string"))
    assert sorted(map(tuple, second.collect())) == [("a", 0), ("b", 1), ("c", 2), ("d", 3), ("e", 4)]
    version = tables.version(C.GOLD_USER_ID_MAP)
    id_maps.user_map(tables, spark.createDataFrame([("a",), ("e",)], "user_id string"))
    assert tables.version(C.GOLD_USER_ID_MAP) in (version, version + 1)
    assert tables.read(C.GOLD_USER_ID_MAP).count() == 5


def test_blocked_top_n_gives_mllib_recommend_for_all_users(fitted):
    _, model = fitted
    ours = top_n_for_users(user_factors(model), item_factors(model), 5, block_users=5)  # several blocks
    theirs = (
        model.recommendForAllUsers(5)
        .select(C.USER_IDX, F.posexplode("recommendations").alias("pos", "rec"))
        .select(
            C.USER_IDX,
            F.col("rec.item_idx").alias(C.ITEM_IDX),
            (F.col("pos") + 1).alias(C.RANK),
            F.col("rec.rating").alias(C.SCORE),
        )
    )
    got = {(r[C.USER_IDX], r[C.RANK]): (r[C.ITEM_IDX], r[C.SCORE]) for r in ours.collect()}
    want = {(r[C.USER_IDX], r[C.RANK]): (r[C.ITEM_IDX], r[C.SCORE]) for r in theirs.collect()}
    assert got.keys() == want.keys()
    assert len(got) == 24 * 5
    for key, (item, score) in want.items():
        assert got[key][1] == pytest.approx(score, rel=1e-4, abs=1e-5)
        if got[key][0] != item:  # only a float tie may reorder
            assert got[key][1] == pytest.approx(want[key][1], abs=1e-5)


def test_als_recommends_unbought_items_of_the_users_own_group(fitted):
    ratings, model = fitted
    recs = top_n_for_users(user_factors(model), item_factors(model), 3, exclude=ratings)
    rows = recs.collect()
    assert len(rows) == 24 * 3
    bought = {(r[C.USER_IDX], r[C.ITEM_IDX]) for r in ratings.collect()}
    assert not bought & {(r[C.USER_IDX], r[C.ITEM_IDX]) for r in rows}
    same_group = sum((r[C.USER_IDX] // 12) == (r[C.ITEM_IDX] // 10) for r in rows)
    assert same_group / len(rows) >= 0.9
    assert sorted({r[C.RANK] for r in rows}) == [1, 2, 3]
