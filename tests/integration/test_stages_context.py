"""The shared ways of the stages: one as_of of a table, paths under the data root, the stored ALS source."""

from __future__ import annotations

import os
from datetime import date

import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec import paths
from shoprec.candidates import sources as S
from shoprec.errors import ShoprecError
from shoprec.stages.context import optional_as_of, required_as_of

JUNE, JULY = date(2021, 6, 1), date(2021, 7, 1)


def _two_cutoffs(spark, tables):
    df = spark.createDataFrame([("a", JUNE), ("b", JUNE), ("c", JULY)], f"{C.ITEM_ID} string, {C.AS_OF} date")
    for as_of in (JUNE, JULY):
        tables.replace_partition(df.where(F.col(C.AS_OF) == F.lit(as_of)), C.GOLD_ITEM_FEATURES, {C.AS_OF: as_of})


def test_read_as_of_reads_one_partition(spark, tables):
    _two_cutoffs(spark, tables)
    assert sorted(r[C.ITEM_ID] for r in tables.read_as_of(C.GOLD_ITEM_FEATURES, JUNE).collect()) == ["a", "b"]
    assert [r[C.ITEM_ID] for r in tables.read_as_of(C.GOLD_ITEM_FEATURES, JULY).collect()] == ["c"]
    assert tables.read_as_of(C.GOLD_ITEM_FEATURES, date(2021, 8, 1)).count() == 0


def test_required_and_optional_as_of_name_what_is_missing(spark, tables):
    _two_cutoffs(spark, tables)
    assert required_as_of(tables, C.GOLD_ITEM_FEATURES, JUNE).count() == 2
    with pytest.raises(ShoprecError, match=r"gold\.item_features has no rows for as_of 2021-08-01") as err:
        required_as_of(tables, C.GOLD_ITEM_FEATURES, date(2021, 8, 1))
    assert err.value.hint == "run shoprec features --as-of 2021-08-01 first"
    with pytest.raises(ShoprecError, match=r"gold\.bundles does not exist") as err:
        required_as_of(tables, C.GOLD_BUNDLES, JUNE, writer="bundles")
    assert err.value.hint == "run shoprec bundles --as-of 2021-06-01 first"
    assert optional_as_of(tables, C.GOLD_BUNDLES, JUNE) is None
    assert optional_as_of(tables, C.GOLD_ITEM_FEATURES, date(2021, 8, 1)) is None
    assert optional_as_of(tables, C.GOLD_ITEM_FEATURES, JULY).count() == 1


def test_paths_under_the_data_root(tmp_path):
    root = str(tmp_path)
    assert paths.model_cache(root) == os.path.join(root, "_models")
    assert paths.als_checkpoints(root) == os.path.join(root, "_checkpoints", "als")
    assert paths.hybrid_work("rel", "_hybrid", JUNE) == os.path.join(os.path.abspath("rel"), "_hybrid", "2021-06-01")
    assert paths.staging(root, "xlsx") == os.path.join(root, "_staging", "xlsx")
    assert paths.reports(root, "time") == os.path.join(root, "_reports", "time")
    assert paths.mlflow_db(root) == os.path.join(root, "mlflow.db")
    assert paths.local_path("file:///a/b%20c") == "/a/b c"


def test_stored_als_list_becomes_the_pools_als_source(spark):
    stored = spark.createDataFrame(
        [("u1", "i1", 0.9, 1, "als", JUNE), ("u1", "i2", 0.5, 2, "als", JUNE), ("u1", "i3", 0.1, 3, "als", JUNE)],
        f"{C.USER_ID} string, {C.ITEM_ID} string, {C.SCORE} double, {C.RANK} int, {C.CANDIDATE_SOURCE} string, "
        f"{C.AS_OF} date",
    )
    pool = S.stored_als_candidates(stored, 2)
    assert tuple(pool.columns) == S.POOL_COLUMNS
    assert [tuple(r) for r in pool.orderBy(C.SOURCE_RANK).collect()] == [
        ("u1", "i1", "als", None, 0.9, 1),
        ("u1", "i2", "als", None, 0.5, 2),
    ]
