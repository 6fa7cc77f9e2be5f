"""What every Delta backend offers, and the small records its operations return."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from shoprec.errors import SchemaMismatchError, TableError

_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Txn:
    """An application transaction: Delta's ``SetTransaction`` (``txn``) action.

    A commit that carries one records ``version`` for ``app_id`` in the table's log, in the
    same atomic commit as its data; a write whose ``version`` is not above the one the table
    holds for ``app_id`` has been applied before and is skipped. Ingest keys it on its input's
    content (``version`` the attempt), a stream on its name (``version`` the batch id).
    """

    app_id: str
    version: int


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one committed write (``skipped``: its ``Txn`` was applied before)."""

    table: str
    version: int
    files_added: int
    files_removed: int = 0
    rows_written: int | None = None
    skipped: bool = False


@dataclass(frozen=True)
class MergeResult:
    """Outcome of a merge (upsert) on keys (``skipped``: its ``Txn`` was applied before)."""

    table: str
    version: int | None  # None when nothing had to change
    inserted: int
    updated: int
    skipped: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    """One commit of a table, newest first in ``history()``."""

    version: int
    timestamp_ms: int | None
    operation: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


class TableBackend(Protocol):
    """Operations both backends implement; see ``shoprec.tables.facade.Tables``."""

    name: str

    def exists(self, path: str) -> bool: ...

    def version(self, path: str) -> int: ...

    def read(self, path: str, version: int | None = None, timestamp: datetime | None = None) -> DataFrame: ...

    def read_changes(self, path: str, start_version: int, end_version: int | None = None) -> DataFrame: ...

    def properties(self, path: str) -> dict[str, str]: ...

    def file_count(self, path: str) -> int: ...

    def schema(self, path: str) -> T.StructType: ...

    def partition_columns(self, path: str) -> list[str]: ...

    def txn_version(self, path: str, app_id: str) -> int | None: ...

    def overwrite(
        self,
        df: DataFrame,
        path: str,
        partition_by: Sequence[str],
        overwrite_schema: bool,
        label: str,
        txn: Txn | None = None,
    ) -> WriteResult: ...

    def append(
        self, df: DataFrame, path: str, partition_by: Sequence[str], label: str, txn: Txn | None = None
    ) -> WriteResult: ...

    def replace_partition(
        self, df: DataFrame, path: str, partition: Mapping[str, Any], label: str, txn: Txn | None = None
    ) -> WriteResult: ...

    def merge(
        self,
        source: DataFrame,
        path: str,
        keys: Sequence[str],
        update_matched: bool,
        label: str,
        txn: Txn | None = None,
    ) -> MergeResult: ...

    def replace_keys(
        self, df: DataFrame, path: str, key: str, values: DataFrame, label: str, txn: Txn | None = None
    ) -> MergeResult: ...

    def history(self, path: str, limit: int | None = None) -> list[HistoryEntry]: ...

    def restore(self, path: str, version: int, label: str) -> None: ...

    def drop(self, path: str) -> None: ...

    def vacuum(self, path: str, retention_hours: int = 168) -> int: ...

    def optimize(self, path: str, zorder_by: Sequence[str] = ()) -> dict[str, int]: ...

    def set_properties(self, path: str, properties: Mapping[str, str]) -> None: ...


def is_table_name(name: str) -> bool:
    return bool(_NAME.match(name))


def check_table_name(name: str) -> tuple[str, str]:
    if not _NAME.match(name):
        raise TableError(
            f"table name '{name}' is not '<layer>.<table>' in lower case",
            hint="for example silver.interactions",
        )
    layer, table = name.split(".")
    return layer, table


def table_path(root: str, name: str) -> str:
    """``<root>/<layer>/<table>`` for a ``layer.table`` name."""
    layer, table = check_table_name(name)
    return f"{root.rstrip('/')}/{layer}/{table}"


def check_append_schema(label: str, table: T.StructType, data: T.StructType, merge_schema: bool) -> T.StructType:
    """Schema the table will have after appending ``data``; raise on a mismatch.

    Columns are matched by name (case-sensitive). Missing columns in the data are an
    error (Delta would write nulls silently); extra columns need ``merge_schema``; a
    changed type is always an error.
    """
    tfields = {f.name: f for f in table.fields}
    dfields = {f.name: f for f in data.fields}
    problems = []
    for name, f in dfields.items():
        if name in tfields and not _same_type(tfields[name].dataType, f.dataType):
            problems.append(
                f"column '{name}' is {tfields[name].dataType.simpleString()} in the table "
                f"but {f.dataType.simpleString()} in the data"
            )
    missing = [n for n in tfields if n not in dfields]
    if missing:
        problems.append(f"columns missing from the data: {', '.join(missing)}")
    extra = [n for n in dfields if n not in tfields]
    if extra and not merge_schema:
        problems.append(f"columns not in the table: {', '.join(extra)}")
    if problems:
        hint = (
            "pass merge_schema=True to add new columns"
            if extra and not merge_schema
            else ("cast the data to the table's types, or overwrite the table with overwrite_schema=True")
        )
        raise SchemaMismatchError(f"schema mismatch writing {label}: " + "; ".join(problems), hint=hint)
    if not extra:
        return table
    return T.StructType(list(table.fields) + [T.StructField(n, dfields[n].dataType, True) for n in extra])


def _same_type(a: T.DataType, b: T.DataType) -> bool:
    return _strip_nullability(a) == _strip_nullability(b)


def _strip_nullability(dt: T.DataType) -> T.DataType:
    if isinstance(dt, T.StructType):
        return T.StructType([T.StructField(f.name, _strip_nullability(f.dataType), True) for f in dt.fields])
    if isinstance(dt, T.ArrayType):
        return T.ArrayType(_strip_nullability(dt.elementType), True)
    if isinstance(dt, T.MapType):
        return T.MapType(_strip_nullability(dt.keyType), _strip_nullability(dt.valueType), True)
    return dt


def nullable(schema: T.StructType) -> T.StructType:
    """The same schema with every field nullable (what Parquet written by Spark holds)."""
    return cast(T.StructType, _strip_nullability(schema))  # a struct in, a struct out
