"""What every notebook under ``notebooks/`` starts with: parameters and a job context.

On Databricks a parameter is a widget (created on first use, so the notebook shows an input
box); anywhere else it is ``$SHOPREC_NB_<NAME>`` or the default, which is how the tests run
the notebooks top to bottom.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from shoprec import paths
from shoprec.config import load_config
from shoprec.stages.context import JobContext


def parameter(name: str, default: str, dbutils: Any = None) -> str:
    """A widget value on Databricks (pass the notebook's ``dbutils``), else
    ``$SHOPREC_NB_<NAME>``, else ``default``."""
    if dbutils is not None:
        dbutils.widgets.text(name, default)
        return dbutils.widgets.get(name)
    return os.environ.get(f"SHOPREC_NB_{name.upper()}", default)


def overrides(text: str) -> list[str]:
    """``"a.b=1; c.d=[2, 3]"`` -> ``["a.b=1", "c.d=[2, 3]"]`` (``--set`` values of the CLI)."""
    return [part.strip() for part in text.split(";") if part.strip()]


def open_context(env: str, data_root: str, sets: list[str] | None = None) -> JobContext:
    """Config (``conf/`` with the env overlay and ``sets``) and the session: the notebook's own
    Spark session when there is one (Databricks), else shoprec's factory."""
    return JobContext.create(load_config(env, sets or [], data_root=data_root))


def as_of_or_latest(text: str, available: list[date]) -> date | None:
    """``text`` as a date, or the latest of ``available`` when empty (None without any)."""
    if text:
        return date.fromisoformat(text)
    return available[-1] if available else None


def output_dir(data_root: str, name: str) -> str:
    """``<data_root>/_reports/<name>``, created: where a notebook's PNGs go."""
    path = paths.reports(data_root, name)
    os.makedirs(path, exist_ok=True)
    return path
