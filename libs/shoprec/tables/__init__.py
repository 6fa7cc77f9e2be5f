"""The Delta table layer: the only module that knows paths and formats.

``Tables`` is what jobs use. It picks a backend at run time:

- ``SparkDeltaBackend``: Spark's own Delta (``format("delta")`` and ``delta.tables``), the
  default wherever its classes are on Spark's classpath: locally (scripts/bootstrap.sh
  fetches the JARs and the session factory puts them on ``spark.jars``), clusters, Databricks.
- ``LocalDeltaBackend``: delta-rs owns the transaction log, Spark does the Parquet I/O
  in parallel. The fallback where the JARs are missing (``storage.delta_backend: local``
  selects it anywhere).

Both write the same Delta protocol, so a table written by one is readable by the other.

Table names are ``"<layer>.<table>"`` (``"silver.interactions"``) and live at
``<root>/<layer>/<table>``.
"""

from __future__ import annotations

from shoprec.tables.base import HistoryEntry, MergeResult, TableBackend, Txn, WriteResult, table_path
from shoprec.tables.facade import Tables, open_tables

__all__ = ["HistoryEntry", "MergeResult", "TableBackend", "Tables", "Txn", "WriteResult", "open_tables", "table_path"]
