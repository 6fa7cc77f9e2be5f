"""shoprec: distributed recommendations for e-commerce.

Layers, imports pointing down (docs/architecture.md; checked by import-linter):
``cli``/``notebook`` -> ``stages`` (the only code that reads and writes tables, opens MLflow
runs and resolves models) -> ``reports`` -> the concern packages (``ranking``, ``bundles``,
``candidates``, ``hybrid``, ``als``, ``evaluation``, ``features``, ``ingest``: plain functions
of DataFrames) -> the foundations (``split``, ``registry``, ``tracking``, ``tables``,
``spark``, ``config``, ``columns``, ``errors``, ``paths``).
"""

__version__ = "0.1.0"
