"""Both Delta backends on one table: what one writes, the other reads, appends to and merges.
Plus concurrent writers under Spark's own Delta (no commit is ever lost)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from shoprec.errors import ConcurrentWriteError, TableError
from shoprec.tables import open_tables

SCHEMA = "id int, name string, country string, as_of date, price double"
NOV = dt.date(2011, 11, 1)


def frame(spark, ids, price=1.0, as_of=NOV):
    data = [(i, f"item {i}", ["United Kingdom", "EIRE", None][i % 3], as_of, price * i) for i in ids]
    return spark.createDataFrame(data, SCHEMA)


@pytest.fixture
def both(spark, data_root):
    """The same root opened with each backend."""
    return open_tables(spark, str(data_root), "spark"), open_tables(spark, str(data_root), "local")


@pytest.mark.parametrize("writer_name", ["spark", "local"])
def test_one_backend_writes_the_other_reads_appends_and_merges(spark, both, writer_name):
    spark_t, local_t = both
    writer, other = (spark_t, local_t) if writer_name == "spark" else (local_t, spark_t)
    writer.overwrite(frame(spark, range(30)), "silver.shared", partition_by=["country"])
    assertDataFrameEqual(other.read("silver.shared"), frame(spark, range(30)))

    other.append(frame(spark, range(30, 40)), "silver.shared")
    upsert = frame(spark, range(35, 45), price=-1.0)
    merged = other.merge(upsert, "silver.shared", keys=["id"])
    assert (merged.inserted, merged.updated) == (5, 5)

    expected = frame(spark, range(35)).unionByName(upsert)
    # Back to the first writer, and to delta-rs reading the log on its own.
    assertDataFrameEqual(writer.read("silver.shared"), expected)
    assert DeltaTable(writer.path("silver.shared")).to_pyarrow_table().num_rows == 45
    assert writer.version("silver.shared") == other.version("silver.shared") == 2
    assert writer.partition_columns("silver.shared") == ["country"]
    # Time travel across backends: version 0 is what the first writer wrote.
    assertDataFrameEqual(other.read("silver.shared", version=0), frame(spark, range(30)))


def test_partition_replace_by_one_backend_is_seen_by_the_other(spark, both):
    spark_t, local_t = both
    dec = dt.date(2011, 12, 1)
    local_t.overwrite(
        frame(spark, range(4)).unionByName(frame(spark, range(10, 13), as_of=dec)), "gold.recs", partition_by=["as_of"]
    )
    spark_t.replace_partition(frame(spark, [100, 101]), "gold.recs", {"as_of": NOV})
    got = sorted((r.as_of, r.id) for r in local_t.read("gold.recs").collect())
    assert got == [(NOV, 100), (NOV, 101), (dec, 10), (dec, 11), (dec, 12)]


def test_deletion_vectors_written_by_spark_are_refused_by_delta_rs_not_misread(spark, both):
    """delta-rs 1.6 cannot read deletion vectors: reading the files as they are would bring
    deleted rows back, so the delta-rs backend refuses the table in one clear sentence."""
    from delta.tables import DeltaTable as SparkDeltaTable

    spark_t, local_t = both
    spark_t.overwrite(frame(spark, range(100)).coalesce(1), "silver.dv")
    spark_t.set_properties("silver.dv", {"delta.enableDeletionVectors": "true"})
    SparkDeltaTable.forPath(spark, spark_t.path("silver.dv")).delete("id < 10")
    assert spark_t.read("silver.dv").count() == 90
    assert DeltaTable(spark_t.path("silver.dv")).protocol().reader_features == ["deletionVectors"]
    with pytest.raises(TableError, match=r"reader features the delta-rs backend cannot read \(deletionVectors\)"):
        local_t.read("silver.dv")


def test_concurrent_appends_and_merges_under_spark_delta_lose_no_commit(spark, data_root):
    """Two writers at once on one table: one appends batches of new ids, the other upserts.
    Every call either commits (Delta retries our conflicts) or raises our clear conflict
    error; the rows add up to exactly what the committed calls wrote."""
    tables = open_tables(spark, str(data_root), "spark")
    tables.overwrite(frame(spark, range(50)), "silver.busy")
    done = {"append": 0, "merge": 0, "conflicts": 0}
    errors: list[Exception] = []
    lock = threading.Lock()

    def appender():
        for batch in range(4):
            start = 1000 + 100 * batch
            _count(lambda start=start: tables.append(frame(spark, range(start, start + 20)), "silver.busy"), "append")

    def merger():
        for batch in range(4):
            # 5 existing ids updated, 5 new ids inserted per call
            ids = [*range(batch * 5, batch * 5 + 5), *range(5000 + batch * 5, 5000 + batch * 5 + 5)]
            upsert = frame(spark, ids).withColumn("price", F.lit(-1.0))
            _count(lambda upsert=upsert: tables.merge(upsert, "silver.busy", keys=["id"]), "merge")

    def _count(call, kind):
        try:
            call()
            with lock:
                done[kind] += 1
        except ConcurrentWriteError:
            with lock:
                done["conflicts"] += 1
        except Exception as exc:  # anything else fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=appender), threading.Thread(target=merger)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert done["append"] + done["merge"] + done["conflicts"] == 8
    rows = tables.read("silver.busy")
    assert rows.count() == 50 + 20 * done["append"] + 5 * done["merge"]
    assert rows.select("id").distinct().count() == rows.count()  # nothing written twice
    assert rows.filter(F.col("price") < 0).count() == 10 * done["merge"]
    assert tables.version("silver.busy") == done["append"] + done["merge"]
