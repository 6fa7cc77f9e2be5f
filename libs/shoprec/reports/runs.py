"""MLflow runs and registered models as tables and plots, for notebooks.

What the MLflow UI shows, in a form a notebook can sort, filter and plot: the runs of one
stage side by side (tags and metrics as columns), the evaluation metric of every source
across ``evaluate`` runs, and the versions of a registered model with their aliases.
Everything reads the store the config points at (``tracking.configure``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

from shoprec.config import Config
from shoprec.errors import ShoprecError
from shoprec.registry import as_of_of

if TYPE_CHECKING:
    from mlflow import MlflowClient

TAGS = {
    "shoprec.as_of": "as_of",
    "shoprec.source": "source",
    "shoprec.git_commit": "git_commit",
    "shoprec.env": "env",
    "mlflow.parentRunId": "parent_run_id",
}


def _client(cfg: Config) -> MlflowClient:
    from mlflow import MlflowClient

    from shoprec.tracking import configure

    configure(cfg)
    return MlflowClient()


def _experiment_id(cfg: Config, client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        raise ShoprecError(
            f"no MLflow experiment {cfg.mlflow.experiment!r} in {client.tracking_uri}",
            hint="run shoprec pipeline (or any stage) first",
        )
    return experiment.experiment_id


def stage_runs(cfg: Config, stage: str, metrics: str | None = None, max_results: int = 200) -> pd.DataFrame:
    """One row per run of ``stage`` (newest first): run id, name, start time, status, the
    shoprec tags, and the metrics whose name matches the regular expression ``metrics``
    (all of them when None)."""
    client = _client(cfg)
    runs = client.search_runs(
        [_experiment_id(cfg, client)],
        filter_string=f"tags.`shoprec.stage` = '{stage}'",
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )
    pattern = re.compile(metrics) if metrics else None
    rows = []
    for run in runs:
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "started": datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC),
        }
        row.update({column: run.data.tags.get(tag) for tag, column in TAGS.items()})
        row.update({k: v for k, v in sorted(run.data.metrics.items()) if pattern is None or pattern.search(k)})
        rows.append(row)
    return pd.DataFrame(rows)


def evaluation_runs(
    cfg: Config, segment: str = "warm", variant: str = "repeat", metric: str = "ndcg_at_10"
) -> pd.DataFrame:
    """One row per ``evaluate`` run, one column per source: ``<source>.<segment>.<variant>.<metric>``."""
    suffix = f".{segment}.{variant}.{metric}"
    runs = stage_runs(cfg, "evaluate", metrics=re.escape(suffix) + "$")
    if runs.empty:
        return runs
    renamed = {c: c[: -len(suffix)] for c in runs.columns if c.endswith(suffix)}
    keep = ["run_id", "started", "as_of", "git_commit", *renamed]
    return runs[keep].rename(columns=renamed)


def plot_runs(table: pd.DataFrame, columns: list[str], path: str, title: str, label: str = "as_of") -> str:
    """A grouped bar chart of ``columns`` per run (oldest left), saved to ``path`` (PNG)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ordered = table.sort_values("started")
    fig = Figure(figsize=(max(6, 1.2 * len(ordered) * max(1, len(columns)) / 3), 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(ordered))
    width = 0.8 / max(1, len(columns))
    for i, column in enumerate(columns):
        ax.bar(x + i * width, ordered[column].astype(float).fillna(0.0), width, label=column)
    names = [f"{r[label]}\n{r['run_id'][:8]}" for _, r in ordered.iterrows()]
    ax.set_xticks(x + width * (len(columns) - 1) / 2, names, fontsize="small")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return path


def model_versions(cfg: Config, name: str) -> pd.DataFrame:
    """The versions of registered model ``name`` (newest first): aliases, validation metric,
    as_of, run, description and the promotion decision."""
    from mlflow.exceptions import MlflowException

    from shoprec.tracking import store_for

    client = _client(cfg)
    try:
        model = client.get_registered_model(name)
    except MlflowException as e:
        raise ShoprecError(
            f"no registered model {name!r} in {store_for(cfg).registry_uri}",
            hint="train it first: shoprec train-als / train-hybrid (or shoprec pipeline)",
        ) from e
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for v in client.search_model_versions(f"name = '{name}'"):
        tags = v.tags or {}
        rows.append(
            {
                "version": int(v.version),
                "aliases": ", ".join(sorted(aliases.get(str(v.version), []))),
                "val_ndcg_at_10": float(tags["val_ndcg_at_10"]) if "val_ndcg_at_10" in tags else None,
                "as_of": as_of_of(v),
                "run_id": v.run_id,
                "created": datetime.fromtimestamp(v.creation_timestamp / 1000, tz=UTC),
                "description": v.description,
                "promotion": tags.get("shoprec.promotion"),
            }
        )
    return pd.DataFrame(rows).sort_values("version", ascending=False, ignore_index=True)
