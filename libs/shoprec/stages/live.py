"""Live user state: after a stream micro-batch has landed new events in silver, the users it
touched get a fresh list in gold.live_recommendations, scored the way ``recommend`` scores.

    touched users ─► those with a purchase in their silver history (the others: skipped, the
                     API serves them their batch row or their country's cold-start list)
    as_of = the newest gold.recommendations partition; its gold features, ALS item factors,
    bundle rules, time profiles; the hybrid version that serves it (``models.resolve``); the
    weights its recommend run chose (MLflow params; config values when there is no run)
        ─► confidence of their WHOLE silver history (new events included), as gold.confidence
           is computed, on the scale of as_of ─► ALS user vectors folded in against the fixed
           item factors (``als.foldin``) ─► their ALS top-N
        ─► pool, scores, fusion, context, rebuy, diversity, reasons: ``recommend.ranked`` on
           the history through the newest event (a split whose cutoff is the day after it)
        ─► stamped as gold.recommendations + ``events_through`` ─► the touched users' rows of
           gold.live_recommendations replaced in one commit, keyed by the stream's
           (name, batch id): a batch that reruns after a crash commits nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.als import ids
from shoprec.als.foldin import FoldInParams, fold_in
from shoprec.candidates import sources as S
from shoprec.config import Config
from shoprec.features.confidence import known_product_events, pair_confidence
from shoprec.hybrid import serving
from shoprec.ranking import rerank
from shoprec.split import TemporalSplit, purchases
from shoprec.stages.context import JobContext
from shoprec.stages.recommend import (
    RECOMMENDATIONS_SCHEMA,
    Als,
    Globals,
    Inputs,
    Tuned,
    as_of_inputs,
    bundle_rules,
    bundle_source,
    configured,
    explained,
    factors,
    keep_in,
    pool_globals,
    ranked,
    serving_stamp,
    serving_terms,
    stamped,
)
from shoprec.tables import Tables, Txn

log = logging.getLogger(__name__)

WRITES = (C.GOLD_LIVE_RECOMMENDATIONS,)
# gold.live_recommendations: gold.recommendations' columns plus the newest event a list includes.
LIVE_SCHEMA = T.StructType([*RECOMMENDATIONS_SCHEMA.fields, T.StructField(C.EVENTS_THROUGH, T.TimestampType())])
TXN_PREFIX = "shoprec.live."
# Persists a DataFrame and remembers it, to unpersist when the refresh ends.
_Keep = Callable[[DataFrame], DataFrame]


@dataclass
class LiveReport:
    events_through: datetime
    as_of: str | None = None
    touched: int = 0  # distinct users the caller named
    users: int = 0  # refreshed: touched users with a purchase
    cold: int = 0  # touched users without one: left to the batch / cold-start lists
    folded: int = 0  # users given a folded-in ALS vector
    rows: int = 0
    table_version: int | None = None
    skipped: bool = False  # the batch's txn was committed before: nothing recomputed
    model: str = ""
    weights: tuple[float, float, float] | None = None  # fusion w, season weight, time weight
    weights_note: str = ""
    als_note: str = ""
    note: str = ""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        head = f"live refresh (events through {self.events_through:%Y-%m-%d %H:%M:%S}) in {self.seconds:.1f} s"
        if self.stage_seconds:
            head += " (" + ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items()) + ")"
        lines = [head]
        if self.note:
            lines.append(f"  {self.note}")
        if self.as_of is not None and not self.skipped:
            lines += [
                f"  as_of {self.as_of}; scoring model: {self.model}",
                f"  weights: {self.weights_note}",
                f"  ALS: {self.als_note}",
                f"  {self.touched:,} users touched: {self.users:,} refreshed ({self.folded:,} folded in), "
                f"{self.cold:,} without a purchase skipped",
            ]
        lines.append(f"  {C.GOLD_LIVE_RECOMMENDATIONS} version {self.table_version}: {self.rows:,} rows written")
        return lines

    def metrics(self) -> dict[str, float]:
        """Numbers for the stream's run (``RunLogger.step_metrics`` with the batch id)."""
        return {
            "live.users": self.users,
            "live.cold": self.cold,
            "live.rows": self.rows,
            "live.seconds": self.seconds,
            **{f"live.seconds.{k}": v for k, v in self.stage_seconds.items()},
        }


def live_txn(txn: tuple[str, int] | None) -> Txn | None:
    """The commit key of a stream's batch: ``Txn("shoprec.live.<stream>", batch id)``."""
    return None if txn is None else Txn(TXN_PREFIX + txn[0], int(txn[1]))


def live_split(split: TemporalSplit, events_through: datetime) -> TemporalSplit:
    """A split like ``split`` whose history runs through ``events_through``'s day (UTC): the
    cutoff is the midnight after it, never before ``split.as_of``."""
    day = _utc(events_through).date() + timedelta(days=1)
    return TemporalSplit(max(split.as_of, day), split.validation_days, split.evaluation_days)


def newest_as_of(tables: Tables) -> date | None:
    """The newest as_of partition of gold.recommendations (None: no batch lists yet)."""
    if not tables.exists(C.GOLD_RECOMMENDATIONS):
        return None
    row = tables.read(C.GOLD_RECOMMENDATIONS).agg(F.max(C.AS_OF)).first()
    return None if row is None else row[0]


# ------------------------------------------------------------------------------ what a refresh reuses
@dataclass
class Shared:
    """What every refresh against one set of batch lists computes alike, from the tables of
    their as_of and from EVERY user's history before it: recommend's inputs (items, content
    neighbours, the shipped hybrid), the weights its run chose, the stored ALS factors, the
    context terms, the country lists, item similarity and consumables (``recommend.Globals``).
    Those all-user parts are as of the batch lists, not through the newest event: a purchase
    moves its buyer's list at once, and the shop's statistics with the next ``recommend``."""

    key: tuple[date, int]  # (as_of, gold.recommendations version): a recommend rerun moves it
    split: TemporalSplit
    inputs: Inputs
    tuned: Tuned
    als_version: str | None
    stored: Als
    terms: rerank.ContextTerms
    globals: Globals
    rules: tuple[DataFrame | None, str]  # gold.bundles' rules of as_of (``recommend.bundle_rules``)
    frames: list[DataFrame] = field(default_factory=list)  # persisted here: unpersisted by close

    def close(self) -> None:
        for df in self.frames:
            df.unpersist()
        self.frames.clear()


@dataclass
class LiveState:
    """A stream's :class:`Shared`, rebuilt when the batch lists it was built for change."""

    shared: Shared | None = None
    builds: int = 0

    def for_as_of(self, ctx: JobContext, as_of: date) -> Shared:
        key = (as_of, ctx.tables.version(C.GOLD_RECOMMENDATIONS) or 0)
        if self.shared is None or self.shared.key != key:
            self.close()
            self.shared = _shared(ctx, key)
            self.builds += 1
        return self.shared

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()
            self.shared = None


def _shared(ctx: JobContext, key: tuple[date, int]) -> Shared:
    cfg, tables = ctx.cfg, ctx.tables
    split = TemporalSplit(key[0], cfg.split.validation_days, cfg.split.evaluation_days)
    frames: list[DataFrame] = []
    keep = keep_in(frames)

    interactions = tables.read(C.SILVER_INTERACTIONS)
    inputs, tuned, als_version = _inputs(ctx, interactions, split, keep)
    # Every batch's plan reads these: held in memory, not re-read (and their logs replayed) each time.
    inputs = dataclasses.replace(inputs, user_features=keep(inputs.user_features))
    stored = factors(tables, C.GOLD_ALS_USER_FACTORS, C.GOLD_ALS_ITEM_FACTORS, split)
    if stored.item_factors is not None:
        stored = Als(None, stored.user_factors, keep(stored.item_factors))
    terms = serving_terms(tables, purchases(split.history(interactions)), split, cfg.recommend.rerank)
    terms = dataclasses.replace(terms, items=keep(terms.items), users=keep(terms.users))
    rules, why = bundle_rules(tables, split)
    shop = pool_globals(inputs, split)
    frames += shop.cached()
    return Shared(
        key, split, inputs, tuned, als_version, stored, terms, shop, (keep(rules) if rules else None, why), frames
    )


# ------------------------------------------------------------------------------ the stage
def refresh_live(
    ctx: JobContext,
    users: list[str] | DataFrame,
    events_through: datetime,
    txn: tuple[str, int] | None = None,
    state: LiveState | None = None,
) -> LiveReport:
    """Fresh lists in gold.live_recommendations for ``users`` (ids, or a DataFrame with
    ``user_id``), built from their silver history through ``events_through`` (the newest event
    the micro-batch landed; naive datetimes are UTC) and stamped with it.

    ``txn``: the caller's ``(stream name, batch id)``; a batch whose commit is in the table
    already returns at once (``skipped``), so a rerun after a crash writes nothing twice.
    ``state``: what earlier refreshes computed for the same batch lists (the stream keeps one
    for its whole run); without it everything is computed here and dropped after.
    """
    from shoprec.tracking import configure

    started = time.perf_counter()
    cfg, tables = ctx.cfg, ctx.tables
    report = LiveReport(events_through)
    key = live_txn(txn)
    if key is not None and tables.applied(C.GOLD_LIVE_RECOMMENDATIONS, key):
        report.skipped, report.table_version = True, tables.version(C.GOLD_LIVE_RECOMMENDATIONS)
        report.note = f"{key.app_id} batch {key.version} was refreshed before: nothing to do"
        return _done(report, started)
    as_of = newest_as_of(tables)
    if as_of is None:
        report.note = f"no {C.GOLD_RECOMMENDATIONS} yet: nothing refreshed (run shoprec recommend)"
        return _done(report, started)
    report.as_of = as_of.isoformat()
    configure(cfg)
    own = state is None
    state = state or LiveState()
    steps = report.stage_seconds
    cached: list[DataFrame] = []
    keep = keep_in(cached)

    try:
        t0 = time.perf_counter()
        shared = state.for_as_of(ctx, as_of)
        split = shared.split
        live = live_split(split, events_through)
        model = shared.inputs.model
        tuned = shared.tuned
        report.weights = (tuned.weight, tuned.season_weight, tuned.time_weight)
        report.weights_note = (
            f"{tuned.note}; season {tuned.season_weight:g}, time {tuned.time_weight:g} {tuned.context_note}"
        )
        report.model = model.describe() if model else "none: ALS scores only"
        steps["inputs"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        touched = keep(_users_frame(ctx.spark, users))
        # Their own events only: what every user's history gives is in ``shared``.
        mine = keep(tables.read(C.SILVER_INTERACTIONS).join(touched, on=C.USER_ID, how="left_semi"))
        buyers = keep(purchases(live.history(mine)).select(C.USER_ID).distinct())
        report.touched, report.users = touched.count(), buyers.count()
        report.cold = report.touched - report.users
        steps["users"] = time.perf_counter() - t0
        if report.users == 0:
            report.note = "no touched user has a purchase: nothing refreshed"
            report.table_version = tables.version(C.GOLD_LIVE_RECOMMENDATIONS)
            return _done(report, started)

        t0 = time.perf_counter()
        als, report.folded, report.als_note = _folded(cfg, shared.stored, mine, buyers, split, live, keep)
        steps["fold_in"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        inputs = dataclasses.replace(shared.inputs, interactions=mine)
        bundles, _ = bundle_source(tables, cfg, mine, split, baskets_before=live.as_of, rules=shared.rules)
        bundles = keep(bundles) if bundles is not None else None
        personal, _ = ranked(inputs, buyers, live, als, tuned, shared.terms, bundles, shared.globals)
        name, version = serving_stamp(cfg, model, tuned.weight, shared.als_version)
        rows = keep(
            stamped(explained(personal, inputs.items), name, version, split).withColumn(
                C.EVENTS_THROUGH, F.lit(_utc(events_through)).cast("timestamp")
            )
        )
        report.rows = rows.count()
        steps["score"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        result = tables.replace_keys(rows, C.GOLD_LIVE_RECOMMENDATIONS, C.USER_ID, buyers, txn=key)
        report.table_version = (
            result.version if result.version is not None else tables.version(C.GOLD_LIVE_RECOMMENDATIONS)
        )
        steps["write"] = time.perf_counter() - t0
    finally:
        for df in cached:
            df.unpersist()
        if own:
            state.close()
    return _done(report, started)


def _done(report: LiveReport, started: float) -> LiveReport:
    report.seconds = time.perf_counter() - started
    log.info("%s", "; ".join(report.summary_lines()))
    return report


def _utc(ts: datetime) -> datetime:
    """A naive UTC datetime (the session's zone is UTC): aware ones converted, naive ones kept."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def _users_frame(spark: SparkSession, users: list[str] | DataFrame) -> DataFrame:
    if isinstance(users, DataFrame):
        return users.select(F.col(C.USER_ID).cast("string")).where(F.col(C.USER_ID).isNotNull()).distinct()
    return spark.createDataFrame([(u,) for u in sorted({str(u) for u in users})], f"{C.USER_ID} string")


# ------------------------------------------------------------------------------ what as_of serves
def _inputs(
    ctx: JobContext, interactions: DataFrame, split: TemporalSplit, keep: _Keep
) -> tuple[Inputs, Tuned, str | None]:
    """recommend's inputs of as_of, the weights its run chose and the ALS version it stamped."""
    inputs = as_of_inputs(ctx.spark, ctx.cfg, ctx.tables, split, keep)
    inputs = dataclasses.replace(inputs, interactions=interactions)
    model = inputs.model
    tuned, als_version = recommend_weights(ctx.cfg, split.as_of, model)
    return inputs, tuned, als_version


def recommend_weights(cfg: Config, as_of: date, model: serving.ServingModel | None) -> tuple[Tuned, str | None]:
    """(the weights the newest successful recommend run for ``as_of`` logged, the ALS version
    it stamped); the config's (``recommend.configured``) when MLflow holds no such run."""
    params = _newest_run_params(cfg, "recommend", as_of)
    if params is None:
        tuned = configured(cfg, model)
        tuned.note = f"no recommend run for as_of {as_of} in MLflow: {tuned.note}"
        tuned.context_note = f"no recommend run for as_of {as_of} in MLflow: {tuned.context_note}"
        return tuned, None
    run_id, p = params
    hybrid = p.get("hybrid.version", "none")
    served = model.version if model else "none"
    drift = f"; it scored with hybrid v{hybrid}, this refresh with v{served}" if hybrid != served else ""
    weight = float(p.get("fusion.weight", configured(cfg, model).weight))
    if model is None and weight < 1.0:
        weight, drift = 1.0, drift + " (no hybrid now: ALS only)"
    tuned = Tuned(
        weight,
        f"w = {weight:.2f} from recommend run {run_id[:8]} ({p.get('fusion.weight_note', '?')}){drift}",
        float(p.get("rerank.season_weight.chosen", 0.0)),
        float(p.get("rerank.time_weight.chosen", 0.0)),
        f"from recommend run {run_id[:8]}",
    )
    als_version = p.get("als.version")
    return tuned, None if als_version in (None, "none") else als_version


def als_params(cfg: Config, as_of: date) -> tuple[FoldInParams, str]:
    """The regParam and alpha the stored factors of ``as_of`` were trained with: the newest
    successful train-als run's chosen ones (``best.*``), else the config's."""
    params = _newest_run_params(cfg, "train-als", as_of)
    if params is None or "best.reg_param" not in params[1]:
        return FoldInParams(cfg.als.reg_param, cfg.als.alpha), (
            f"no train-als run for as_of {as_of} in MLflow: config's reg_param {cfg.als.reg_param:g}, "
            f"alpha {cfg.als.alpha:g}"
        )
    run_id, p = params
    chosen = FoldInParams(float(p["best.reg_param"]), float(p["best.alpha"]))
    return chosen, f"reg_param {chosen.reg_param:g}, alpha {chosen.alpha:g} of train-als run {run_id[:8]}"


def _newest_run_params(cfg: Config, stage: str, as_of: date) -> tuple[str, Mapping[str, str]] | None:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.`shoprec.stage` = '{stage}' AND tags.`shoprec.as_of` = '{as_of.isoformat()}' "
            "AND tags.`shoprec.outcome` = 'ok'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return (runs[0].info.run_id, runs[0].data.params) if runs else None


# ------------------------------------------------------------------------------ ALS, folded in
def folded_vectors(
    cfg: Config,
    interactions: DataFrame,
    users: DataFrame,
    split: TemporalSplit,
    live: TemporalSplit,
    item_factors: DataFrame,
) -> tuple[DataFrame, str]:
    """(``user_id, factors, n_items`` of ``users`` folded in against ``item_factors``, the
    parameters used): confidence as gold.confidence computes it (``pair_confidence``), from
    the whole history through ``live``, ages measured from ``split.as_of`` (the scale the item
    factors were trained on); regParam and alpha of the train-als run (``als_params``)."""
    params, note = als_params(cfg, split.as_of)
    events = known_product_events(live.history(interactions)).join(users, on=C.USER_ID, how="left_semi")
    confidence = pair_confidence(events, split, cfg.features).select(C.USER_ID, C.ITEM_ID, C.CONFIDENCE)
    return fold_in(confidence, item_factors, params), note


def _folded(
    cfg: Config,
    stored: Als,
    interactions: DataFrame,
    buyers: DataFrame,
    split: TemporalSplit,
    live: TemporalSplit,
    keep: _Keep,
) -> tuple[Als, int, str]:
    """(the ALS part of the pool with the buyers' folded-in vectors and their top-N, users
    folded, a note). The confidence is gold.confidence's, of the whole history through
    ``live``, with ages measured from as_of: the scale the item factors were trained on."""
    if not stored.known:
        return Als(), 0, f"no {C.GOLD_ALS_USER_FACTORS} for as_of {split.as_of}: no ALS source or scores"
    assert stored.item_factors is not None  # known: both written
    vectors, note = folded_vectors(cfg, interactions, buyers, split, live, stored.item_factors)
    folded = keep(vectors)
    # An index per folded user for the blocked top-N (new users have none in gold.user_id_map).
    numbered = keep(
        folded.join(ids.new_indices(folded, None, C.USER_ID, C.USER_IDX), on=C.USER_ID, how="inner").select(
            C.USER_ID, C.USER_IDX, C.FACTORS
        )
    )
    n = numbered.count()
    top_n = keep(
        S.als_candidates(numbered, stored.item_factors, buyers, cfg.recommend.pool.als, cfg.candidates.block_mb)
    )
    return Als(top_n, numbered, stored.item_factors), n, f"{n:,} users folded in ({note})"
