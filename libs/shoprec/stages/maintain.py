"""``shoprec maintain``: table properties, OPTIMIZE (ZORDER BY the lookup key) and VACUUM of
every Delta table under the data root, with file counts before and after in MLflow."""

from __future__ import annotations

from shoprec.stages.context import JobContext
from shoprec.tables.maintenance import TableMaintenance, maintain_tables
from shoprec.tracking import job_run


def maintain_stage(ctx: JobContext) -> list[TableMaintenance]:
    """``shoprec maintain``: table properties, OPTIMIZE (ZORDER BY the lookup key), VACUUM."""
    with job_run(ctx.cfg, "maintain", tags={"shoprec.delta_backend": ctx.tables.backend.name}) as run:
        done = maintain_tables(ctx.tables, ctx.cfg.maintain)
        for m in done:
            run.counts(
                {"files_before": m.files_before, "files_after": m.files_after, "files_vacuumed": m.files_vacuumed},
                prefix=f"{m.table}.",
            )
        run.dict({m.table: vars(m) for m in done}, "maintain/tables.json")
    ctx.say(
        f"maintained {len(done)} tables under {ctx.tables.root} ({ctx.tables.backend.name} Delta backend; "
        f"vacuum keeps {ctx.cfg.maintain.vacuum_retention_hours} h of versions)"
    )
    ctx.say(f"  {'table':<34}{'files before':>13}{'after':>8}{'vacuumed':>10}  zorder / cdf")
    for m in done:
        extra = ", ".join(
            [
                *(["zorder " + "+".join(m.zorder_by)] if m.zorder_by else []),
                *(["change data feed"] if m.change_data_feed else []),
            ]
        )
        ctx.say(f"  {m.table:<34}{m.files_before:>13}{m.files_after:>8}{m.files_vacuumed:>10}  {extra}")
    return done
