"""What every stage runs with: the job context, the run's temporal split, the stage's MLflow run.

The CLI, the ``jobs/*.py`` scripts and the notebooks build one :class:`JobContext` and call
the ``<stage>_stage`` functions of the stage modules, so ``shoprec ingest`` and
``spark-submit jobs/ingest.py`` do exactly the same thing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Protocol, TextIO, TypeVar

from pyspark.sql import DataFrame, SparkSession

from shoprec import columns as C
from shoprec.config import Config
from shoprec.errors import ShoprecError
from shoprec.split import TemporalSplit
from shoprec.tables import Tables, open_tables
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Everything a stage needs; built once per process."""

    cfg: Config
    spark: SparkSession
    tables: Tables
    out: TextIO | None = None  # None: sys.stdout as it is when printing

    @classmethod
    def create(cls, cfg: Config, out: TextIO | None = None) -> JobContext:
        from shoprec.spark import get_spark

        spark = get_spark(cfg.spark)
        # sys.stdout looked up now, not at import: it may have been replaced since (pytest, notebooks).
        return cls(cfg, spark, open_tables(spark, cfg.data_root, cfg.storage.delta_backend), out or sys.stdout)

    def say(self, text: str = "") -> None:
        print(text, file=self.out or sys.stdout, flush=True)


def resolve_run_split(ctx: JobContext, as_of: date | None = None) -> TemporalSplit:
    """The temporal split of this run (``--as-of`` or ``split.as_of``), checked against silver."""
    from shoprec.split import resolve_split

    if not ctx.tables.exists(C.SILVER_INTERACTIONS):
        raise ShoprecError(
            f"{C.SILVER_INTERACTIONS} does not exist under {ctx.tables.root}",
            hint="run shoprec ingest first (or shoprec pipeline)",
        )
    return resolve_split(ctx.cfg, ctx.tables.read(C.SILVER_INTERACTIONS), as_of)


def required_as_of(tables: Tables, name: str, as_of: date, writer: str = "features") -> DataFrame:
    """One ``as_of`` of a table the stage cannot run without; a ShoprecError naming the stage
    that writes it (``writer``) when the table or the partition is missing."""
    hint = f"run shoprec {writer} --as-of {as_of} first"
    if not tables.exists(name):
        raise ShoprecError(f"{name} does not exist under {tables.root}", hint=hint)
    df = tables.read_as_of(name, as_of)
    if df.limit(1).count() == 0:
        raise ShoprecError(f"{name} has no rows for as_of {as_of}", hint=hint)
    return df


def optional_as_of(tables: Tables, name: str, as_of: date) -> DataFrame | None:
    """One ``as_of`` of a table, or None when the table or that partition is missing."""
    if not tables.exists(name):
        return None
    df = tables.read_as_of(name, as_of)
    return df if df.limit(1).count() else None


class StageReport(Protocol):
    def summary_lines(self) -> list[str]: ...


R = TypeVar("R", bound=StageReport)
StageRunner = Callable[[SparkSession, Config, Tables, TemporalSplit, RunLogger], R]


def model_stage(ctx: JobContext, stage: str, split: TemporalSplit, runner: StageRunner[R]) -> R:
    """Open the stage's MLflow run (tagged with the cutoff), run it, print its summary."""
    from shoprec.tracking import job_run

    with job_run(ctx.cfg, stage, tags={"shoprec.as_of": split.as_of.isoformat()}) as run:
        run.params({f"resolved.{k}": v for k, v in split.describe().items()})
        report = runner(ctx.spark, ctx.cfg, ctx.tables, split, run)
    for line in report.summary_lines():
        ctx.say(line)
    return report
