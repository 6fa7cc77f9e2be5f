"""Spark's own Delta backend (delta-spark): the default wherever its classes load.

Everything runs in Spark through Delta's native API: ``format("delta")`` writes with
``replaceWhere`` for partition replacement, ``DeltaTable.merge`` for upserts,
``versionAsOf``/``timestampAsOf`` reads, ``restoreToVersion``, ``history``, ``OPTIMIZE``
and ``VACUUM``. This module only translates our operations to that API, reads back what
each commit did from its ``operationMetrics``, and turns Delta's errors into ours.

Delta resolves most concurrent commits itself (blind appends never conflict); the ones it
refuses (a merge whose files another writer changed) are retried here a few times, since
every operation of ours recomputes its commit from its inputs, and reported as
``ConcurrentWriteError`` when they keep conflicting. A commit is never lost: Delta's
optimistic commit either lands whole or not at all.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec.errors import ConcurrentWriteError, SchemaMismatchError, TableError, TableNotFoundError
from shoprec.tables.base import HistoryEntry, MergeResult, Txn, WriteResult

if TYPE_CHECKING:
    from delta.tables import DeltaTable

log = logging.getLogger(__name__)

_R = TypeVar("_R")
# Delta's optimistic-concurrency exceptions (io.delta.exceptions.*): the commit did not land.
_CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "ConcurrentWriteException",
    "DELTA_CONCURRENT_",
)
_ATTEMPTS = 6
_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
# Idempotent DML (MERGE): the session's txn, recorded in the MERGE's commit (Delta >= 2.3).
_TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"
_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_DEFAULT_RETENTION_HOURS = 168


class SparkDeltaBackend:
    """``format("delta")`` reads and writes, ``DeltaTable`` merges, history and restore."""

    name = "spark"

    def __init__(self, spark: SparkSession):
        from delta.tables import DeltaTable  # delta-spark's Python API

        self.spark = spark
        self._DeltaTable = DeltaTable

    # ------------------------------------------------------------------ reading
    def _table(self, path: str) -> DeltaTable:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}", hint="run the job that writes it first")
        return self._DeltaTable.forPath(self.spark, path)

    def exists(self, path: str) -> bool:
        return bool(self._DeltaTable.isDeltaTable(self.spark, path))

    def version(self, path: str) -> int:
        snapshot = self._snapshot(path)
        return int(snapshot.version()) if snapshot is not None else int(self._history_head(path)["version"])

    def schema(self, path: str) -> T.StructType:
        return self._table(path).toDF().schema

    def partition_columns(self, path: str) -> list[str]:
        snapshot = self._snapshot(path)
        if snapshot is None:
            return list(self._detail(path)["partitionColumns"])
        joined = str(snapshot.metadata().partitionColumns().mkString("\x00"))
        return joined.split("\x00") if joined else []

    def properties(self, path: str) -> dict[str, str]:
        return dict(self._detail(path)["properties"] or {})

    def file_count(self, path: str) -> int:
        return int(self._detail(path)["numFiles"])

    def txn_version(self, path: str, app_id: str) -> int | None:
        """The version the table's log holds for ``app_id`` (its latest SetTransaction)."""
        snapshot = self._snapshot(path)
        if snapshot is None:
            raise TableError(f"cannot read the application transactions of {path}: Delta's snapshot API is missing")
        found = snapshot.transactions().get(app_id)  # a Scala Option[Long]
        return int(found.get()) if found.isDefined() else None

    def read(self, path: str, version: int | None = None, timestamp: _dt.datetime | None = None) -> DataFrame:
        self._table(path)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        if timestamp is not None:
            reader = reader.option("timestampAsOf", timestamp.isoformat(sep=" "))
        try:
            return reader.load(path)
        except Exception as exc:  # the snapshot is resolved here, so a missing version fails now
            what = f"version {version}" if version is not None else f"the state at {timestamp}"
            raise TableError(f"cannot read {what} of the table at {path}: {_first_line(exc)}") from exc

    def read_changes(self, path: str, start_version: int, end_version: int | None = None) -> DataFrame:
        """Change Data Feed rows (``_change_type``, ``_commit_version``) from ``start_version``."""
        self._table(path)
        reader = self.spark.read.format("delta").option("readChangeFeed", "true")
        reader = reader.option("startingVersion", start_version)
        if end_version is not None:
            reader = reader.option("endingVersion", end_version)
        try:
            return reader.load(path)
        except Exception as exc:
            raise TableError(f"cannot read the change feed of {path}: {_first_line(exc)}") from exc

    def history(self, path: str, limit: int | None = None) -> list[HistoryEntry]:
        hist = self._table(path).history(limit) if limit else self._table(path).history()
        cols = ("version", "timestamp", "operation", "operationParameters", "userMetadata")
        rows = hist.select(*cols).collect()  # small: one row per commit
        entries = []
        for r in rows:
            params = dict(r["operationParameters"] or {})
            if r["userMetadata"]:
                params["shoprec.operation"] = r["userMetadata"]
            ts = int(r["timestamp"].timestamp() * 1000) if r["timestamp"] else None
            entries.append(HistoryEntry(int(r["version"]), ts, str(r["operation"]), params))
        return entries

    # ------------------------------------------------------------------ writing
    def overwrite(
        self,
        df: DataFrame,
        path: str,
        partition_by: Sequence[str],
        overwrite_schema: bool,
        label: str,
        txn: Txn | None = None,
    ) -> WriteResult:
        def write() -> None:
            writer = _with_txn(df.write.format("delta").mode("overwrite").option("userMetadata", label), txn)
            if overwrite_schema or (self.exists(path) and self.partition_columns(path) != list(partition_by)):
                # New schema or partitioning: replace the table's metadata in the same commit.
                writer = writer.option("overwriteSchema", "true")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            writer.save(path)

        self._retrying(label, write)
        return self._write_result(path, label)

    def append(
        self, df: DataFrame, path: str, partition_by: Sequence[str], label: str, txn: Txn | None = None
    ) -> WriteResult:
        def write() -> None:
            # The facade has checked the schema; mergeSchema lets asked-for new columns in.
            writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
            writer = _with_txn(writer.option("userMetadata", label), txn)
            if partition_by and not self.exists(path):
                writer = writer.partitionBy(*partition_by)
            writer.save(path)

        self._retrying(label, write)
        return self._write_result(path, label)

    def replace_partition(
        self, df: DataFrame, path: str, partition: Mapping[str, Any], label: str, txn: Txn | None = None
    ) -> WriteResult:
        where = " AND ".join(
            f"`{c}` IS NULL" if v is None else f"`{c}` = {_sql_literal(v)}" for c, v in partition.items()
        )

        def write() -> None:
            writer = df.write.format("delta").mode("overwrite").option("replaceWhere", where)
            writer = _with_txn(writer.option("userMetadata", label), txn)
            if not self.exists(path):
                writer = writer.partitionBy(*partition)
            writer.save(path)

        self._retrying(label, write)
        return self._write_result(path, label)

    def merge(
        self,
        source: DataFrame,
        path: str,
        keys: Sequence[str],
        update_matched: bool,
        label: str,
        txn: Txn | None = None,
    ) -> MergeResult:
        if not self.exists(path):
            result = self.append(source, path, [], label, txn)
            return MergeResult(label, result.version, result.rows_written or 0, 0)
        cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        before = self.version(path)

        def write() -> None:
            builder = self._table(path).alias("t").merge(source.alias("s"), cond)
            if update_matched:
                builder = builder.whenMatchedUpdateAll()
            builder.whenNotMatchedInsertAll().execute()

        committed = self._merge_commit(path, label, txn, before, write)
        if committed is None:
            return MergeResult(label, None, 0, 0)
        version, metrics = committed
        inserted = int(metrics.get("numTargetRowsInserted", 0))
        updated = int(metrics.get("numTargetRowsUpdated", 0))
        if inserted == 0 and updated == 0 and not update_matched:
            # Delta commits an insert-only merge that matched everything as an empty MERGE;
            # to callers (and to the other backend) nothing happened.
            return MergeResult(label, None, 0, 0)
        return MergeResult(label, version, inserted, updated)

    def _merge_commit(
        self, path: str, label: str, txn: Txn | None, before: int, write: Callable[[], None]
    ) -> tuple[int, dict] | None:
        """Run a MERGE (``write``) labelled and Txn-keyed; (its version, operation metrics), or
        None when it committed nothing (the Txn was applied before, or nothing matched)."""
        confs = {_USER_METADATA: label}
        if txn is not None:
            confs.update({_TXN_APP_ID: txn.app_id, _TXN_VERSION: str(txn.version)})
        with _session_conf(self.spark, confs):
            self._retrying(label, write)
        last = self._last_commit(path)
        if int(last["version"]) == before:
            return None
        return int(last["version"]), dict(last["operationMetrics"] or {})

    def replace_keys(
        self, df: DataFrame, path: str, key: str, values: DataFrame, label: str, txn: Txn | None = None
    ) -> MergeResult:
        if not self.exists(path):
            result = self.append(df, path, [], label, txn)
            return MergeResult(label, result.version, result.rows_written or 0, 0)
        # One MERGE: a marker row per key deletes that key's rows (each target row matches one
        # marker); the new rows carry no marker, match nothing and are inserted.
        marker = "__shoprec_replace_key"
        rows = df.withColumn(marker, F.lit(None).cast(df.schema[key].dataType))
        markers = values.select(F.col(key).alias(marker))
        for field in df.schema.fields:
            markers = markers.withColumn(field.name, F.lit(None).cast(field.dataType))
        source = rows.unionByName(markers.select(*rows.columns))
        before = self.version(path)

        def write() -> None:
            (
                self._table(path)
                .alias("t")
                .merge(source.alias("s"), f"t.`{key}` = s.`{marker}`")
                .whenMatchedDelete()
                .whenNotMatchedInsert(
                    condition=f"s.`{marker}` IS NULL", values={f"`{c}`": f"s.`{c}`" for c in df.columns}
                )
                .execute()
            )

        committed = self._merge_commit(path, label, txn, before, write)
        if committed is None:
            return MergeResult(label, None, 0, 0)
        version, metrics = committed
        return MergeResult(
            label,
            version,
            int(metrics.get("numTargetRowsInserted", 0)),
            int(metrics.get("numTargetRowsDeleted", 0)),
        )

    def restore(self, path: str, version: int, label: str) -> None:
        self._retrying(label, lambda: self._table(path).restoreToVersion(version))

    def drop(self, path: str) -> None:
        jvm = self.spark._jvm
        assert jvm is not None  # Spark's own Delta runs in a classic session
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        hpath.getFileSystem(self.spark._jsc.hadoopConfiguration()).delete(hpath, True)

    # ------------------------------------------------------------------ maintenance
    def vacuum(self, path: str, retention_hours: int = _DEFAULT_RETENTION_HOURS) -> int:
        """Delete files no snapshot within ``retention_hours`` needs; return how many went."""
        self._table(path)
        sql = f"VACUUM delta.`{path}` RETAIN {float(retention_hours)} HOURS"
        # Delta refuses a retention below its safety default unless told; our callers
        # (maintain's configured retention, tests) decide that themselves.
        check = "true" if retention_hours >= _DEFAULT_RETENTION_HOURS else "false"
        with _session_conf(self.spark, {_RETENTION_CHECK: check}):
            self._retrying(f"vacuum of {path}", lambda: self.spark.sql(sql).collect())  # small: one row
        # Delta logs the vacuum as VACUUM START/END commits; END counts the deleted files.
        last = self._last_commit(path)
        if last["operation"] != "VACUUM END":
            return 0
        return int(dict(last["operationMetrics"] or {}).get("numDeletedFiles", 0))

    def optimize(self, path: str, zorder_by: Sequence[str] = ()) -> dict[str, int]:
        """Compact small files (and cluster them by ``zorder_by``); metrics of the commit."""
        table = self._table(path)
        builder = table.optimize()
        action = (lambda: builder.executeZOrderBy(*zorder_by)) if zorder_by else builder.executeCompaction
        rows = self._retrying(f"optimize of {path}", lambda: action().collect())  # small: one row
        metrics = rows[0]["metrics"].asDict() if rows and rows[0]["metrics"] else {}
        return {
            "files_added": int(metrics.get("numFilesAdded", 0)),
            "files_removed": int(metrics.get("numFilesRemoved", 0)),
        }

    def set_properties(self, path: str, properties: Mapping[str, str]) -> None:
        """Table properties (log retention, checkpoint interval, change data feed ...)."""
        self._table(path)
        if not properties:
            return
        assignments = ", ".join(f"'{k}' = '{v}'" for k, v in properties.items())
        sql = f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})"
        self._retrying(f"properties of {path}", lambda: self.spark.sql(sql).collect())  # small: ALTER returns no rows

    # ------------------------------------------------------------------ internals
    def _detail(self, path: str) -> Row:
        self._table(path)
        row = self.spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()  # small: one row
        assert row is not None  # DESCRIBE DETAIL of a table is one row
        return row

    def _snapshot(self, path: str) -> Any:  # py4j JavaObject (Delta's Snapshot), or None
        """The table's latest snapshot (JVM object), refreshed from its log; None where
        this Delta release does not expose it (callers then use DESCRIBE DETAIL / history).

        Version, partition columns and the last commit's metrics are in the log itself:
        reading them here costs a log listing, where ``history``/``DESCRIBE DETAIL`` each
        run Spark jobs (0.3-1 s apiece on a tiny table, several per write).
        """
        table = self._table(path)._jdt  # forPath refreshes the snapshot from the log
        try:
            return table.deltaLog().unsafeVolatileSnapshot()
        except Exception:  # Py4JError: an internal API changed; fall back to the public one
            return None

    def _last_commit(self, path: str) -> dict[str, Any]:
        """``version``, ``operation`` and ``operationMetrics`` of the latest commit."""
        snapshot = self._snapshot(path)
        info = self._commit_info(path, int(snapshot.version())) if snapshot is not None else None
        if info is None:
            row = self._history_head(path)
            return {
                "version": int(row["version"]),
                "operation": row["operation"],
                "operationMetrics": dict(row["operationMetrics"] or {}),
            }
        return {
            "version": int(snapshot.version()),
            "operation": info.get("operation"),
            "operationMetrics": {k: str(v) for k, v in (info.get("operationMetrics") or {}).items()},
        }

    def _commit_info(self, path: str, version: int) -> dict[str, Any] | None:
        """The ``commitInfo`` action of one commit file, read through Hadoop's file system."""
        jvm = self.spark._jvm
        try:
            assert jvm is not None  # a classic session (the except covers the others)
            log_file = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log/{version:020d}.json")
            fs = log_file.getFileSystem(self.spark._jsc.hadoopConfiguration())
            stream = fs.open(log_file)
            try:
                text = str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
            finally:
                stream.close()
        except Exception:  # the commit file went (log cleanup) or the API is missing
            return None
        for line in text.splitlines():
            if '"commitInfo"' in line:
                return json.loads(line)["commitInfo"]
        return None

    def _history_head(self, path: str) -> Row:
        cols = ("version", "operation", "operationMetrics")
        row = self._table(path).history(1).select(*cols).first()  # small: one row
        assert row is not None  # a table has at least its creating commit
        return row

    def _write_result(self, path: str, label: str) -> WriteResult:
        last = self._last_commit(path)
        metrics: dict[str, Any] = dict(last["operationMetrics"] or {})
        return WriteResult(
            label,
            int(last["version"]),
            int(metrics.get("numFiles", metrics.get("numAddedFiles", 0))),
            int(metrics.get("numRemovedFiles", 0)),
            int(metrics["numOutputRows"]) if "numOutputRows" in metrics else None,
        )

    @staticmethod
    def _retrying(label: str, action: Callable[[], _R]) -> _R:
        """Run one commit; retry Delta's concurrent-commit refusals, translate other errors."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return action()
            except Exception as exc:  # delta-spark raises JVM exceptions wrapped by py4j/pyspark
                if isinstance(exc, TableError):
                    raise
                if _is_conflict(exc):
                    if attempt < _ATTEMPTS:
                        pause = 0.05 * 2**attempt * (0.5 + random.random())
                        log.info("%s: concurrent commit (%s), retry %d in %.2f s", label, _kind(exc), attempt, pause)
                        time.sleep(pause)
                        continue
                    raise ConcurrentWriteError(
                        f"another writer kept changing {label} while this write was in progress "
                        f"({_ATTEMPTS} attempts, last: {_kind(exc)})",
                        hint="rerun the job; it is idempotent",
                    ) from exc
                if not _from_delta(exc):
                    raise  # the data failed to compute (a UDF, a bad cast): the caller's error
                raise _translate(label, exc) from exc
        raise AssertionError("unreachable")


def _with_txn(writer: Any, txn: Txn | None) -> Any:
    """A DataFrameWriter that records ``txn`` in its commit (Delta's idempotent writes)."""
    if txn is None:
        return writer
    return writer.option("txnAppId", txn.app_id).option("txnVersion", str(txn.version))


@contextlib.contextmanager
def _session_conf(spark: SparkSession, values: Mapping[str, str]) -> Iterator[None]:
    """Set session confs for one operation, then put the old values back."""
    saved = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def _is_conflict(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {str(exc)[:400]}"
    return any(name in text for name in _CONFLICTS)


def _from_delta(exc: Exception) -> bool:
    """True for Delta's own refusals (error classes DELTA_*, io.delta exceptions)."""
    head = str(exc)[:2000]
    return "DELTA_" in head or "io.delta" in head or "org.apache.spark.sql.delta" in head


def _kind(exc: Exception) -> str:
    text = str(exc)
    for name in _CONFLICTS:
        if name in text:
            return name.rstrip("_")
    return type(exc).__name__


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def _translate(label: str, exc: Exception) -> TableError:
    text = str(exc)
    if "schema mismatch" in text.lower() or "DELTA_FAILED_TO_MERGE_FIELDS" in text:
        return SchemaMismatchError(f"schema mismatch writing {label}: {_first_line(exc)}")
    return TableError(f"could not write {label}: {_first_line(exc)}")


def _sql_literal(value: Any) -> str:
    if isinstance(value, _dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, _dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
