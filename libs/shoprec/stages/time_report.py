"""``shoprec time-report``: seasonal profiles and the example items' place in every as_of
partition of gold.recommendations (plots + JSON, in MLflow and on disk)."""

from __future__ import annotations

from shoprec import columns as C
from shoprec import paths
from shoprec.errors import ShoprecError
from shoprec.reports.seasonality import TimeReport, build
from shoprec.stages.context import JobContext
from shoprec.tracking import job_run


def time_report_stage(ctx: JobContext, items: list[str] | None = None, min_lines: int = 100) -> TimeReport:
    """``shoprec time-report``: seasonal profiles and the example items' place in every
    as_of partition of gold.recommendations (plots + JSON, in MLflow and on disk)."""
    if not ctx.tables.exists(C.GOLD_RECOMMENDATIONS):
        raise ShoprecError(
            f"{C.GOLD_RECOMMENDATIONS} does not exist under {ctx.tables.root}",
            hint="run shoprec pipeline --as-of <date> for two or more dates first",
        )
    out_dir = paths.reports(ctx.cfg.data_root, "time")
    with job_run(ctx.cfg, "time-report") as run:
        report = build(
            ctx.tables.read(C.SILVER_INTERACTIONS),
            ctx.tables.read(C.GOLD_RECOMMENDATIONS),
            ctx.tables.read(C.SILVER_ITEMS).select(C.ITEM_ID, C.DESCRIPTION),
            out_dir,
            ctx.cfg.recommend.rerank.season_days,
            min_lines=min_lines,
            items=items,
        )
        for path in report.files:
            run.artifact(path, "time_report")
        run.metrics({f"seasonal_share.{a}": v for a, v in report.seasonal_share.items()})
    for line in report.summary_lines():
        ctx.say(line)
    return report
