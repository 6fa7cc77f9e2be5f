"""``shoprec evaluate``: the baselines, then every candidate source scored on the evaluation window.

    silver.interactions ─► history purchases ─► 5 baselines ─► gold.candidates (as_of, source)
                       └─► truth of the evaluation window ─┐
    gold.candidates of as_of (baselines, als, ...) ────────┤
    gold.recommendations, gold.bundle_recommendations ─────┴─► metrics per source x segment x variant
                                                                 ├─► gold.evaluation (as_of partition)
                                                                 └─► MLflow: metrics, table (CSV, HTML), plot

The baselines (EVALUATION.md "Baselines, always in the same run"): ``repeat`` (buy it again,
its half-life chosen on the validation window unless ``candidates.repeat_half_life_days``
fixes it), ``popular``, ``popular_country``, ``popular_hour`` and ``cooccurrence``.

Segments (EVALUATION.md): ``all``, ``warm`` and ``cold`` users, and ``new_items`` (the truth
restricted to items first sold inside the window). Variants of the truth: ``repeat`` (every
item bought in the window, repeats of earlier purchases included) and ``new`` (items the user
bought before as_of are dropped from the truth and from the list, the list is re-ranked,
then cut at K). Users to serve: warm users and the cold users of the window; users are
evaluated when they have truth, a user without a list from a source scores 0 for it.

All sources, segments and variants are scored in one Spark pass per metric family: the
metric functions group by (source, variant, truth scope), and per-user rows are expanded to
their segments before averaging, so a user's numbers are computed once.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from datetime import time as dtime

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shoprec import columns as C
from shoprec.candidates import baselines
from shoprec.candidates.sources import popular_candidates
from shoprec.config import CandidatesConfig, Config, EvaluateConfig
from shoprec.errors import ShoprecError
from shoprec.evaluation import metrics as M
from shoprec.evaluation.truth import ground_truth, new_items, user_segments
from shoprec.split import TemporalSplit, purchases
from shoprec.stages.candidate_store import read_candidates, write_candidates
from shoprec.stages.context import (
    JobContext,
    model_stage,
    optional_as_of,
    resolve_run_split,
)
from shoprec.tables import Tables
from shoprec.tracking import RunLogger

log = logging.getLogger(__name__)

SEGMENTS = (C.SEGMENT_ALL, C.SEGMENT_WARM, C.SEGMENT_COLD, C.SEGMENT_NEW_ITEMS)
VARIANTS = (C.VARIANT_REPEAT, C.VARIANT_NEW)
# Which items a per-user row was scored on: all of them, or the new items only (segment new_items).
_SCOPE = "truth_scope"
_BY = (C.CANDIDATE_SOURCE, C.VARIANT, _SCOPE)
_GROUP = (C.CANDIDATE_SOURCE, C.SEGMENT, C.VARIANT)
WRITES = (C.GOLD_CANDIDATES, C.GOLD_EVALUATION)

# In the tables' column order: buy it again first, the strongest simple baseline in retail.
BASELINES = {
    C.SRC_REPEAT: baselines.repeat,
    C.SRC_POPULAR: baselines.popular_global,
    C.SRC_POPULAR_COUNTRY: baselines.popular_by_country,
    C.SRC_POPULAR_HOUR: baselines.popular_by_hour,
    C.SRC_COOCCURRENCE: baselines.cooccurrence,
}

EVALUATION_SCHEMA = T.StructType(
    [
        T.StructField(C.AS_OF, T.DateType()),
        T.StructField(C.CANDIDATE_SOURCE, T.StringType()),
        T.StructField(C.SEGMENT, T.StringType()),
        T.StructField(C.VARIANT, T.StringType()),
        T.StructField(C.METRIC, T.StringType()),
        T.StructField(C.K, T.IntegerType()),  # null for metrics without a cutoff (mrr, auc)
        T.StructField(C.VALUE, T.DoubleType()),
        T.StructField(C.N_USERS, T.LongType()),
    ]
)

_MLFLOW_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


@dataclass(frozen=True)
class MetricRow:
    """One number of gold.evaluation."""

    source: str
    segment: str
    variant: str
    metric: str
    k: int | None
    value: float
    n_users: int

    @property
    def mlflow_name(self) -> str:
        """``<source>.<segment>.<variant>.<metric>[_at_<k>]``, e.g. ``als.warm.repeat.ndcg_at_10``."""
        name = f"{self.source}.{self.segment}.{self.variant}.{M.metric_column(self.metric, self.k)}"
        return _MLFLOW_UNSAFE.sub("_", name)


@dataclass
class EvaluationReport:
    """What ``shoprec evaluate`` measured; ``rows`` are the rows written to gold.evaluation."""

    as_of: date
    evaluation_end: date
    ks: tuple[int, ...]
    rows: list[MetricRow]
    sources: list[str]
    segment_users: dict[str, int]
    notes: list[str] = field(default_factory=list)
    table_version: int | None = None
    candidate_versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    repeat_half_life_days: float | None = None  # the repeat baseline's half-life
    repeat_search: baselines.HalfLifeSearch | None = None  # None: fixed by config

    def value(self, source: str, segment: str, variant: str, metric: str, k: int | None = None) -> float | None:
        """One number, or None when it was not computed."""
        for r in self.rows:
            if (r.source, r.segment, r.variant, r.metric, r.k) == (source, segment, variant, metric, k):
                return r.value
        return None

    def summary_lines(self) -> list[str]:
        """A readable table per segment and truth variant: metric@K rows, one column per source."""
        lines = [
            f"evaluate (as_of {self.as_of}, window {self.as_of} .. {self.evaluation_end} exclusive) "
            f"finished in {self.seconds:.1f} s",
            f"  sources: {', '.join(self.sources) or 'none'}",
            "  users evaluated (repeat truth): " + ", ".join(f"{s} {self.segment_users.get(s, 0):,}" for s in SEGMENTS),
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if self.repeat_search is not None:
            lines += self.repeat_search.lines()
        elif self.repeat_half_life_days is not None:
            lines.append(f"  repeat half-life {self.repeat_half_life_days:g} days (candidates.repeat_half_life_days)")
        lines.append(
            f"  gold.evaluation version {self.table_version}: {len(self.rows):,} rows; MLflow metrics are named "
            "<source>.<segment>.<variant>.<metric>_at_<K>"
        )
        values = {(r.source, r.segment, r.variant, r.metric, r.k): r for r in self.rows}
        for segment in SEGMENTS:
            for variant in VARIANTS:
                if segment == C.SEGMENT_COLD and variant == C.VARIANT_NEW:
                    continue  # cold users bought nothing before as_of: identical to repeat
                lines += self._block(values, segment, variant)
        return lines

    def _block(self, values: dict, segment: str, variant: str) -> list[str]:
        present = [
            (m, k)
            for (m, k) in _display_metrics(self.ks)
            if any((s, segment, variant, m, k) in values for s in self.sources)
        ]
        if not present:
            return []
        n_users = max((r.n_users for key, r in values.items() if key[1:4] == (segment, variant, "ndcg")), default=0)
        width = max([10, *(len(s) + 2 for s in self.sources)])
        lines = [
            "",
            f"  {_SEGMENT_TITLES[segment]}, {_VARIANT_TITLES[variant]} ({n_users:,} users)",
            "    " + f"{'metric':<18}" + "".join(f"{s:>{width}}" for s in self.sources),
        ]
        for metric, k in present:
            label = _LABELS[metric] + (f"@{k}" if k is not None else "")
            cells = []
            for s in self.sources:
                row = values.get((s, segment, variant, metric, k))
                cells.append(f"{row.value:>{width}.4f}" if row else f"{'-':>{width}}")
            lines.append("    " + f"{label:<18}" + "".join(cells))
        return lines


_SEGMENT_TITLES = {
    C.SEGMENT_ALL: "all users",
    C.SEGMENT_WARM: "warm users",
    C.SEGMENT_COLD: "cold users",
    C.SEGMENT_NEW_ITEMS: "new items (truth: items first sold in the window)",
}
_VARIANT_TITLES = {C.VARIANT_REPEAT: "repeat purchases count", C.VARIANT_NEW: "only items new to the user"}
_LABELS = {
    "ndcg": "NDCG",
    "recall": "Recall",
    "recall_capped": "RecallCapped",
    "precision": "Precision",
    "f1": "F1",
    "map": "MAP",
    "hit_rate": "HitRate",
    M.MRR: "MRR",
    M.AUC: "AUC",
    M.COVERAGE: "Coverage",
    M.NOVELTY: "Novelty",
    M.POPULARITY_BIAS: "PopularityBias",
    M.DIVERSITY: "Diversity",
}


def _display_metrics(ks: tuple[int, ...]) -> list[tuple[str, int | None]]:
    # The console shows the headline metrics; gold.evaluation and MLflow hold all of them.
    per_k = [(m, k) for m in ("ndcg", "recall", "precision", "map", "hit_rate") for k in ks]
    beyond = [(m, k) for m in (M.COVERAGE, M.NOVELTY, M.POPULARITY_BIAS, M.DIVERSITY) for k in ks]
    return [*per_k, (M.MRR, None), (M.AUC, None), *beyond]


# ------------------------------------------------------------------------------ the job
def run_evaluate(
    spark: SparkSession, cfg: Config, tables: Tables, split: TemporalSplit, run: RunLogger
) -> EvaluationReport:
    """Write the baselines' candidates, score every source of ``split.as_of``, record it all.

    Raises ``ShoprecError`` when the evaluation window holds no purchases.
    """
    started = time.perf_counter()
    ks = tuple(sorted(set(cfg.evaluate.ks)))
    notes: list[str] = []
    sales = _sales(tables.read(C.SILVER_INTERACTIONS)).persist()
    cached = [sales]
    try:
        _require_window_purchases(sales, split)
        with tables.all_or_nothing(WRITES):
            segments = user_segments(sales, split).persist()
            cached.append(segments)
            history = split.history(purchases(sales))
            served = users_to_serve(tables, segments, history)
            ccfg, repeat_search = repeat_config(history, cfg.candidates, split)
            candidate_versions = write_baselines(tables, history, served, ccfg, split.as_of)
            lists = read_candidates(tables, split.as_of)
            for extra in (recommendation_lists(tables, served, split.as_of), bundle_lists(tables, split.as_of)):
                if extra is not None:
                    lists = lists.unionByName(extra)
            truth = _truth_sets(sales, split).persist()
            # Only users with truth are scored (EVALUATION.md): everyone else's lists would be
            # carried through every metric for nothing (at 10M events, most of the rows).
            evaluated_users = truth.select(C.USER_ID).distinct()
            recs = _with_variants(lists.join(evaluated_users, on=C.USER_ID, how="left_semi"), history).persist()
            cached += [truth, recs]
            n_catalog, n_history_users, popularity = _catalog_stats(sales, split)
            rows = _ranking_rows(recs, truth, segments, ks)
            rows += _auc_rows(recs, truth, segments, _auc_catalog(sales, split), cfg.evaluate)
            evaluated = _evaluated_recs(recs, truth, segments)
            rows += _beyond_rows(evaluated, popularity, n_history_users, n_catalog, ks)
            vectors, note = _item_vectors(tables, split)
            if vectors is not None:
                diversity = _diversity_rows(evaluated, vectors, ks)
                if not diversity:
                    note = f"diversity skipped: no item text vectors in {C.GOLD_ITEM_FEATURES} for as_of {split.as_of}"
                rows += diversity
            if note:
                notes.append(note)
            rows.sort(key=_row_order)
            version = _write_evaluation(spark, tables, rows, split.as_of)
    finally:
        for df in cached:
            df.unpersist()
    sources = _source_order({r.source for r in rows})
    if C.SRC_ALS not in sources:
        notes.append(f"no {C.SRC_ALS} candidates for as_of {split.as_of}: run shoprec train-als to compare ALS")
    report = EvaluationReport(
        split.as_of,
        split.evaluation_end,
        ks,
        rows,
        sources,
        _segment_users(rows),
        notes,
        version,
        candidate_versions,
        repeat_half_life_days=ccfg.repeat_half_life_days,
        repeat_search=repeat_search,
    )
    report.seconds = time.perf_counter() - started
    _log_run(run, report)
    return report


# ------------------------------------------------------------------------------ inputs
def _sales(interactions: DataFrame) -> DataFrame:
    """Product purchases, anonymous ones included (they decide which items are new)."""
    return interactions.where((F.col(C.EVENT_TYPE) == C.PURCHASE) & F.col(C.IS_PRODUCT)).select(
        C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.IS_PRODUCT, C.EVENT_TS, C.BASKET_ID, C.COUNTRY
    )


def _require_window_purchases(sales: DataFrame, split: TemporalSplit) -> None:
    if split.evaluation(purchases(sales)).limit(1).count() == 0:
        raise ShoprecError(
            f"no purchases by known customers in the evaluation window {split.as_of} .. {split.evaluation_end} "
            f"(exclusive) of {C.SILVER_INTERACTIONS}: there is nothing to evaluate against",
            hint="pass an earlier --as-of (at least split.evaluation_days before the last purchase) "
            "or ingest the newer data first",
        )


def users_to_serve(tables: Tables, segments: DataFrame, history: DataFrame) -> DataFrame:
    """``user_id, country``: warm users and the window's cold users.

    A warm user's country is the one of their latest purchase before as_of (silver.users
    holds the latest overall, which may come from the evaluation window); a cold user has
    no history, so the country silver.users knows them by is all there is.
    """
    w = Window.partitionBy(C.USER_ID).orderBy(F.col(C.EVENT_TS).desc(), F.col(C.COUNTRY))
    before = (
        history.where(F.col(C.COUNTRY).isNotNull())
        .withColumn("_nth", F.row_number().over(w))
        .where(F.col("_nth") == 1)
        .select(C.USER_ID, F.col(C.COUNTRY).alias("_history_country"))
    )
    users = segments.select(C.USER_ID).join(before, on=C.USER_ID, how="left")
    if tables.exists(C.SILVER_USERS):
        known = tables.read(C.SILVER_USERS).select(C.USER_ID, F.col(C.COUNTRY).alias("_silver_country"))
        users = users.join(known, on=C.USER_ID, how="left")
    else:
        users = users.withColumn("_silver_country", F.lit(None).cast("string"))
    return users.select(C.USER_ID, F.coalesce("_history_country", "_silver_country").alias(C.COUNTRY))


def recommendation_lists(tables: Tables, served: DataFrame, as_of: date) -> DataFrame | None:
    """gold.recommendations of as_of as the candidate source ``recommend``, or None without them.

    Users with a list of their own keep it; every other user to serve (the window's cold
    users) gets the gold.cold_start_lists list of their country, else the global one (``*``):
    what a shop would show a new customer whose country it knows.
    """
    recs = optional_as_of(tables, C.GOLD_RECOMMENDATIONS, as_of)
    if recs is None:
        return None
    own = recs.select(C.USER_ID, C.ITEM_ID, C.SCORE, C.RANK)
    parts = [own]
    cold_lists = optional_as_of(tables, C.GOLD_COLD_START_LISTS, as_of)
    if cold_lists is not None:
        # Back in country_lists' shape (the global list under country null), served the way
        # recommend serves them: the user's country when it has a list, else the global one.
        key = F.col(C.LIST_KEY)
        country = F.when(key != F.lit(C.COLD_START_ANY_COUNTRY), key).alias(C.COUNTRY)
        lists = cold_lists.select(country, C.ITEM_ID, C.SCORE, C.RANK)
        others = served.join(own.select(C.USER_ID).distinct(), on=C.USER_ID, how="left_anti")
        parts.append(
            popular_candidates(lists, others, None).select(
                C.USER_ID, C.ITEM_ID, F.col(C.SOURCE_SCORE).alias(C.SCORE), F.col(C.SOURCE_RANK).alias(C.RANK)
            )
        )
    both = functools.reduce(DataFrame.unionByName, parts)
    return both.select(
        C.USER_ID,
        C.ITEM_ID,
        F.col(C.SCORE).cast("double"),
        F.col(C.RANK).cast("int"),
        F.lit(C.SRC_RECOMMEND).alias(C.CANDIDATE_SOURCE),
        F.lit(as_of).cast("date").alias(C.AS_OF),
    )


def bundle_lists(tables: Tables, as_of: date) -> DataFrame | None:
    """gold.bundle_recommendations of as_of as the source ``bundles``, or None without them.
    Only users with a recent basket have a list; the others score 0 for it."""
    recs = optional_as_of(tables, C.GOLD_BUNDLE_RECOMMENDATIONS, as_of)
    if recs is None:
        return None
    return recs.select(
        C.USER_ID,
        C.ITEM_ID,
        F.col(C.SCORE).cast("double"),
        F.col(C.RANK).cast("int"),
        F.lit(C.SRC_BUNDLES).alias(C.CANDIDATE_SOURCE),
        F.lit(as_of).cast("date").alias(C.AS_OF),
    )


def repeat_config(
    history: DataFrame, cfg: CandidatesConfig, split: TemporalSplit
) -> tuple[CandidatesConfig, baselines.HalfLifeSearch | None]:
    """``cfg`` with the repeat baseline's half-life set: the config's own, else the grid's
    best on the validation window (returned too, for the report)."""
    if cfg.repeat_half_life_days is not None:
        return cfg, None
    search = baselines.choose_repeat_half_life(history, cfg, split)
    log.info("repeat half-life %g days (best NDCG@10 on the validation window)", search.half_life_days)
    return replace(cfg, repeat_half_life_days=search.half_life_days), search


def write_baselines(
    tables: Tables, history: DataFrame, users: DataFrame, cfg: CandidatesConfig, as_of: date
) -> dict[str, int]:
    """Every baseline of ``BASELINES`` into gold.candidates (as_of, source); ``cfg`` has the
    repeat half-life set (:func:`repeat_config`). Returns the table version per source."""
    versions = {}
    for source, build in BASELINES.items():
        versions[source] = write_candidates(tables, build(history, users, cfg, as_of), source, as_of)
        log.info("candidates %s written (gold.candidates version %s)", source, versions[source])
    return versions


def _with_variants(candidates: DataFrame, history: DataFrame) -> DataFrame:
    """``source, user_id, item_id, rank, variant``: each list as is (repeat) and without
    the user's earlier purchases, re-ranked 1.. (new)."""
    best = M.best_rank(candidates.select(C.CANDIDATE_SOURCE, C.USER_ID, C.ITEM_ID, C.RANK), by=(C.CANDIDATE_SOURCE,))
    bought = history.select(C.USER_ID, C.ITEM_ID).distinct()
    order = Window.partitionBy(C.CANDIDATE_SOURCE, C.USER_ID).orderBy(F.col(C.RANK), F.col(C.ITEM_ID))
    fresh = best.join(bought, on=[C.USER_ID, C.ITEM_ID], how="left_anti").withColumn(C.RANK, F.row_number().over(order))
    columns = [C.CANDIDATE_SOURCE, C.USER_ID, C.ITEM_ID, C.RANK]
    return best.select(*columns, F.lit(C.VARIANT_REPEAT).alias(C.VARIANT)).unionByName(
        fresh.select(*columns, F.lit(C.VARIANT_NEW).alias(C.VARIANT))
    )


def _truth_sets(sales: DataFrame, split: TemporalSplit) -> DataFrame:
    """``user_id, item_id, variant, truth_scope``: both truth variants, on all items and on new items."""
    fresh_items = new_items(sales, split)
    parts = []
    for variant, exclusion in ((C.VARIANT_REPEAT, False), (C.VARIANT_NEW, True)):
        truth = ground_truth(sales, split, "evaluation", history_exclusion=exclusion)
        parts.append(
            truth.select(C.USER_ID, C.ITEM_ID, F.lit(variant).alias(C.VARIANT), F.lit(C.SEGMENT_ALL).alias(_SCOPE))
        )
        parts.append(
            truth.join(fresh_items, on=C.ITEM_ID, how="left_semi").select(
                C.USER_ID, C.ITEM_ID, F.lit(variant).alias(C.VARIANT), F.lit(C.SEGMENT_NEW_ITEMS).alias(_SCOPE)
            )
        )
    return functools.reduce(DataFrame.unionByName, parts)


def _end_of_window(split: TemporalSplit) -> datetime:
    return datetime.combine(split.evaluation_end, dtime())  # midnight UTC, as the split's own bounds


def _catalog_stats(sales: DataFrame, split: TemporalSplit) -> tuple[int, int, DataFrame]:
    """Catalog size and history buyers (one small aggregate) and the items' popularity.

    The catalog is what a recommender trained on history can know: products sold before
    as_of. Popularity is the count of distinct known buyers (anonymous sales count 0).
    """
    history = split.history(sales)
    popularity = history.groupBy(C.ITEM_ID).agg(F.count_distinct(C.USER_ID).alias(C.N_BUYERS))
    stats = history.agg(F.count_distinct(C.ITEM_ID).alias("items"), F.count_distinct(C.USER_ID).alias("users")).first()
    assert stats is not None  # a global aggregate: one row
    return int(stats["items"]), int(stats["users"]), popularity


def _auc_catalog(sales: DataFrame, split: TemporalSplit) -> DataFrame:
    """AUC negatives come from every product sold before the window ends."""
    return sales.where(F.col(C.EVENT_TS) < F.lit(_end_of_window(split))).select(C.ITEM_ID).distinct()


def _item_vectors(tables: Tables, split: TemporalSplit) -> tuple[DataFrame | None, str | None]:
    if not tables.exists(C.GOLD_ITEM_FEATURES):
        return None, f"diversity skipped: {C.GOLD_ITEM_FEATURES} does not exist (run shoprec features)"
    features = tables.read(C.GOLD_ITEM_FEATURES)
    if C.TEXT_VECTOR not in features.columns:
        return None, f"diversity skipped: {C.GOLD_ITEM_FEATURES} has no {C.TEXT_VECTOR} column"
    if C.AS_OF in features.columns:
        features = features.where(F.col(C.AS_OF) == F.lit(split.as_of))
    return features.select(C.ITEM_ID, C.TEXT_VECTOR), None


# ------------------------------------------------------------------------------ metrics
def _with_segments(per_user: DataFrame, segments: DataFrame) -> DataFrame:
    """One copy of each per-user row for ``all`` and for the user's own segment; rows scored
    on new items only go to ``new_items``."""
    labelled = per_user.join(segments.withColumnRenamed(C.SEGMENT, "_own_segment"), on=C.USER_ID, how="left")
    targets = F.when(F.col(_SCOPE) == C.SEGMENT_ALL, F.array(F.lit(C.SEGMENT_ALL), F.col("_own_segment"))).otherwise(
        F.array(F.lit(C.SEGMENT_NEW_ITEMS))
    )
    return labelled.withColumn(C.SEGMENT, F.explode(targets)).where(F.col(C.SEGMENT).isNotNull())


def _split_metric(column: str) -> tuple[str, int | None]:
    match = re.fullmatch(r"(.+)_at_(\d+)", column)
    return (match.group(1), int(match.group(2))) if match else (column, None)


def _rows(collected: list, columns: list[str], n_users_col: str | None = C.N_USERS) -> list[MetricRow]:
    out = []
    for r in collected:
        for c in columns:
            if r[c] is None:
                continue  # nothing to average (no list in the group)
            metric, k = _split_metric(c)
            n_users = r[n_users_col] if n_users_col else r[M.metric_column(C.DIVERSITY_USERS, k)]
            out.append(
                MetricRow(r[C.CANDIDATE_SOURCE], r[C.SEGMENT], r[C.VARIANT], metric, k, float(r[c]), int(n_users))
            )
    return out


def _ranking_rows(recs: DataFrame, truth: DataFrame, segments: DataFrame, ks: tuple[int, ...]) -> list[MetricRow]:
    per_user = M.ranking_metrics(recs, truth, ks, by=_BY)
    columns = M.ranking_metric_columns(ks)
    means = (
        _with_segments(per_user, segments)
        .groupBy(*_GROUP)
        .agg(F.count(F.lit(1)).alias(C.N_USERS), *[F.avg(c).alias(c) for c in columns])
    )
    return _rows(means.collect(), columns)  # small: sources x segments x variants


def _auc_rows(
    recs: DataFrame, truth: DataFrame, segments: DataFrame, catalog: DataFrame, cfg: EvaluateConfig
) -> list[MetricRow]:
    per_user = M.sampled_auc_per_user(recs, truth, catalog, cfg.auc_negatives, cfg.seed, by=_BY)
    means = (
        _with_segments(per_user, segments)
        .groupBy(*_GROUP)
        .agg(F.count(F.lit(1)).alias(C.N_USERS), F.avg(M.AUC).alias(M.AUC))
    )
    return _rows(means.collect(), [M.AUC])  # small: one row per source x segment x variant


def _evaluated_recs(recs: DataFrame, truth: DataFrame, segments: DataFrame) -> DataFrame:
    """The lists of the evaluated users, tagged with ``all`` and their segment, so that every
    source's beyond-accuracy numbers cover the same users."""
    evaluated = (
        truth.where(F.col(_SCOPE) == C.SEGMENT_ALL)
        .select(C.VARIANT, C.USER_ID)
        .distinct()
        .join(segments, on=C.USER_ID, how="left")
        .withColumn(C.SEGMENT, F.explode(F.array(F.lit(C.SEGMENT_ALL), F.col(C.SEGMENT))))
        .where(F.col(C.SEGMENT).isNotNull())
    )
    return recs.join(evaluated, on=[C.VARIANT, C.USER_ID], how="inner")


def _beyond_rows(
    evaluated: DataFrame, popularity: DataFrame, n_history_users: int, n_catalog: int, ks: tuple[int, ...]
) -> list[MetricRow]:
    df = M.beyond_accuracy(evaluated, popularity, n_history_users, n_catalog, ks, by=_GROUP)
    columns = [M.metric_column(m, k) for m in (M.COVERAGE, M.NOVELTY, M.POPULARITY_BIAS) for k in ks]
    return _rows(df.collect(), columns)  # small: one row per source x segment x variant


def _diversity_rows(evaluated: DataFrame, vectors: DataFrame, ks: tuple[int, ...]) -> list[MetricRow]:
    df = M.intra_list_diversity_by(evaluated, vectors, ks, by=_GROUP)
    rows = df.collect()  # small: one row per source x segment x variant
    return _rows(rows, [M.metric_column(M.DIVERSITY, k) for k in ks], n_users_col=None)


# ------------------------------------------------------------------------------ outputs
def _row_order(r: MetricRow) -> tuple:
    return (r.source, SEGMENTS.index(r.segment), VARIANTS.index(r.variant), r.metric, r.k or 0)


def _source_order(sources: set[str]) -> list[str]:
    """The recommendations, the model(s), then the baselines in their fixed order."""
    others = sorted((s for s in sources if s not in BASELINES), key=lambda s: (s != C.SRC_RECOMMEND, s))
    return others + [s for s in BASELINES if s in sources]


def _segment_users(rows: list[MetricRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        if r.variant == C.VARIANT_REPEAT and r.metric == "ndcg":
            out[r.segment] = max(out.get(r.segment, 0), r.n_users)
    return out


def _write_evaluation(spark: SparkSession, tables: Tables, rows: list[MetricRow], as_of: date) -> int:
    data = [(as_of, r.source, r.segment, r.variant, r.metric, r.k, r.value, r.n_users) for r in rows]
    df = spark.createDataFrame(data, EVALUATION_SCHEMA)
    return tables.replace_partition(df, C.GOLD_EVALUATION, {C.AS_OF: as_of}).version


def _log_run(run: RunLogger, report: EvaluationReport) -> None:
    metrics = {r.mlflow_name: r.value for r in report.rows}
    for r in report.rows:
        if r.metric == "ndcg":
            metrics[_MLFLOW_UNSAFE.sub("_", f"{r.source}.{r.segment}.{r.variant}.n_users")] = float(r.n_users)
    metrics["seconds"] = report.seconds
    if report.repeat_half_life_days is not None:
        # The config's value (null when searched) is logged with the config; this is the one used.
        run.params({"resolved.repeat_half_life_days": report.repeat_half_life_days})
    if report.repeat_search is not None:
        search = report.repeat_search
        for h in search.ndcg:
            metrics[_MLFLOW_UNSAFE.sub("_", f"repeat_tuning.half_life_{h:g}.ndcg_at_10")] = search.ndcg[h]
            metrics[_MLFLOW_UNSAFE.sub("_", f"repeat_tuning.half_life_{h:g}.recall_at_10")] = search.recall[h]
        metrics["repeat_tuning.n_users"] = float(search.n_users)
    run.metrics(metrics)
    run.tags({"shoprec.eval_sources": ",".join(report.sources)})
    with tempfile.TemporaryDirectory(prefix="shoprec-evaluate-") as tmp:
        paths = _write_tables(report, tmp)
        plots = [
            _plot(report, os.path.join(tmp, "ndcg_recall.png")),
            _segment_plot(report, os.path.join(tmp, "ndcg_by_segment.png")),
        ]
        for path in paths + [p for p in plots if p]:
            run.artifact(path, "evaluation")


def _write_tables(report: EvaluationReport, folder: str) -> list[str]:
    """The long table as CSV and a pivot (metric rows, source columns) as HTML."""
    import pandas as pd

    long = pd.DataFrame(
        [
            (report.as_of.isoformat(), r.source, r.segment, r.variant, r.metric, r.k, r.value, r.n_users)
            for r in report.rows
        ],
        columns=[C.AS_OF, C.CANDIDATE_SOURCE, C.SEGMENT, C.VARIANT, C.METRIC, C.K, C.VALUE, C.N_USERS],
    ).astype({C.K: "Int64"})
    csv_path = os.path.join(folder, "evaluation.csv")
    long.to_csv(csv_path, index=False)
    long["metric_at_k"] = [
        M.metric_column(m, None if pd.isna(k) else int(k)) for m, k in zip(long[C.METRIC], long[C.K], strict=True)
    ]
    pivot = long.pivot_table(
        index=[C.SEGMENT, C.VARIANT, "metric_at_k"], columns=C.CANDIDATE_SOURCE, values=C.VALUE, aggfunc="first"
    )
    pivot = pivot[[s for s in report.sources if s in pivot.columns]]
    html_path = os.path.join(folder, "evaluation.html")
    with open(html_path, "w", encoding="utf-8") as fh:
        fh.write(f"<h2>shoprec evaluation, as_of {report.as_of}</h2>\n")
        fh.write(pivot.to_html(float_format=lambda v: f"{v:.4f}", na_rep="-"))
    return [csv_path, html_path]


def _plot(report: EvaluationReport, path: str) -> str | None:
    """NDCG@K and Recall@K per source, warm users, repeat truth (all users when none is warm)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    segment = C.SEGMENT_WARM if report.segment_users.get(C.SEGMENT_WARM) else C.SEGMENT_ALL
    # A bare Figure on the Agg canvas: no pyplot state, no GUI backend, safe in any process.
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    plotted = False
    for ax, metric in zip(axes, ("ndcg", "recall"), strict=True):
        for source in report.sources:
            points = [(k, report.value(source, segment, C.VARIANT_REPEAT, metric, k)) for k in report.ks]
            points = [(k, v) for k, v in points if v is not None]
            if points:
                ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=source)
                plotted = True
        ax.set_xticks(list(report.ks))
        ax.set_xlabel("K")
        ax.set_title(f"{_LABELS[metric]}@K, {segment} users, repeat purchases count")
        ax.grid(alpha=0.3)
    if not plotted:
        return None
    axes[0].legend(fontsize="small")
    fig.suptitle(f"shoprec evaluation, as_of {report.as_of}")
    fig.savefig(path, dpi=100)
    return path


def _segment_plot(report: EvaluationReport, path: str, k: int = 10) -> str | None:
    """NDCG@k per source, one group of bars per user segment (repeat truth)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if k not in report.ks:
        k = max(report.ks)
    segments = [s for s in SEGMENTS if report.segment_users.get(s)]
    if not segments or not report.sources:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(segments))
    width = 0.8 / len(report.sources)
    for i, source in enumerate(report.sources):
        values = [report.value(source, segment, C.VARIANT_REPEAT, "ndcg", k) or 0.0 for segment in segments]
        ax.bar(x + i * width, values, width, label=source)
    ax.set_xticks(
        x + width * (len(report.sources) - 1) / 2, [f"{s}\n({report.segment_users[s]:,} users)" for s in segments]
    )
    ax.set_ylabel(f"NDCG@{k}")
    ax.set_title(f"NDCG@{k} by user segment, repeat purchases count, as_of {report.as_of}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.savefig(path, dpi=100)
    return path


# ------------------------------------------------------------------------------ the stage
def evaluate_stage(ctx: JobContext, as_of: date | None = None, split: TemporalSplit | None = None) -> EvaluationReport:
    """``shoprec evaluate``: baselines + every candidate source scored on the evaluation window."""
    return model_stage(ctx, "evaluate", split or resolve_run_split(ctx, as_of), run_evaluate)
