"""Spark's own Delta backend (delta-spark), for clusters and Databricks.

Used when ``io.delta.tables.DeltaTable`` is on Spark's classpath. Everything runs in
Spark; this module only translates our operations to Delta's API and its errors to ours.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from shoprec.errors import ConcurrentWriteError, SchemaMismatchError, TableError, TableNotFoundError
from shoprec.tables.base import HistoryEntry, MergeResult, WriteResult

log = logging.getLogger(__name__)


class SparkDeltaBackend:
    """``format("delta")`` reads and writes, ``DeltaTable`` merges, history and restore."""

    name = "spark"

    def __init__(self, spark: SparkSession):
        from delta.tables import DeltaTable  # delta-spark's Python API

        self.spark = spark
        self._DeltaTable = DeltaTable

    def _table(self, path: str):
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}", hint="run the job that writes it first")
        return self._DeltaTable.forPath(self.spark, path)

    def exists(self, path: str) -> bool:
        return bool(self._DeltaTable.isDeltaTable(self.spark, path))

    def version(self, path: str) -> int:
        return int(self._table(path).history(1).select("version").first()[0])

    def schema(self, path: str) -> T.StructType:
        return self.read(path).schema

    def partition_columns(self, path: str) -> list[str]:
        self._table(path)
        detail = self.spark.sql(f"DESCRIBE DETAIL delta.`{path}`").select("partitionColumns").first()
        return list(detail[0])

    def read(self, path: str, version: int | None = None) -> DataFrame:
        self._table(path)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)

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

    def overwrite(
        self, df: DataFrame, path: str, partition_by: Sequence[str], overwrite_schema: bool, label: str
    ) -> WriteResult:
        writer = df.write.format("delta").mode("overwrite").option("userMetadata", label)
        if overwrite_schema:
            writer = writer.option("overwriteSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        self._guard(label, lambda: writer.save(path))
        return WriteResult(label, self.version(path), -1)

    def append(self, df: DataFrame, path: str, partition_by: Sequence[str], label: str) -> WriteResult:
        # The facade has already checked the schema; mergeSchema lets asked-for new columns in.
        writer = df.write.format("delta").mode("append").option("mergeSchema", "true").option("userMetadata", label)
        if partition_by and not self.exists(path):
            writer = writer.partitionBy(*partition_by)
        self._guard(label, lambda: writer.save(path))
        return WriteResult(label, self.version(path), -1)

    def replace_partition(self, df: DataFrame, path: str, partition: Mapping[str, Any], label: str) -> WriteResult:
        where = " AND ".join(f"`{c}` = {_sql_literal(v)}" for c, v in partition.items())
        writer = df.write.format("delta").mode("overwrite").option("replaceWhere", where).option("userMetadata", label)
        if not self.exists(path):
            writer = writer.partitionBy(*partition)
        self._guard(label, lambda: writer.save(path))
        return WriteResult(label, self.version(path), -1)

    def merge(
        self, source: DataFrame, path: str, keys: Sequence[str], update_matched: bool, label: str
    ) -> MergeResult:
        if not self.exists(path):
            self.append(source, path, [], label)
            return MergeResult(label, self.version(path), source.count(), 0)
        cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        builder = self._table(path).alias("t").merge(source.alias("s"), cond)
        if update_matched:
            builder = builder.whenMatchedUpdateAll()
        builder = builder.whenNotMatchedInsertAll()
        self.spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", label)
        try:
            self._guard(label, builder.execute)
        finally:
            self.spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        last = self._table(path).history(1).select("version", "operationMetrics").first()
        metrics = dict(last["operationMetrics"] or {})
        return MergeResult(
            label,
            int(last["version"]),
            int(metrics.get("numTargetRowsInserted", 0)),
            int(metrics.get("numTargetRowsUpdated", 0)),
        )

    def restore(self, path: str, version: int, label: str) -> None:
        self._guard(label, lambda: self._table(path).restoreToVersion(version))

    def drop(self, path: str) -> None:
        jvm = self.spark._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        hpath.getFileSystem(self.spark._jsc.hadoopConfiguration()).delete(hpath, True)

    def vacuum(self, path: str, retention_hours: int = 168) -> list[str]:
        self._table(path).vacuum(retention_hours / 1.0)
        return []

    @staticmethod
    def _guard(label: str, action) -> None:
        try:
            action()
        except Exception as exc:  # delta-spark raises JVM exceptions wrapped by py4j/pyspark
            text = str(exc)
            if "Concurrent" in type(exc).__name__ or "ConcurrentModification" in text or "Concurrent" in text[:200]:
                raise ConcurrentWriteError(
                    f"another writer changed {label} while this write was in progress",
                    hint="rerun the job; it is idempotent",
                ) from exc
            if "schema mismatch" in text.lower() or "DELTA_FAILED_TO_MERGE_FIELDS" in text:
                raise SchemaMismatchError(f"schema mismatch writing {label}: {text.splitlines()[0]}") from exc
            raise TableError(f"could not write {label}: {text.splitlines()[0] if text else exc!r}") from exc


def _sql_literal(value: Any) -> str:
    import datetime as _dt

    if value is None:
        return "NULL"
    if isinstance(value, _dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, _dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
