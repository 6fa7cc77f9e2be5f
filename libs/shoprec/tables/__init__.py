"""The Delta table layer: the only module that knows paths and formats.

``Tables`` is what jobs use. It picks a backend at run time:

- ``SparkDeltaBackend``: Spark's own Delta (``format("delta")`` and ``delta.tables``),
  used when the Delta classes are on Spark's classpath (clusters, Databricks).
- ``LocalDeltaBackend``: delta-rs owns the transaction log, Spark does the Parquet I/O
  in parallel. Used on machines without the Delta JARs (the embedded default).

Both write the same Delta protocol, so a table written by one is readable by the other.

Table names are ``"<layer>.<table>"`` (``"silver.interactions"``) and live at
``<root>/<layer>/<table>``.
"""
from __future__ import annotations

from shoprec.tables.base import HistoryEntry, MergeResult, TableBackend, WriteResult, table_path
from shoprec.tables.facade import Tables, open_tables

__all__ = ["HistoryEntry", "MergeResult", "TableBackend", "Tables", "WriteResult", "open_tables", "table_path"]
