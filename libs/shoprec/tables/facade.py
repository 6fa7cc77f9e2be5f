"""``Tables``: what jobs call. Names, schema checks and the choice of backend live here."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.errors import SchemaMismatchError, TableError
from shoprec.tables import faults
from shoprec.tables.base import (
    HistoryEntry,
    MergeResult,
    TableBackend,
    Txn,
    WriteResult,
    check_append_schema,
    check_table_name,
    is_table_name,
    nullable,
    table_path,
)

log = logging.getLogger(__name__)

Backend = Literal["auto", "spark", "local"]


def open_tables(spark: SparkSession, root: str, backend: Backend = "auto") -> Tables:
    """A ``Tables`` on ``root`` with the backend chosen as ``storage.delta_backend`` says."""
    return Tables(spark, root, backend)


def _choose_backend(spark: SparkSession, backend: Backend) -> TableBackend:
    from shoprec.spark import has_delta_classes

    if backend == "auto":
        backend = "spark" if has_delta_classes(spark) else "local"
    if backend == "spark":
        if not has_delta_classes(spark):
            raise TableError(
                "storage.delta_backend is 'spark' but Spark's Delta classes are not on the classpath",
                hint="add io.delta:delta-spark_2.13 to spark.jars.packages, or use delta_backend: local",
            )
        from shoprec.tables.spark_delta import SparkDeltaBackend

        return SparkDeltaBackend(spark)
    from shoprec.tables.local import LocalDeltaBackend

    return LocalDeltaBackend(spark)


class Tables:
    """Delta tables under one root, addressed as ``"<layer>.<table>"``.

    >>> tables = open_tables(spark, "/tmp/lakehouse")            # doctest: +SKIP
    >>> tables.overwrite(df, "silver.items")                     # doctest: +SKIP
    >>> tables.read("silver.items", version=0).count()           # doctest: +SKIP
    """

    def __init__(self, spark: SparkSession, root: str, backend: Backend = "auto"):
        self.spark = spark
        self.root = root.rstrip("/")
        self.backend = _choose_backend(spark, backend)

    # ------------------------------------------------------------------ naming
    def path(self, name: str) -> str:
        return table_path(self.root, name)

    # ------------------------------------------------------------------ reading
    def exists(self, name: str) -> bool:
        return self.backend.exists(self.path(name))

    def names(self) -> list[str]:
        """Every table under the root (``layer.table`` folders holding a Delta log), sorted."""
        from shoprec.paths import is_local, local_path

        root = local_path(self.root)
        if not is_local(self.root):
            raise TableError(f"listing tables under {self.root} needs a local path", hint="name the tables in config")
        found = []
        for layer in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            layer_dir = os.path.join(root, layer)
            if not os.path.isdir(layer_dir) or layer.startswith(("_", ".")):
                continue
            for table in sorted(os.listdir(layer_dir)):
                name = f"{layer}.{table}"
                if os.path.isdir(os.path.join(layer_dir, table, "_delta_log")) and is_table_name(name):
                    found.append(name)
        return found

    def version(self, name: str) -> int | None:
        """Latest version, or None when the table does not exist."""
        return self.backend.version(self.path(name)) if self.exists(name) else None

    def read(self, name: str, version: int | None = None, timestamp: dt.datetime | None = None) -> DataFrame:
        """The latest snapshot, or the one at ``version`` or at ``timestamp`` (time travel)."""
        if version is not None and timestamp is not None:
            raise TableError(f"read {name}: give a version or a timestamp, not both")
        if timestamp is None:
            return self.backend.read(self.path(name), version)
        return self.backend.read(self.path(name), timestamp=_utc(timestamp))

    def changes(self, name: str, start_version: int, end_version: int | None = None) -> DataFrame:
        """Change Data Feed of the table from ``start_version`` (needs CDF enabled on it).

        Rows carry ``_change_type`` (insert, delete, update_preimage, update_postimage),
        ``_commit_version`` and ``_commit_timestamp``, as Delta defines them.
        """
        return self.backend.read_changes(self.path(name), start_version, end_version)

    def properties(self, name: str) -> dict[str, str]:
        """The table's Delta properties (``delta.*`` and ours)."""
        return self.backend.properties(self.path(name))

    def file_count(self, name: str) -> int:
        """Data files in the latest snapshot."""
        return self.backend.file_count(self.path(name))

    def read_as_of(self, name: str, as_of: dt.date) -> DataFrame:
        """The rows of one ``as_of`` (the training cutoff every gold table is partitioned by);
        empty when the table holds none for it."""
        return self.read(name).where(F.col(C.AS_OF) == F.lit(as_of))

    def history(self, name: str, limit: int | None = None) -> list[HistoryEntry]:
        """Commits of the table, newest first."""
        return self.backend.history(self.path(name), limit)

    def partition_columns(self, name: str) -> list[str]:
        return self.backend.partition_columns(self.path(name))

    def txn_version(self, name: str, app_id: str) -> int | None:
        """The version the table's log records for ``app_id`` (its latest ``Txn``), or None."""
        return self.backend.txn_version(self.path(name), app_id) if self.exists(name) else None

    def applied(self, name: str, txn: Txn) -> bool:
        """True when a commit carrying ``txn`` (or a later version of its app) is in the table."""
        recorded = self.txn_version(name, txn.app_id)
        return recorded is not None and recorded >= txn.version

    def _skip(self, name: str, txn: Txn | None) -> bool:
        if txn is None or not self.applied(name, txn):
            return False
        log.info("%s: skipped, %s version %d was committed before", name, txn.app_id, txn.version)
        return True

    # ------------------------------------------------------------------ writing
    # Every write takes an optional ``txn`` (``Txn``): it is recorded in the same commit, and a
    # write whose txn the table already holds is skipped (``skipped=True``, nothing read).
    def overwrite(
        self,
        df: DataFrame,
        name: str,
        partition_by: Sequence[str] = (),
        overwrite_schema: bool = False,
        txn: Txn | None = None,
    ) -> WriteResult:
        """Replace the whole table (create it when missing) in one commit."""
        check_table_name(name)
        if self._skip(name, txn):
            return self._skipped_write(name)
        path = self.path(name)
        if not overwrite_schema and self.backend.exists(path):
            _check_same_schema(name, self.backend.schema(path), df.schema)
        result = self.backend.overwrite(df, path, list(partition_by), overwrite_schema, name, txn)
        log.info("%s: overwrite -> version %s", name, result.version)
        faults.after_commit(name)
        return result

    def append(
        self,
        df: DataFrame,
        name: str,
        partition_by: Sequence[str] = (),
        merge_schema: bool = False,
        txn: Txn | None = None,
    ) -> WriteResult:
        """Add rows in one commit; the data's schema must match unless ``merge_schema``."""
        check_table_name(name)
        if self._skip(name, txn):
            return self._skipped_write(name)
        path = self.path(name)
        if self.backend.exists(path):
            table_schema = self.backend.schema(path)
            target = check_append_schema(name, table_schema, df.schema, merge_schema)
            df = df.select(*[F.col(f.name) for f in target.fields])
        result = self.backend.append(df, path, list(partition_by), name, txn)
        faults.after_commit(name)
        return result

    def replace_partition(
        self, df: DataFrame, name: str, partition: Mapping[str, Any], txn: Txn | None = None
    ) -> WriteResult:
        """Atomically replace one partition (e.g. ``{"as_of": date(2011, 11, 1)}``).

        Every row of ``df`` must belong to that partition. A missing table is created,
        partitioned by the keys of ``partition``.
        """
        check_table_name(name)
        if self._skip(name, txn):
            return self._skipped_write(name)
        path = self.path(name)
        partition = dict(partition)
        partition_by = self.backend.partition_columns(path) if self.backend.exists(path) else list(partition)
        _check_partition_keys(name, partition, partition_by)
        _check_rows_inside(name, df, partition)
        if self.backend.exists(path):
            check_append_schema(name, self.backend.schema(path), df.schema, merge_schema=False)
            df = df.select(*self.backend.schema(path).fieldNames())
        result = self.backend.replace_partition(df, path, partition, name, txn)
        faults.after_commit(name)
        return result

    def merge(
        self,
        df: DataFrame,
        name: str,
        keys: Sequence[str],
        update_matched: bool = True,
        check_keys: bool = True,
        txn: Txn | None = None,
    ) -> MergeResult:
        """Upsert on ``keys``: matched rows are updated (or left alone), new keys inserted.

        ``df`` must not hold a key twice (a clear error, as in Delta's own MERGE). Callers
        whose keys are unique by construction pass ``check_keys=False`` to save a shuffle.
        """
        check_table_name(name)
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise TableError(f"merge into {name}: key columns {', '.join(missing)} are not in the data")
        if self._skip(name, txn):
            return MergeResult(name, self.version(name), 0, 0, skipped=True)
        too_many = df.groupBy(*keys).count().filter(F.col("count") > 1).limit(1)
        dupes = too_many.collect() if check_keys else []  # small: at most 1 row
        if dupes:
            example = {k: dupes[0][k] for k in keys}
            raise TableError(
                f"merge into {name}: the source holds key {example} more than once",
                hint="deduplicate the source on the merge keys first",
            )
        path = self.path(name)
        if self.backend.exists(path):
            check_append_schema(name, self.backend.schema(path), df.schema, merge_schema=False)
            df = df.select(*self.backend.schema(path).fieldNames())
        result = self.backend.merge(df, path, list(keys), update_matched, name, txn)
        log.info("%s: merge inserted %d, updated %d", name, result.inserted, result.updated)
        if result.version is not None:
            faults.after_commit(name)
        return result

    def replace_keys(
        self, df: DataFrame, name: str, key: str, values: DataFrame | None = None, txn: Txn | None = None
    ) -> MergeResult:
        """Replace every row whose ``key`` is one of ``values`` (a DataFrame with a ``key``
        column; default: the keys of ``df``) by the rows of ``df``, in one commit: a key's old
        rows go, however many there were, and ``df``'s come in (``inserted``; ``updated``:
        the rows removed). A missing table is created from ``df``.

        What a per-user list needs (gold.live_recommendations): a merge on (user, rank) would
        leave a user's old ranks beyond the new list's length behind.
        """
        check_table_name(name)
        if key not in df.columns:
            raise TableError(f"replace rows of {name}: key column {key} is not in the data")
        if self._skip(name, txn):
            return MergeResult(name, self.version(name), 0, 0, skipped=True)
        keys = (df if values is None else values).select(key).where(F.col(key).isNotNull()).distinct()
        path = self.path(name)
        if self.backend.exists(path):
            check_append_schema(name, self.backend.schema(path), df.schema, merge_schema=False)
            df = df.select(*self.backend.schema(path).fieldNames())
        result = self.backend.replace_keys(df, path, key, keys, name, txn)
        log.info("%s: replaced the rows of its %s keys: %d in, %d out", name, key, result.inserted, result.updated)
        if result.version is not None:
            faults.after_commit(name)
        return result

    def _skipped_write(self, name: str) -> WriteResult:
        return WriteResult(name, self.version(name) or 0, 0, skipped=True)

    def restore(self, name: str, version: int) -> None:
        """Make ``version`` the latest state again (a new commit; history is kept)."""
        self.backend.restore(self.path(name), version, name)

    # ------------------------------------------------------------------ maintenance
    def vacuum(self, name: str, retention_hours: int = 168) -> int:
        """Delete files that no snapshot in the retention window needs; return how many.

        Every version committed within the last ``retention_hours`` stays readable.
        """
        return self.backend.vacuum(self.path(name), retention_hours)

    def optimize(self, name: str, zorder_by: Sequence[str] = ()) -> dict[str, int]:
        """Compact small files in one commit, clustered by ``zorder_by`` when given."""
        missing = [c for c in zorder_by if c not in self.backend.schema(self.path(name)).fieldNames()]
        if missing:
            raise TableError(f"cannot ZORDER {name} by {', '.join(missing)}: no such column")
        return self.backend.optimize(self.path(name), list(zorder_by))

    def set_properties(self, name: str, properties: Mapping[str, str]) -> None:
        """Set Delta table properties (log retention, checkpoint interval, change data feed)."""
        self.backend.set_properties(self.path(name), dict(properties))

    # ------------------------------------------------------------------ job atomicity
    def versions(self, names: Sequence[str]) -> dict[str, int | None]:
        return {n: self.version(n) for n in names}

    @contextlib.contextmanager
    def all_or_nothing(self, names: Sequence[str]) -> Iterator[dict[str, int | None]]:
        """Run a multi-table job so that a failure leaves every named table as it was.

        Delta commits are atomic per table; a job writes several. On an exception every
        table that moved is restored to its version from before the job (a table the job
        created is removed), then the exception propagates.
        """
        before = self.versions(names)
        try:
            yield before
        except faults.Crash:
            raise  # a simulated crash: as after SIGKILL, nothing rolls back
        except BaseException:
            self.roll_back(before)
            raise

    def roll_back(self, before: Mapping[str, int | None]) -> None:
        """Put every table back at its version in ``before`` (None: drop it); never raises,
        so the error that caused the rollback is the one the caller sees."""
        for name, version in before.items():
            try:
                now = self.version(name)
                if now == version:
                    continue
                if version is None:
                    self.backend.drop(self.path(name))
                else:
                    self.restore(name, version)
                log.warning("rolled %s back to version %s after a failure", name, version)
            except Exception:  # keep the original error; report the rollback problem
                log.exception("could not roll %s back to version %s", name, version)


# ---------------------------------------------------------------------- checks both backends share
def _utc(ts: dt.datetime) -> dt.datetime:
    """Naive timestamps are UTC (the session time zone); aware ones are converted."""
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _check_same_schema(name: str, current: T.StructType, data: T.StructType) -> None:
    if nullable(current) != nullable(data):
        raise SchemaMismatchError(
            f"overwriting {name} would change its schema from {nullable(current).simpleString()} "
            f"to {nullable(data).simpleString()}",
            hint="pass overwrite_schema=True when the new schema is intended",
        )


def _check_partition_keys(name: str, partition: Mapping[str, Any], partition_by: Sequence[str]) -> None:
    unknown = [c for c in partition if c not in partition_by]
    if unknown or not partition:
        raise TableError(
            f"cannot replace a partition of {name} by {', '.join(unknown) or 'nothing'}: the table is "
            f"partitioned by {', '.join(partition_by) or 'nothing'}"
        )


def _check_rows_inside(name: str, df: DataFrame, partition: Mapping[str, Any]) -> None:
    outside = df
    for col, value in partition.items():
        outside = outside.filter(~F.col(col).eqNullSafe(F.lit(value)))
    if outside.limit(1).count():
        shown = ", ".join(f"{k}={v}" for k, v in partition.items())
        raise TableError(
            f"rows to write into {name} partition {shown} include rows of other partitions",
            hint="filter the data to the partition being replaced",
        )
