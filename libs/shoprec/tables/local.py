"""Local Delta backend: delta-rs owns the transaction log, Spark does the Parquet I/O.

Write path: Spark writes Parquet files in parallel into a private staging folder inside
the table (``_staging/<uuid>``), the driver moves them into the table's partition folders
and commits them in one Delta transaction. Files that never got committed are invisible
to every reader (readers only see the files the log lists) and ``vacuum`` deletes them.

Read path: the files of the requested snapshot, read by Spark in parallel with the
table's schema, partition columns restored from the ``col=value`` folders.

Writers on one machine take a per-table file lock around read-modify-commit so two
merges cannot lose each other's rows; delta-rs's own conflict check stays in place
for anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake import Schema as DeltaSchema
from deltalake import exceptions as dl_exc
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from shoprec.errors import ConcurrentWriteError, SchemaMismatchError, TableError, TableNotFoundError
from shoprec.paths import local_path
from shoprec.tables.base import HistoryEntry, MergeResult, Txn, WriteResult, nullable

log = logging.getLogger(__name__)

STAGING_DIR = "_staging"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_FILE_COL = "__shoprec_file"


class LocalDeltaBackend:
    """delta-rs transaction log + Spark Parquet I/O (no collecting tables to the driver)."""

    name = "local"

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self._local = threading.local()

    def _held_locks(self) -> set[str]:
        if not hasattr(self._local, "held"):
            self._local.held = set()
        return self._local.held

    # ------------------------------------------------------------------ reading
    def exists(self, path: str) -> bool:
        return DeltaTable.is_deltatable(path)

    def version(self, path: str) -> int:
        return self._table(path).version()

    def schema(self, path: str) -> T.StructType:
        return _spark_schema(self._table(path))

    def partition_columns(self, path: str) -> list[str]:
        return list(self._table(path).metadata().partition_columns)

    def read(self, path: str, version: int | None = None, timestamp: datetime | None = None) -> DataFrame:
        if timestamp is None:
            return self._read_snapshot(path, self._table(path, version))
        dt = self._table(path)
        try:
            dt.load_as_version(timestamp)
        except dl_exc.DeltaError as exc:
            raise TableError(f"cannot read the state at {timestamp} of the table at {path}: {exc}") from exc
        return self._read_snapshot(path, dt)

    def read_changes(self, path: str, start_version: int, end_version: int | None = None) -> DataFrame:
        """Change Data Feed rows from ``start_version`` (delta-rs reads them; Spark gets Arrow)."""
        dt = self._table(path)
        try:
            reader = dt.load_cdf(starting_version=start_version, ending_version=end_version)
            changes = pa.table(pa.RecordBatchReader.from_stream(reader))
        except dl_exc.DeltaError as exc:
            raise TableError(f"cannot read the change feed of {path}: {exc}") from exc
        return self.spark.createDataFrame(changes)

    def properties(self, path: str) -> dict[str, str]:
        return dict(self._table(path).metadata().configuration or {})

    def file_count(self, path: str) -> int:
        return len(self._table(path).file_uris())

    def txn_version(self, path: str, app_id: str) -> int | None:
        version = self._table(path).transaction_version(app_id)
        return int(version) if version is not None else None

    def _read_snapshot(
        self, path: str, dt: DeltaTable, with_file: bool = False, only: set[str] | None = None
    ) -> DataFrame:
        """The snapshot's rows; ``only`` restricts the scan to those files (local paths)."""
        schema = _spark_schema(dt)
        part_cols = list(dt.metadata().partition_columns)
        data_schema = T.StructType([f for f in schema.fields if f.name not in part_cols])
        files = _snapshot_files(path, dt, part_cols)
        if only is not None:
            files = {f: v for f, v in files.items() if f in only}
        if not files:
            empty = self.spark.createDataFrame([], schema)
            return empty.withColumn(_FILE_COL, F.lit(None).cast("string")) if with_file else empty
        df = self.spark.read.schema(data_schema).parquet(*files)
        if with_file:
            df = df.withColumn(_FILE_COL, _spark_file_path())
        if part_cols:
            # Partition values come from the log, never from folder names: that is what
            # every Delta reader does, and it keeps types exact ("0042" stays a string).
            # One scan over all files plus a broadcast file -> values lookup keeps the plan
            # the same size however many partitions the table has.
            key, keyed = _partition_lookup_keys(path, files)
            lookup = self.spark.createDataFrame(
                [(k, *values) for k, values in keyed],
                T.StructType(
                    [T.StructField(_KEY_COL, T.StringType())] + [T.StructField(c, T.StringType()) for c in part_cols]
                ),
            )
            df = df.withColumn(_KEY_COL, key).join(F.broadcast(lookup), on=_KEY_COL, how="inner").drop(_KEY_COL)
        types = {f.name: f.dataType for f in schema.fields}
        cols = [F.col(n).cast(types[n]).alias(n) if n in part_cols else F.col(n) for n in schema.fieldNames()]
        if with_file:
            cols.append(F.col(_FILE_COL))
        return df.select(*cols)

    def history(self, path: str, limit: int | None = None) -> list[HistoryEntry]:
        entries = []
        for h in self._table(path).history(limit):
            params = dict(h.get("operationParameters") or {})
            if "shoprec.operation" in h:
                params["shoprec.operation"] = h["shoprec.operation"]
            entries.append(HistoryEntry(int(h["version"]), h.get("timestamp"), str(h.get("operation")), params))
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
        # The facade has checked the schema (same both backends).
        schema = nullable(df.schema)
        adds = self._write_files(df, path, partition_by)
        with self._lock(path):
            if not self.exists(path):
                return self._create(path, schema, adds, partition_by, label, txn)
            dt = self._table(path)
            if overwrite_schema or list(dt.metadata().partition_columns) != list(partition_by):
                # A new schema or partitioning replaces the table's metadata, which delta-rs
                # does through the create path in overwrite mode.
                removed = len(dt.file_uris())
                self._guard(
                    label,
                    lambda: create_table_with_add_actions(
                        path,
                        _delta_schema(schema),
                        adds,
                        "overwrite",
                        list(partition_by),
                        commit_properties=_props(label, txn),
                    ),
                )
                return WriteResult(label, self.version(path), len(adds), removed, _rows(adds))
            removed = len(dt.file_uris())
            self._commit(dt, adds, [], "overwrite", schema, partition_by, None, label, txn)
            return WriteResult(label, self.version(path), len(adds), removed, _rows(adds))

    def append(
        self, df: DataFrame, path: str, partition_by: Sequence[str], label: str, txn: Txn | None = None
    ) -> WriteResult:
        schema = nullable(df.schema)
        if self.exists(path):
            partition_by = self.partition_columns(path)
        adds = self._write_files(df, path, partition_by)
        with self._lock(path):
            if not self.exists(path):
                return self._create(path, schema, adds, partition_by, label, txn)
            dt = self._table(path)
            self._commit(dt, adds, [], "append", schema, partition_by, None, label, txn)
            return WriteResult(label, self.version(path), len(adds), 0, _rows(adds))

    def replace_partition(
        self, df: DataFrame, path: str, partition: Mapping[str, Any], label: str, txn: Txn | None = None
    ) -> WriteResult:
        schema = nullable(df.schema)
        # The facade has checked the keys and that every row belongs to the partition.
        partition_by = self.partition_columns(path) if self.exists(path) else list(partition)
        adds = self._write_files(df, path, partition_by)
        with self._lock(path):
            if not self.exists(path):
                return self._create(path, schema, adds, partition_by, label, txn)
            dt = self._table(path)
            filters = [(c, "=", _partition_string(v)) for c, v in partition.items()]
            before = len(dt.file_uris(partition_filters=filters))
            self._commit(dt, adds, [], "overwrite", schema, partition_by, filters, label, txn)
            return WriteResult(label, self.version(path), len(adds), before, _rows(adds))

    def merge(
        self,
        source: DataFrame,
        path: str,
        keys: Sequence[str],
        update_matched: bool,
        label: str,
        txn: Txn | None = None,
    ) -> MergeResult:
        keys = list(keys)
        with self._lock(path):
            if not self.exists(path):
                result = self.append(source, path, [], label, txn)
                return MergeResult(label, result.version, result.rows_written or 0, 0)
            dt = self._table(path)
            partition_by = list(dt.metadata().partition_columns)
            target = self._read_snapshot(path, dt, with_file=True)
            source_keys = source.select(*keys).distinct()
            if not update_matched:
                new_rows = source.join(target.select(*keys), on=keys, how="left_anti")
                adds = self._write_files(new_rows, path, partition_by)
                if not adds:
                    return MergeResult(label, None, 0, 0)
                self._commit(dt, adds, [], "append", nullable(source.schema), partition_by, None, label, txn)
                return MergeResult(label, dt.version() + 1, _rows(adds), 0)
            touched_files = target.join(source_keys, on=keys, how="left_semi").select(_FILE_COL).distinct()
            touched = [r[0] for r in touched_files.collect()]  # small: one row per data file with a match
            # Only the files holding a matching key are read again and rewritten.
            kept = self._read_snapshot(path, dt, only=set(touched)).join(source_keys, on=keys, how="left_anti")
            matched = source_keys.join(target.select(*keys), on=keys, how="left_semi").count() if touched else 0
            new_data = kept.unionByName(source.select(*[c for c in target.columns if c != _FILE_COL]))
            adds = self._write_files(new_data, path, partition_by)
            removes = self._removes_for(dt, path, touched)
            if not adds and not removes:
                return MergeResult(label, None, 0, 0)
            self._commit(dt, adds, removes, "append", nullable(source.schema), partition_by, None, label, txn)
            return MergeResult(label, dt.version() + 1, source.count() - matched, matched)

    def replace_keys(
        self, df: DataFrame, path: str, key: str, values: DataFrame, label: str, txn: Txn | None = None
    ) -> MergeResult:
        with self._lock(path):
            if not self.exists(path):
                result = self.append(df, path, [], label, txn)
                return MergeResult(label, result.version, result.rows_written or 0, 0)
            dt = self._table(path)
            partition_by = list(dt.metadata().partition_columns)
            target = self._read_snapshot(path, dt, with_file=True)
            hit = target.join(values, on=key, how="left_semi").persist()
            try:
                touched = [r[0] for r in hit.select(_FILE_COL).distinct().collect()]  # small: a row per file
                removed = hit.count()
            finally:
                hit.unpersist()
            # Only the files holding one of the keys are read again and rewritten, without them.
            kept = self._read_snapshot(path, dt, only=set(touched)).join(values, on=key, how="left_anti")
            n_kept = kept.count() if touched else 0
            adds = self._write_files(kept.unionByName(df.select(*kept.columns)), path, partition_by)
            removes = self._removes_for(dt, path, touched)
            if not adds and not removes:
                return MergeResult(label, None, 0, 0)
            self._commit(dt, adds, removes, "append", nullable(df.schema), partition_by, None, label, txn)
            return MergeResult(label, dt.version() + 1, _rows(adds) - n_kept, removed)

    def restore(self, path: str, version: int, label: str) -> None:
        with self._lock(path):
            self._guard(label, lambda: self._table(path).restore(version))

    def drop(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def vacuum(self, path: str, retention_hours: int = 168) -> int:
        """Delete files no snapshot within the retention needs, and stale staging folders."""
        staging = os.path.join(path, STAGING_DIR)
        cutoff = time.time() - retention_hours * 3600
        if os.path.isdir(staging):
            for entry in os.scandir(staging):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)
        removed = self._table(path).vacuum(
            retention_hours=retention_hours, enforce_retention_duration=False, dry_run=False, full=True
        )
        return len(removed)

    def optimize(self, path: str, zorder_by: Sequence[str] = ()) -> dict[str, int]:
        """Compaction (or Z-order) by delta-rs itself, under the table's writer lock."""
        with self._lock(path):
            dt = self._table(path)
            optimizer = dt.optimize
            run = (lambda: optimizer.z_order(list(zorder_by))) if zorder_by else optimizer.compact
            metrics: dict[str, Any] = {}
            self._guard(f"optimize of {path}", lambda: metrics.update(run()))
        return {
            "files_added": int(metrics.get("numFilesAdded", 0)),
            "files_removed": int(metrics.get("numFilesRemoved", 0)),
        }

    def set_properties(self, path: str, properties: Mapping[str, str]) -> None:
        if not properties:
            return
        with self._lock(path):
            dt = self._table(path)
            self._guard(f"properties of {path}", lambda: dt.alter.set_table_properties(dict(properties)))

    # ------------------------------------------------------------------ internals
    def _table(self, path: str, version: int | None = None) -> DeltaTable:
        try:
            dt = DeltaTable(path, version=version)
            _check_readable(path, dt)
            return dt
        except dl_exc.TableNotFoundError as exc:
            raise TableNotFoundError(f"no Delta table at {path}", hint="run the job that writes it first") from exc
        except dl_exc.DeltaError as exc:
            if version is not None:
                raise TableError(f"cannot read version {version} of the table at {path}: {exc}") from exc
            raise TableError(f"cannot open the Delta table at {path}: {exc}") from exc

    def _write_files(self, df: DataFrame, path: str, partition_by: Sequence[str]) -> list[AddAction]:
        """Write ``df`` as Parquet under the table folder; return uncommitted add actions."""
        staging = os.path.join(path, STAGING_DIR, uuid.uuid4().hex)
        # Delta (and delta-rs) readers want INT64 timestamps, not Spark's legacy INT96.
        self.spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        writer = df.write.mode("errorifexists")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        try:
            writer.parquet(staging)
            return self._publish(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish(self, staging: str, path: str) -> list[AddAction]:
        adds = []
        for root, _dirs, files in os.walk(staging):
            for name in sorted(files):
                if not name.endswith(".parquet"):
                    continue
                src = os.path.join(root, name)
                rel = os.path.relpath(src, staging)
                rows = pq.read_metadata(src).num_rows
                if rows == 0:
                    continue  # Spark writes an empty file for empty input; the log needs none
                values = _partition_values(rel)
                # Folder names are cosmetic (values come from the log) and kept URI-safe, so
                # the log path, the file name on disk and every reader agree.
                safe_rel = "/".join([*(f"{_safe(k)}={_safe(v)}" for k, v in values.items()), name])
                dest = os.path.join(path, safe_rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.replace(src, dest)
                st = os.stat(dest)
                adds.append(
                    AddAction(
                        safe_rel,
                        st.st_size,
                        values,
                        int(st.st_mtime * 1000),
                        True,
                        json.dumps({"numRecords": rows}),
                    )
                )
        return adds

    def _create(
        self,
        path: str,
        schema: T.StructType,
        adds: list[AddAction],
        partition_by: Sequence[str],
        label: str,
        txn: Txn | None = None,
    ) -> WriteResult:
        os.makedirs(path, exist_ok=True)
        self._guard(
            label,
            lambda: create_table_with_add_actions(
                path, _delta_schema(schema), adds, "append", list(partition_by), commit_properties=_props(label, txn)
            ),
        )
        return WriteResult(label, self.version(path), len(adds), 0, _rows(adds))

    def _commit(
        self,
        dt: DeltaTable,
        adds: list[AddAction],
        removes: list[RemoveAction],
        mode: str,
        schema: T.StructType,
        partition_by: Sequence[str],
        partition_filters: list | None,
        label: str,
        txn: Txn | None = None,
    ) -> None:
        delta_schema = dt.schema() if mode == "append" else _delta_schema(schema)
        if mode == "append":
            new_fields = self._new_fields(dt, schema)
            if new_fields:
                # Schema evolution (the facade only lets this through when asked): delta-rs
                # keeps the table schema on append, so add the columns first.
                self._guard(label, lambda: dt.alter.add_columns(new_fields))
                delta_schema = dt.schema()
        self._guard(
            label,
            lambda: dt.create_write_transaction(
                [*adds, *removes],
                mode,
                delta_schema,
                partition_by=list(partition_by) or None,
                partition_filters=partition_filters,
                commit_properties=_props(label, txn),
            ),
        )

    @staticmethod
    def _new_fields(dt: DeltaTable, schema: T.StructType) -> list:
        known = {f.name for f in dt.schema().fields}
        extra = [f for f in schema.fields if f.name not in known]
        if not extra:
            return []
        return list(_delta_schema(T.StructType(extra)).fields)

    def _removes_for(self, dt: DeltaTable, path: str, file_uris: list[str]) -> list[RemoveAction]:
        wanted = set(file_uris)  # already local paths (see _spark_file_path)
        actions = pa.table(dt.get_add_actions(flatten=True))
        now = int(time.time() * 1000)
        part_cols = [c for c in actions.column_names if c.startswith("partition.")]
        removes = []
        for i, rel in enumerate(actions.column("path").to_pylist()):
            if _file_path(path, rel) in wanted:
                pvals = {c[len("partition.") :]: _partition_string(actions.column(c)[i].as_py()) for c in part_cols}
                size = actions.column("size_bytes")[i].as_py()
                removes.append(RemoveAction(rel, True, now, size, pvals or None))
        return removes

    @contextlib.contextmanager
    def _lock(self, path: str) -> Iterator[None]:
        """Serialise writers of one table on this machine (a sibling ``.<table>.lock`` file)."""
        parent, table = os.path.split(path.rstrip("/"))
        os.makedirs(parent, exist_ok=True)
        lock_path = os.path.join(parent, f".{table}.lock")
        held = self._held_locks()
        if lock_path in held:  # re-entrant within one thread (merge -> append)
            yield
            return
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            held.add(lock_path)
            try:
                yield
            finally:
                held.discard(lock_path)
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _guard(label: str, commit: Callable[[], object]) -> None:
        try:
            commit()
        except dl_exc.CommitFailedError as exc:
            raise ConcurrentWriteError(
                f"another writer changed {label} while this write was in progress ({exc})",
                hint="rerun the job; it is idempotent",
            ) from exc
        except dl_exc.SchemaMismatchError as exc:
            raise SchemaMismatchError(f"schema mismatch committing to {label}: {exc}") from exc
        except dl_exc.DeltaError as exc:
            raise TableError(f"could not commit to {label}: {exc}") from exc


# ---------------------------------------------------------------------- helpers
# Reader features this backend's read path (the snapshot's Parquet files, read by Spark)
# honours. Deletion vectors and column mapping change which rows or columns a file holds:
# reading the files as they are would silently return wrong data.
_READABLE_FEATURES = frozenset({"timestampNtz"})


def _check_readable(path: str, dt: DeltaTable) -> None:
    protocol = dt.protocol()
    features = set(protocol.reader_features or [])
    if protocol.min_reader_version == 2:
        features.add("columnMapping")
    unsupported = sorted(features - _READABLE_FEATURES)
    if unsupported:
        raise TableError(
            f"the table at {path} uses Delta reader features the delta-rs backend cannot read "
            f"({', '.join(unsupported)})",
            hint="use storage.delta_backend: spark (Spark's own Delta), or purge them first "
            "(REORG TABLE ... APPLY (PURGE) for deletion vectors)",
        )


def _spark_schema(dt: DeltaTable) -> T.StructType:
    arrow = pa.schema(dt.schema().to_arrow())
    return nullable(from_arrow_schema(arrow))


def _delta_schema(schema: T.StructType) -> DeltaSchema:
    return DeltaSchema.from_arrow(to_arrow_schema(nullable(schema)))


def _props(label: str, txn: Txn | None = None) -> CommitProperties:
    """The commit's label, and its application transaction when it has one (same commit)."""
    transactions = [Transaction(app_id=txn.app_id, version=txn.version)] if txn else None
    return CommitProperties(custom_metadata={"shoprec.operation": label}, app_transactions=transactions)


def _rows(adds: list[AddAction]) -> int:
    return sum(json.loads(a.stats)["numRecords"] for a in adds)


def _partition_values(rel: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for segment in rel.split(os.sep)[:-1]:
        key, _, raw = segment.partition("=")
        values[unquote(key)] = None if raw == _HIVE_NULL else unquote(raw)
    return values


def _safe(value: str | None) -> str:
    if value is None:
        return "null"
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:64] or "_"


def _file_path(table: str, rel: str) -> str:
    """Local path of a log entry. The log holds each path URI-encoded (Delta's protocol;
    ``get_add_actions`` hands it back raw): decoding it once gives the name on disk,
    whoever wrote it (Spark keeps "United Kingdom" folders, delta-rs writes "a%20b" ones
    and logs them as "a%2520b")."""
    if "://" in rel or rel.startswith("file:"):
        return local_path(rel)
    return os.path.abspath(os.path.join(local_path(table), unquote(rel)))


def _snapshot_files(path: str, dt: DeltaTable, part_cols: list[str]) -> dict[str, tuple]:
    """Local path of every file of the snapshot -> its partition values (as strings)."""
    actions = pa.table(dt.get_add_actions(flatten=True))
    paths = [_file_path(path, p) for p in actions.column("path").to_pylist()]
    columns = [actions.column(f"partition.{c}").to_pylist() for c in part_cols]
    return {p: tuple(_partition_string(col[i]) for col in columns) for i, p in enumerate(paths)}


_KEY_COL = "_shoprec_file_key"
# Relative paths this backend writes (and most writers do): no character that a URI
# would escape, so Spark's file URI ends with exactly this text.
_URI_SAFE_REL = re.compile(r"^[A-Za-z0-9._=/-]+$")


def _partition_lookup_keys(path: str, files: dict[str, tuple]) -> tuple[Column, list[tuple[str, tuple]]]:
    """A per-row key for a file and the (key, partition values) pairs to join it with.

    Fast path: when every file sits under the table folder at the same depth with a
    URI-safe relative path, the key is the last path segments of ``_metadata.file_path``
    (a substring, no per-row regex or URL decoding; on 10M rows that decoding cost
    25x the scan itself). Otherwise the full decoded local path is the key.
    """
    base = local_path(path)
    rels = {f: os.path.relpath(f, base) for f in files}
    depths = {r.count("/") + 1 for r in rels.values()}
    if len(depths) == 1 and all(_URI_SAFE_REL.match(r) and not r.startswith("..") for r in rels.values()):
        depth = depths.pop()
        return (
            F.substring_index(F.col("_metadata.file_path"), "/", -depth),
            [(rels[f], values) for f, values in files.items()],
        )
    return _spark_file_path(), list(files.items())


def _spark_file_path() -> Column:
    """The file a row came from, as a plain local path (same form as ``local_path``)."""
    uri = F.regexp_replace(F.col("_metadata.file_path"), r"^file:(//)?", "")
    # url_decode is form decoding ("+" means space); a "+" in a path is a plus.
    return F.url_decode(F.regexp_replace(uri, r"\+", "%2B"))


def _partition_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
