"""The pipeline's stages: the only code that reads and writes tables, opens MLflow runs and
resolves registered models.

One module per stage (``ingest``, ``features``, ``train_als``, ``train_hybrid``, ``bundles``,
``recommend``, ``evaluate``) plus ``pipeline`` (all of them in order), ``time_report`` and
``maintain`` (table housekeeping);
each has a ``run_<stage>(spark, cfg, tables, split, run)`` and a ``<stage>_stage(ctx, ...)``
that opens the MLflow run and prints the summary. Everything below (``ingest`` adapters,
``features``, ``als``, ``hybrid``, ``candidates``, ``ranking``, ``bundles``, ``evaluation``) is
plain functions of DataFrames and small typed records; the import-linter contract in
pyproject.toml keeps imports pointing down.
"""
