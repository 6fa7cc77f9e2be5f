"""The temporal split every model stage shares (../shared/docs/EVALUATION.md).

    ... history ...............................| validation |  as_of  | evaluation |
                                  validation_start         as_of        evaluation_end

History (everything strictly before ``as_of``) is all that features, models and
candidates may see. Its last ``validation_days`` are the validation window used for
tuning; tuning itself runs on ``split.for_tuning()``, a split whose cutoff is the start of
the validation window, so the same code path that serves ``as_of`` serves the search
without ever looking at the validation window's events.

Dates are UTC calendar days; a cutoff is midnight UTC at the start of that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import Config
from shoprec.errors import ShoprecError


class SplitError(ShoprecError):
    """The cutoff does not fit the data (no history, no evaluation window)."""


@dataclass(frozen=True)
class TemporalSplit:
    as_of: date
    validation_days: int
    evaluation_days: int

    @property
    def validation_start(self) -> date:
        return self.as_of - timedelta(days=self.validation_days)

    @property
    def evaluation_end(self) -> date:
        """First day after the evaluation window."""
        return self.as_of + timedelta(days=self.evaluation_days)

    @property
    def as_of_ts(self) -> datetime:
        return _midnight(self.as_of)

    def for_tuning(self) -> TemporalSplit:
        """The split used while tuning: cutoff at the validation start, truth = validation window."""
        return TemporalSplit(self.validation_start, self.validation_days, self.validation_days)

    # ---------------------------------------------------------------- windows
    def history(self, df: DataFrame, ts_col: str = C.EVENT_TS) -> DataFrame:
        """Rows strictly before as_of: the only rows training may read."""
        return df.filter(F.col(ts_col) < F.lit(self.as_of_ts))

    def validation(self, df: DataFrame, ts_col: str = C.EVENT_TS) -> DataFrame:
        return df.filter(
            (F.col(ts_col) >= F.lit(_midnight(self.validation_start))) & (F.col(ts_col) < F.lit(self.as_of_ts))
        )

    def evaluation(self, df: DataFrame, ts_col: str = C.EVENT_TS) -> DataFrame:
        return df.filter(
            (F.col(ts_col) >= F.lit(self.as_of_ts)) & (F.col(ts_col) < F.lit(_midnight(self.evaluation_end)))
        )

    def describe(self) -> dict[str, str]:
        return {
            "as_of": self.as_of.isoformat(),
            "validation_start": self.validation_start.isoformat(),
            "evaluation_end": self.evaluation_end.isoformat(),
        }


def _midnight(d: date) -> datetime:
    # Spark's session time zone is UTC (conf/base/spark.yml); a naive datetime literal
    # is read in it, so this is midnight UTC.
    return datetime(d.year, d.month, d.day)


def purchases(interactions: DataFrame) -> DataFrame:
    """What counts as a purchase for models and ground truth: a known customer buying a product."""
    return interactions.filter((F.col(C.EVENT_TYPE) == C.PURCHASE) & F.col(C.USER_ID).isNotNull() & F.col(C.IS_PRODUCT))


def resolve_split(cfg: Config, interactions: DataFrame, as_of: date | None = None) -> TemporalSplit:
    """The split for this run: ``--as-of`` wins over ``split.as_of``; "auto" reads the data.

    Fails with a clear error when the cutoff leaves no history or no evaluation window.
    """
    bounds = interactions.agg(F.min(C.EVENT_TS).alias("first"), F.max(C.EVENT_TS).alias("last")).first()
    assert bounds is not None  # a global aggregate: one row
    first, last = bounds["first"], bounds["last"]
    if first is None:
        raise SplitError("silver.interactions is empty", hint="run shoprec ingest first")
    if as_of is None:
        if cfg.split.as_of == "auto":
            as_of = last.date() - timedelta(days=cfg.split.evaluation_days - 1)
        else:
            try:
                as_of = date.fromisoformat(cfg.split.as_of)
            except ValueError as exc:
                raise SplitError(f"split.as_of {cfg.split.as_of!r} is neither a date (YYYY-MM-DD) nor auto") from exc
    split = TemporalSplit(as_of, cfg.split.validation_days, cfg.split.evaluation_days)
    if _midnight(split.validation_start) <= first:
        raise SplitError(
            f"as_of {as_of} leaves no history before the validation window "
            f"(data starts {first:%Y-%m-%d}, validation starts {split.validation_start})",
            hint="pass a later --as-of or set split.validation_days smaller",
        )
    # A cutoff after the last event is how production runs (recommend for tomorrow);
    # only ``shoprec evaluate`` needs events after it, and says so itself.
    return split
