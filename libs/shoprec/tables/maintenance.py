"""Table maintenance: properties, OPTIMIZE (ZORDER BY the lookup key) and VACUUM.

Plain functions over ``Tables``; ``shoprec maintain`` opens the MLflow run around them.
Per table, in this order:

1. properties: log retention, deleted-file retention (= the vacuum window), checkpoint
   interval, and Change Data Feed on the tables downstream readers follow;
2. OPTIMIZE: small files compacted into few (clustered by ``zorder_by`` when configured);
3. VACUUM with ``vacuum_retention_hours``: only files that no version committed inside
   that window needs are deleted, so time travel inside it keeps working.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shoprec.config import MaintainConfig
from shoprec.errors import ConfigError
from shoprec.tables.facade import Tables

log = logging.getLogger(__name__)

CDF_PROPERTY = "delta.enableChangeDataFeed"


@dataclass(frozen=True)
class TableMaintenance:
    """What maintenance did to one table."""

    table: str
    files_before: int
    files_after: int
    files_vacuumed: int
    zorder_by: tuple[str, ...]
    change_data_feed: bool
    seconds: float


def check_maintain_config(cfg: MaintainConfig) -> None:
    """Refuse settings that would break time travel inside the vacuum window."""
    if cfg.vacuum_retention_hours < 0:
        raise ConfigError("maintain.vacuum_retention_hours must be 0 or more")
    if cfg.checkpoint_interval < 1:
        raise ConfigError("maintain.checkpoint_interval must be at least 1")
    if cfg.log_retention_days * 24 < cfg.vacuum_retention_hours:
        raise ConfigError(
            f"maintain.log_retention_days ({cfg.log_retention_days} days) is shorter than "
            f"maintain.vacuum_retention_hours ({cfg.vacuum_retention_hours} h)",
            hint="the log must keep at least the commits of the vacuum window, or time travel inside it breaks",
        )


def table_properties(cfg: MaintainConfig, name: str) -> dict[str, str]:
    """The Delta properties maintenance sets on ``name``."""
    props = {
        "delta.logRetentionDuration": f"interval {cfg.log_retention_days} days",
        "delta.deletedFileRetentionDuration": f"interval {cfg.vacuum_retention_hours} hours",
        "delta.checkpointInterval": str(cfg.checkpoint_interval),
    }
    if name in cfg.change_data_feed:
        props[CDF_PROPERTY] = "true"
    return props


def maintain_tables(tables: Tables, cfg: MaintainConfig) -> list[TableMaintenance]:
    """Maintain every configured table that exists (all tables under the root by default)."""
    check_maintain_config(cfg)
    names = list(cfg.tables) or tables.names()
    return [maintain_table(tables, cfg, name) for name in names if tables.exists(name)]


def maintain_table(tables: Tables, cfg: MaintainConfig, name: str) -> TableMaintenance:
    t0 = time.perf_counter()
    before = tables.file_count(name)
    tables.set_properties(name, table_properties(cfg, name))
    zorder = tuple(cfg.zorder_by.get(name, ()))
    tables.optimize(name, zorder)
    vacuumed = tables.vacuum(name, cfg.vacuum_retention_hours)
    after = tables.file_count(name)
    log.info("%s: %d -> %d files, %d vacuumed", name, before, after, vacuumed)
    return TableMaintenance(
        name,
        before,
        after,
        vacuumed,
        zorder,
        tables.properties(name).get(CDF_PROPERTY) == "true",
        time.perf_counter() - t0,
    )
