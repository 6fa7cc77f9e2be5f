"""The Delta table layer's contract, run on both backends for real: Spark's own Delta
(delta-spark JARs) and the delta-rs fallback (delta-rs log + Spark Parquet I/O).
Same calls, same results, same errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from shoprec.errors import SchemaMismatchError, TableError

BACKENDS = ["spark", "local"]


@pytest.fixture(params=BACKENDS)
def tables(request, spark, data_root):
    """A ``Tables`` on each backend in turn (overrides conftest's delta-rs one here)."""
    from shoprec.tables import open_tables

    return open_tables(spark, str(data_root), request.param)


@pytest.fixture
def local_tables(spark, data_root):
    from shoprec.tables import open_tables

    return open_tables(spark, str(data_root), "local")


SCHEMA = "id int, name string, country string, as_of date, ts timestamp, price double"


def rows(n0: int, n1: int, as_of=dt.date(2011, 11, 1)):
    return [
        (
            i,
            f"item {i}",
            ["United Kingdom", "EIRE", None, "Côte d'Ivoire/x"][i % 4],
            as_of,
            dt.datetime(2011, 1, 1, 10, tzinfo=dt.UTC) + dt.timedelta(hours=i),
            i * 1.5,
        )
        for i in range(n0, n1)
    ]


def to_pandas_sorted(df_or_table, key="id"):
    pdf = df_or_table.toPandas() if hasattr(df_or_table, "toPandas") else df_or_table.to_pandas()
    return pdf.sort_values(key).reset_index(drop=True)


def test_written_table_is_valid_delta_and_matches_spark(spark, tables):
    df = spark.createDataFrame(rows(0, 40), SCHEMA)
    result = tables.overwrite(df, "silver.things", partition_by=["country"])
    assert result.version == 0 and result.rows_written == 40

    path = tables.path("silver.things")
    dt_table = DeltaTable(path)
    assert dt_table.metadata().partition_columns == ["country"]
    from_rust = pa.table(dt_table.to_pyarrow_table())
    from_spark = tables.read("silver.things")
    assert from_rust.num_rows == 40
    # Whole-table comparison: same rows, same values, whoever reads.
    left = to_pandas_sorted(from_spark)
    right = to_pandas_sorted(from_rust)[left.columns]
    right["ts"] = right["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    left["ts"] = left["ts"].dt.tz_localize(None) if getattr(left["ts"].dt, "tz", None) else left["ts"]
    assert left.astype(str).equals(right.astype(str))
    assertDataFrameEqual(from_spark, df)


def test_time_travel_returns_old_versions(spark, tables):
    tables.overwrite(spark.createDataFrame(rows(0, 5), SCHEMA), "silver.tt")
    tables.append(spark.createDataFrame(rows(5, 8), SCHEMA), "silver.tt")
    tables.overwrite(spark.createDataFrame(rows(100, 101), SCHEMA), "silver.tt")
    assert tables.version("silver.tt") == 2
    assert sorted(r.id for r in tables.read("silver.tt", version=0).collect()) == list(range(5))
    assert sorted(r.id for r in tables.read("silver.tt", version=1).collect()) == list(range(8))
    assert [r.id for r in tables.read("silver.tt").collect()] == [100]
    history = tables.history("silver.tt")
    assert [h.version for h in history] == [2, 1, 0]
    # Each backend names its operations as Delta's log does; our label is on every commit.
    assert [h.parameters.get("shoprec.operation") for h in history] == ["silver.tt"] * 3
    with pytest.raises(TableError, match="version 7"):
        tables.read("silver.tt", version=7)


def test_write_failing_midway_leaves_table_as_it_was(spark, tables):
    tables.overwrite(spark.createDataFrame(rows(0, 10), SCHEMA), "silver.crash")
    before = tables.read("silver.crash").collect()

    @F.udf("int")
    def explode_on_77(i):
        if i == 77:
            raise ValueError("boom")
        return i

    bad = spark.createDataFrame(rows(0, 100), SCHEMA).repartition(4).withColumn("id", explode_on_77("id"))
    with pytest.raises(Exception, match="boom"):
        tables.overwrite(bad, "silver.crash")
    assert tables.version("silver.crash") == 0
    assertDataFrameEqual(tables.read("silver.crash"), before)
    assert pa.table(DeltaTable(tables.path("silver.crash")).to_pyarrow_table()).num_rows == 10


def test_crash_between_files_and_commit_reads_no_uncommitted_files(spark, local_tables, monkeypatch):
    # delta-rs backend only: its commit is our own step after Spark wrote the files. Spark's
    # Delta writes and commits inside one JVM call (the failing-write test covers it).
    tables = local_tables
    tables.overwrite(spark.createDataFrame(rows(0, 10), SCHEMA), "silver.orphans")
    path = tables.path("silver.orphans")

    def crash(*args, **kwargs):
        raise RuntimeError("process died before commit")

    # Failure injection in our own commit step (Spark and delta-rs stay real): the data
    # files are already in the table folder when the commit would have happened.
    monkeypatch.setattr(tables.backend, "_commit", crash)
    with pytest.raises(RuntimeError):
        tables.append(spark.createDataFrame(rows(10, 30), SCHEMA), "silver.orphans")
    monkeypatch.undo()
    on_disk = [f for _, _, fs in os.walk(path) for f in fs if f.endswith(".parquet")]
    committed = DeltaTable(path).file_uris()
    assert len(on_disk) > len(committed)  # the orphans are there...
    assert tables.read("silver.orphans").count() == 10  # ...and nobody reads them
    assert pa.table(DeltaTable(path).to_pyarrow_table()).num_rows == 10
    removed = tables.vacuum("silver.orphans", retention_hours=0)
    assert removed == len(on_disk) - len(committed)


def test_two_concurrent_appenders_both_land(spark, tables):
    tables.overwrite(spark.createDataFrame(rows(0, 1), SCHEMA), "silver.race")
    errors = []

    def writer(start):
        try:
            tables.append(spark.createDataFrame(rows(start, start + 50), SCHEMA), "silver.race")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (1000, 2000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = sorted(r.id for r in tables.read("silver.race").collect())
    assert ids == [0, *range(1000, 1050), *range(2000, 2050)]
    assert tables.version("silver.race") == 2


def test_two_concurrent_merges_do_not_lose_updates(spark, tables):
    tables.overwrite(spark.createDataFrame(rows(0, 20), SCHEMA), "silver.upserts")
    errors = []

    def upsert(ids, price):
        try:
            src = (
                spark.createDataFrame(rows(0, 30), SCHEMA)
                .filter(F.col("id").isin(ids))
                .withColumn("price", F.lit(price))
            )
            tables.merge(src, "silver.upserts", keys=["id"])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upsert, args=(ids, p)) for ids, p in (([1, 2, 25], -1.0), ([3, 4, 26], -2.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = {r.id: r.price for r in tables.read("silver.upserts").collect()}
    assert len(got) == 22
    assert [got[i] for i in (1, 2, 25, 3, 4, 26)] == [-1.0, -1.0, -1.0, -2.0, -2.0, -2.0]
    assert got[5] == 7.5


def test_append_with_other_schema_is_rejected_unless_asked(spark, tables):
    tables.overwrite(spark.createDataFrame(rows(0, 3), SCHEMA), "silver.schemas")
    wrong_type = spark.createDataFrame(rows(3, 4), SCHEMA).withColumn("price", F.col("price").cast("string"))
    with pytest.raises(SchemaMismatchError, match="column 'price' is double in the table but string in the data"):
        tables.append(wrong_type, "silver.schemas")
    extra = spark.createDataFrame(rows(3, 4), SCHEMA).withColumn("colour", F.lit("red"))
    with pytest.raises(SchemaMismatchError, match="columns not in the table: colour"):
        tables.append(extra, "silver.schemas")
    missing = spark.createDataFrame(rows(3, 4), SCHEMA).drop("name")
    with pytest.raises(SchemaMismatchError, match="missing from the data: name"):
        tables.append(missing, "silver.schemas")
    assert tables.version("silver.schemas") == 0

    tables.append(extra, "silver.schemas", merge_schema=True)
    evolved = tables.read("silver.schemas")
    assert evolved.columns[-1] == "colour"
    assert {r.id: r.colour for r in evolved.collect()} == {0: None, 1: None, 2: None, 3: "red"}


def test_column_order_of_the_data_does_not_matter(spark, tables):
    df = spark.createDataFrame(rows(0, 3), SCHEMA)
    tables.overwrite(df, "silver.order")
    tables.append(df.select(*reversed(df.columns)).withColumn("id", F.col("id") + 10), "silver.order")
    assert sorted(r.id for r in tables.read("silver.order").collect()) == [0, 1, 2, 10, 11, 12]


def test_replace_partition_replaces_only_that_partition(spark, tables):
    nov, dec = dt.date(2011, 11, 1), dt.date(2011, 12, 1)
    tables.overwrite(
        spark.createDataFrame(rows(0, 4, nov) + rows(10, 13, dec), SCHEMA), "gold.recs", partition_by=["as_of"]
    )
    new_nov = spark.createDataFrame(rows(100, 102, nov), SCHEMA)
    result = tables.replace_partition(new_nov, "gold.recs", {"as_of": nov})
    assert result.files_removed >= 1
    got = sorted((r.as_of, r.id) for r in tables.read("gold.recs").collect())
    assert got == [(nov, 100), (nov, 101), (dec, 10), (dec, 11), (dec, 12)]
    # Rerunning the same partition replace is idempotent.
    tables.replace_partition(new_nov, "gold.recs", {"as_of": nov})
    assert tables.read("gold.recs").count() == 5
    with pytest.raises(TableError, match="include rows of other partitions"):
        tables.replace_partition(spark.createDataFrame(rows(0, 1, dec), SCHEMA), "gold.recs", {"as_of": nov})
    with pytest.raises(TableError, match="partitioned by as_of"):
        tables.replace_partition(new_nov, "gold.recs", {"country": "EIRE"})


def test_merge_updates_and_inserts(spark, tables):
    tables.overwrite(spark.createDataFrame(rows(0, 6), SCHEMA), "silver.m", partition_by=["country"])
    source = spark.createDataFrame(rows(4, 9), SCHEMA).withColumn("name", F.concat(F.lit("new "), "name"))
    result = tables.merge(source, "silver.m", keys=["id"])
    assert (result.inserted, result.updated) == (3, 2)
    expected = spark.createDataFrame(rows(0, 4), SCHEMA).unionByName(source)
    assertDataFrameEqual(tables.read("silver.m"), expected)

    again = tables.merge(source, "silver.m", keys=["id"], update_matched=False)
    assert (again.inserted, again.updated, again.version) == (0, 0, None)
    assertDataFrameEqual(tables.read("silver.m"), expected)


def test_merge_rejects_duplicate_source_keys(spark, tables):
    tables.overwrite(spark.createDataFrame(rows(0, 3), SCHEMA), "silver.d")
    dupes = spark.createDataFrame(rows(1, 2) + rows(1, 2), SCHEMA)
    with pytest.raises(TableError, match=r"holds key \{'id': 1\} more than once"):
        tables.merge(dupes, "silver.d", keys=["id"])


def test_all_or_nothing_rolls_every_table_back(spark, tables):
    tables.overwrite(spark.createDataFrame(rows(0, 3), SCHEMA), "silver.a")
    with pytest.raises(RuntimeError, match="stage failed"), tables.all_or_nothing(["silver.a", "silver.b"]):
        tables.append(spark.createDataFrame(rows(3, 5), SCHEMA), "silver.a")
        tables.overwrite(spark.createDataFrame(rows(0, 1), SCHEMA), "silver.b")
        raise RuntimeError("stage failed")
    assert sorted(r.id for r in tables.read("silver.a").collect()) == [0, 1, 2]
    assert not tables.exists("silver.b")


def test_table_names_are_checked(spark, tables):
    with pytest.raises(TableError, match="layer"):
        tables.overwrite(spark.createDataFrame(rows(0, 1), SCHEMA), "NoLayer")


def test_empty_write_creates_an_empty_table_with_schema(spark, tables):
    empty = spark.createDataFrame([], T.StructType.fromDDL(SCHEMA))
    tables.overwrite(empty, "silver.empty")
    got = tables.read("silver.empty")
    assert got.count() == 0
    assert got.schema.fieldNames() == empty.schema.fieldNames()


@pytest.mark.parametrize("backend", BACKENDS)
def test_partition_values_come_from_the_log_whoever_wrote_the_files(spark, tmp_path, backend):
    """Our own files (URI-safe folders) under a root with a space and a plus, and a table
    written by delta-rs itself, read with the partition values of the log."""
    from deltalake import write_deltalake

    from shoprec.tables import open_tables

    odd = open_tables(spark, str(tmp_path / "lake house+1"), backend)
    df = spark.createDataFrame(rows(0, 12), SCHEMA)
    odd.overwrite(df, "silver.things", partition_by=["country", "as_of"])
    assertDataFrameEqual(odd.read("silver.things"), df)

    # delta-rs escapes folder names ("Isle%20of%20Man") and logs them encoded once more.
    table = pa.table({"id": pa.array([1, 2, 3, 4], pa.int32()), "country": ["UK", "EIRE", "EIRE", "Isle of Man 50%"]})
    write_deltalake(odd.path("bronze.rust"), table, partition_by=["country"])
    got = sorted((r.id, r.country) for r in odd.read("bronze.rust").collect())
    assert got == [(1, "UK"), (2, "EIRE"), (3, "EIRE"), (4, "Isle of Man 50%")]


def _write_sequence(spark, tables, name: str) -> list:
    """Every kind of write the Spark backend reads its own log after, and what it answered."""
    nov, dec = dt.date(2011, 11, 1), dt.date(2011, 12, 1)
    answers: list = [tables.overwrite(spark.createDataFrame(rows(0, 6, nov), SCHEMA), name, partition_by=["as_of"])]
    answers.append(tables.append(spark.createDataFrame(rows(6, 9, dec), SCHEMA), name))
    answers.append(tables.replace_partition(spark.createDataFrame(rows(20, 22, nov), SCHEMA), name, {"as_of": nov}))
    source = spark.createDataFrame(rows(21, 25, nov), SCHEMA)
    answers.append(tables.merge(source, name, keys=["id"]))
    answers.append(tables.merge(source, name, keys=["id"], update_matched=False))  # matches all: no change
    answers += [tables.version(name), tables.partition_columns(name)]
    return [dataclasses.astuple(a)[1:] if dataclasses.is_dataclass(a) else a for a in answers]  # minus the name


def test_spark_delta_answers_the_same_without_its_internal_snapshot(spark, data_root, monkeypatch):
    """Version, partition columns and commit metrics come from Delta's internal snapshot when
    the JVM exposes it; a Delta release without it falls back to history / DESCRIBE DETAIL."""
    from shoprec.tables import open_tables
    from shoprec.tables.spark_delta import SparkDeltaBackend

    tables = open_tables(spark, str(data_root), "spark")
    with_snapshot = _write_sequence(spark, tables, "silver.snap")
    monkeypatch.setattr(SparkDeltaBackend, "_snapshot", lambda self, path: None)
    without = _write_sequence(spark, tables, "silver.nosnap")
    assert without == with_snapshot
    # inserted 23-24, updated 21, not skipped; then a merge that changes nothing
    assert with_snapshot[3][1:] == (3, 1, False) and with_snapshot[4] == (None, 0, 0, False)
    assert with_snapshot[-1] == ["as_of"] and with_snapshot[-2] >= with_snapshot[3][0] == 3


def test_a_write_carrying_an_applied_txn_is_skipped_and_the_txn_survives_restore(spark, tables):
    """Application transactions (exactly-once commits): every kind of write records its Txn in
    its own commit (creating the table or not), a repeat is skipped without a commit, and a
    later attempt (a higher version of the same app) is applied again, even after a restore."""
    from shoprec.tables import Txn

    first, again = Txn("shoprec.test.batch-1", 1), Txn("shoprec.test.batch-1", 2)
    df = spark.createDataFrame(rows(0, 4), SCHEMA)
    more = spark.createDataFrame(rows(2, 6), SCHEMA)
    at = {"as_of": dt.date(2011, 11, 1)}
    tables.overwrite(df, "silver.m")
    writes = {
        "silver.o": lambda t: tables.overwrite(df, "silver.o", txn=t),  # creates the table
        "gold.p": lambda t: tables.replace_partition(df, "gold.p", at, txn=t),  # creates it
        "silver.m": lambda t: tables.merge(more, "silver.m", keys=["id"], update_matched=False, txn=t),
    }
    for name, write in writes.items():
        assert not write(first).skipped, name
    assert {n: tables.txn_version(n, first.app_id) for n in writes} == dict.fromkeys(writes, 1)
    versions = tables.versions(list(writes))
    assert all(write(first).skipped for write in writes.values())  # the same attempt again
    assert tables.versions(list(writes)) == versions  # no commit
    assert tables.read("silver.m").count() == 6 and tables.txn_version("silver.m", "other.app") is None
    # A rollback restores the data, not the txn; the next attempt (version 2) writes again.
    append = tables.append(more, "silver.m", txn=first)
    assert append.skipped and tables.applied("silver.m", first) and not tables.applied("silver.m", again)
    tables.restore("silver.m", 0)
    assert not tables.append(more, "silver.m", txn=again).skipped
    assert tables.read("silver.m").count() == 8 and tables.txn_version("silver.m", first.app_id) == 2
