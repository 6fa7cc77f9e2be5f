"""MLflow, thinly: one helper opens a run, logs the resolved config once, logs counts.

Embedded default: tracking and registry in ``<data_root>/mlflow.db`` (SQLite) and
artifacts in ``<data_root>/mlartifacts``. The cluster overlay points at a server.
Nested stage runs happen naturally: a job started inside the pipeline's run nests.
What is logged (the resolved config, the store's URIs) is masked with ``config.masked``;
only the client itself gets the real tracking URI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shoprec import paths
from shoprec.config import Config, mask_text, masked

log = logging.getLogger(__name__)

# MLflow caps a param value at 6000 chars and a batch at 100 params.
_PARAM_MAX = 500


@dataclass(frozen=True, repr=False)
class Store:
    """Where MLflow keeps runs, models and artifacts for this config (its repr is masked)."""

    tracking_uri: str
    registry_uri: str
    artifact_root: str

    @property
    def is_embedded(self) -> bool:
        return self.tracking_uri.startswith("sqlite:")

    def __repr__(self) -> str:
        fields = ("tracking_uri", "registry_uri", "artifact_root")
        return "Store(" + ", ".join(f"{k}={mask_text(getattr(self, k))!r}" for k in fields) + ")"


def store_for(cfg: Config) -> Store:
    """Resolve the tracking/registry/artifact locations (embedded default under data_root)."""
    root = cfg.storage.data_root
    tracking = cfg.mlflow.tracking_uri or f"sqlite:///{paths.mlflow_db(root)}"
    registry = cfg.mlflow.registry_uri or tracking
    artifacts = cfg.mlflow.artifact_root or Path(paths.mlflow_artifacts(root)).resolve().as_uri()
    return Store(tracking, registry, artifacts)


def configure(cfg: Config) -> Store:
    """Point this process's MLflow client at the store and make sure the experiment exists."""
    import mlflow

    store = store_for(cfg)
    if store.is_embedded:
        os.makedirs(cfg.storage.data_root, exist_ok=True)
    if mask_text(store.tracking_uri) != store.tracking_uri:
        # MLflow prints "View run ... at: <tracking URI>/#/..." after each run, credentials and all.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.registry_uri)
    experiment = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # created by a concurrent job meanwhile
            mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=store.artifact_root)
    mlflow.set_experiment(cfg.mlflow.experiment)
    return store


class RunLogger:
    """What a job logs into its run: counts, metrics, small dicts, artifacts."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def counts(self, counts: Mapping[str, int | float], prefix: str = "") -> None:
        import mlflow

        mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in counts.items()})

    metrics = counts

    def step_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Metrics of one step (a stream's micro-batch), from any thread: by run id, not the
        thread's active run (Spark calls foreachBatch on its own thread)."""
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        now = int(time.time() * 1000)
        MlflowClient().log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.log_params({k: str(v)[:_PARAM_MAX] for k, v in params.items()})

    def dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        import mlflow

        mlflow.log_dict(dict(data), artifact_file)

    def artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(local_path, artifact_path)

    def tags(self, tags: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextlib.contextmanager
def job_run(cfg: Config, stage: str, tags: Mapping[str, Any] | None = None) -> Iterator[RunLogger]:
    """Open an MLflow run for one stage; nest under an active (pipeline) run if there is one.

    The resolved config is logged once per run: as ``config/resolved.yml`` and as
    flattened params, so runs can be compared on any key in the UI. Both are masked
    (``config.masked``): no password, token or secret key reaches the tracking server.
    """
    import mlflow

    configure(cfg)
    parent = mlflow.active_run()
    all_tags = {
        "shoprec.stage": stage,
        "shoprec.env": cfg.env,
        "shoprec.source": cfg.ingest.source,
        **git_tags(cfg),
        **(tags or {}),
    }
    # "train-als 2011-11-01": the UI's run list tells stages and cutoffs apart at a glance.
    name = f"{stage} {all_tags['shoprec.as_of']}" if "shoprec.as_of" in all_tags else stage
    with mlflow.start_run(
        run_name=name, nested=parent is not None, tags={k: str(v) for k, v in all_tags.items()}
    ) as run:
        run_logger = RunLogger(run.info.run_id)
        plain = masked(cfg.to_dict())
        run_logger.dict(plain, "config/resolved.yml")
        run_logger.params(_flatten(plain))
        try:
            yield run_logger
        except BaseException:
            mlflow.set_tag("shoprec.outcome", "failed")
            raise
        mlflow.set_tag("shoprec.outcome", "ok")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and len(dotted.split(".")) < 3:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = (
                yaml.safe_dump(value, default_flow_style=True).strip() if isinstance(value, (list, dict)) else value
            )
    return out


def git_tags(cfg: Config) -> dict[str, str]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cfg.project_root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"shoprec.git_commit": commit} if commit else {}


def ui_command(cfg: Config, port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command that serves this store on 127.0.0.1 only."""
    store = store_for(cfg)
    return [
        "mlflow",
        "ui",
        "--backend-store-uri",
        store.tracking_uri,
        "--registry-store-uri",
        store.registry_uri,
        "--default-artifact-root",
        store.artifact_root,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
