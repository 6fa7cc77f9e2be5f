"""Every path under the data root, built in one place (tables themselves: ``tables.table_path``).

<data_root>/<layer>/<table>          Delta tables (the table layer)
<data_root>/mlflow.db                MLflow tracking and registry (embedded default)
<data_root>/mlartifacts              MLflow artifacts (embedded default)
<data_root>/_models/<name-vN-..>     registered models downloaded for serving
<data_root>/_checkpoints/als         ALS lineage checkpoints (unless als.checkpoint_dir)
<data_root>/_checkpoints/stream/<n>  the stream's offsets and commits (query name n)
<data_root>/_landing/events          where event-log files land for shoprec stream (stream.landing)
<data_root>/<hybrid.work_dir>/<as_of> training examples and the model of train-hybrid
<data_root>/_staging/<what>          inputs converted before ingest (xlsx -> csv)
<data_root>/_reports/<name>          plots and JSON of the reports and notebooks
"""

from __future__ import annotations

import os
import re
from datetime import date
from urllib.parse import unquote

MODELS_DIR = "_models"
CHECKPOINTS_DIR = "_checkpoints"
STAGING_DIR = "_staging"
REPORTS_DIR = "_reports"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"


_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/")


def is_uri(path: str) -> bool:
    """``s3://b/x``, ``dbfs:/x``, ``file:///x``: a scheme, not a plain path."""
    return _SCHEME.match(path) is not None


def is_local(path: str) -> bool:
    """A path on this machine's file system: plain, or a ``file:`` URI."""
    return not is_uri(path) or path.startswith("file:")


def local_path(uri: str) -> str:
    """``file:///a/b%20c`` (as Spark and delta-rs print local files) -> ``/a/b c``."""
    uri = unquote(uri)
    for prefix in ("file://", "file:"):
        if uri.startswith(prefix):
            uri = uri[len(prefix) :]
            break
    return os.path.abspath(uri)


def mlflow_db(data_root: str) -> str:
    """The embedded MLflow store's SQLite file."""
    return os.path.join(data_root, MLFLOW_DB)


def mlflow_artifacts(data_root: str) -> str:
    """The embedded MLflow store's artifact folder."""
    return os.path.join(data_root, MLFLOW_ARTIFACTS)


def model_cache(data_root: str) -> str:
    """Where serving downloads registered model versions."""
    return os.path.join(data_root, MODELS_DIR)


def als_checkpoints(data_root: str) -> str:
    return os.path.join(data_root, CHECKPOINTS_DIR, "als")


def stream_checkpoint(data_root: str, name: str) -> str:
    return os.path.join(data_root, CHECKPOINTS_DIR, "stream", name)


def under_root(data_root: str, path: str) -> str:
    """``path`` as given when absolute or a URI, else under the data root."""
    if os.path.isabs(path) or is_uri(path):
        return path
    return os.path.join(data_root, path)


def hybrid_work(data_root: str, work_dir: str, as_of: date) -> str:
    """train-hybrid's folder of one cutoff (replaced on every run)."""
    return os.path.join(os.path.abspath(data_root), work_dir, as_of.isoformat())


def staging(data_root: str, what: str) -> str:
    return os.path.join(data_root, STAGING_DIR, what)


def reports(data_root: str, name: str) -> str:
    """A report's output folder (not created)."""
    return os.path.join(data_root, REPORTS_DIR, name)
