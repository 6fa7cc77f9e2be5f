"""Typed configuration: ``conf/base/*.yml`` + ``conf/<env>/*.yml`` overlays + ``--set`` overrides.

Each YAML file is one section, named by its file stem (``conf/base/spark.yml`` is the
``spark`` section). Overlays are merged key by key over base; mappings merge, other values
replace. The result is parsed into frozen dataclasses; an unknown or mistyped key is an
error naming the key and the file it came from.

String values may use ``${VAR}`` or ``${VAR:-default}`` to read the environment, which is
how the cluster overlay picks up the remote MLflow tracking URI.

Values are validated at load, before any Spark starts: each field declares its rules
(``field(metadata=checks(POSITIVE))``: ranges, shares, dates, time zones), a key given twice
in one YAML mapping is an error, and every failure is one ``ConfigError`` naming the file
(or ``--set``), the dotted key and the bad value. ``masked()`` is the copy of the config
that may be logged: passwords in URIs and values of secret-looking keys become ``***``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import logging
import os
import re
import types
import typing
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from shoprec import paths
from shoprec.errors import ConfigError
from shoprec.holidays import MOVABLE, is_spec

ENVS = ("local", "cluster")
DATA_ROOT_ENV = "SHOPREC_DATA_ROOT"
CONF_DIR_ENV = "SHOPREC_CONF_DIR"


# ----------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """One check of a config value, declared on its field: ``field(default=28, metadata=checks(POSITIVE))``.

    ``must`` completes "'<key>' must be ..." (``{noun}`` becomes integer, number, list, ...
    after the value's type). None passes every rule: optional fields stay optional.
    """

    must: str
    ok: Callable[[Any], bool]
    hint: str
    each: bool = False  # every item of a list, every value of a mapping
    entry: str | None = None  # only this entry of a mapping


def checks(*rules: Rule) -> dict[str, tuple[Rule, ...]]:
    """Field metadata carrying ``rules`` (checked by ``load_config``)."""
    return {"checks": rules}


def each(rule: Rule) -> Rule:
    """``rule`` applied to every item of a list (or value of a mapping)."""
    return dataclasses.replace(rule, each=True)


def entry(name: str, rule: Rule) -> Rule:
    """``rule`` applied to the entry ``name`` of a mapping, when it is there."""
    return dataclasses.replace(rule, entry=name)


def _is_date(value: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_zone(value: str) -> bool:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return not _have_zone_database()
    return True


def _is_regex(value: str) -> bool:
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _have_zone_database() -> bool:
    """False on a machine with neither the system's zone files nor the tzdata package."""
    try:
        zoneinfo.ZoneInfo("Europe/London")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


# Spark's session time zone also takes offsets: Z, +01, +01:00, UTC+01:00, GMT-05:30.
_UTC_OFFSET = re.compile(r"Z|(?:UTC|GMT|UT)?[+-]\d{1,2}(?::?\d{2}(?::?\d{2})?)?")
POSITIVE = Rule("a positive {noun}", lambda v: v > 0, "use a value above 0")
NON_NEGATIVE = Rule("0 or more", lambda v: v >= 0, "use 0 or more")
SHARE = Rule("a share between 0 and 1", lambda v: 0 <= v <= 1, "shares, rates and probabilities go from 0.0 to 1.0")
SEED = Rule("a seed of 0 or more", lambda v: v >= 0, "NumPy takes seeds of 0 or more, e.g. 42")
NON_EMPTY = Rule(
    "a non-empty {noun}",
    lambda v: len(v.strip() if isinstance(v, str) else v) > 0,
    "give at least one value, or leave the key out for the default",
)
DATE = Rule("a date YYYY-MM-DD", _is_date, "use a real calendar date, e.g. 2011-11-01")
DATE_OR_AUTO = Rule(
    "a date YYYY-MM-DD or auto",
    lambda v: v == "auto" or _is_date(v),
    "use a real calendar date, e.g. 2011-11-01, or auto: the last event date minus split.evaluation_days",
)
TIME_ZONE = Rule(
    "an IANA time zone name",
    _is_zone,
    "use a name of the tz database, e.g. Europe/London, America/New_York or UTC",
)
SPARK_TIME_ZONE = Rule(
    "an IANA time zone name or a UTC offset",
    lambda v: _is_zone(v) or _UTC_OFFSET.fullmatch(v) is not None,
    "for example UTC, Europe/London or +01:00",
)
HOLIDAY = Rule(
    'a holiday: "MM-DD" or a movable one',
    is_spec,
    f'use a real day of the year such as "12-25", or one of: {", ".join(sorted(MOVABLE))}',
)
REGEX = Rule("a regular expression that compiles", _is_regex, "check the brackets and escapes of the rule")
PORT = Rule("a TCP port, 1 to 65535", lambda v: 1 <= v <= 65535, "e.g. 8000")
HOUR = Rule("an hour of the day, 0 to 23", lambda v: 0 <= v <= 23, "bucket starts are UTC hours, 0 to 23")
DROPOUT = Rule("a rate from 0 up to (not including) 1", lambda v: 0 <= v < 1, "0 turns dropout off")
ALS_CHECKPOINTS = Rule(
    "a positive integer or -1", lambda v: v >= 1 or v == -1, "iterations between ALS checkpoints; -1 turns them off"
)


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class SparkConfig:
    """How to get a Spark session (see ``shoprec.spark``)."""

    master: str | None = "local[*]"
    app_name: str = field(default="shoprec", metadata=checks(NON_EMPTY))
    # auto: enable Delta's session extensions when the Delta JARs are configured;
    # on/off force it. Only matters for the Spark ("spark") table backend.
    delta_extensions: Literal["auto", "on", "off"] = "auto"
    # auto: put the JVM set bootstrap fetched (jvm/spark/pom.xml: Delta, the Kafka
    # connector) on spark.jars when this process launches the JVM; off: leave it out.
    jvm_jars: Literal["auto", "off"] = "auto"
    # The address a JVM this process launches binds everything to (driver, block manager,
    # UI), as SPARK_LOCAL_IP; null: Spark's choice (the machine's address, the UI on all
    # interfaces), which a cluster driver needs so that executors can reach it.
    bind_address: str | None = "127.0.0.1"
    # Applied to every session we build or reuse (runtime SQL settings).
    settings: Mapping[str, str] = field(
        default_factory=dict, metadata=checks(entry("spark.sql.session.timeZone", SPARK_TIME_ZONE))
    )
    # Applied only when this process launches the JVM (driver memory and the like);
    # under spark-submit these come from spark-submit itself.
    launch_settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StorageConfig:
    """Where tables live and which Delta backend writes them."""

    data_root: str = field(default="./lakehouse", metadata=checks(NON_EMPTY))
    # auto: Spark's own Delta when its classes are on the classpath, else delta-rs.
    delta_backend: Literal["auto", "spark", "local"] = "auto"


@dataclass(frozen=True)
class MlflowConfig:
    """Tracking and registry. Empty URIs mean the embedded default under data_root."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_root: str | None = None
    experiment: str = field(default="shoprec", metadata=checks(NON_EMPTY))


@dataclass(frozen=True)
class EventLogColumns:
    """Column names of a generic event log (map your file's names onto ours)."""

    user_id: str = field(default="user_id", metadata=checks(NON_EMPTY))
    item_id: str = field(default="item_id", metadata=checks(NON_EMPTY))
    event_type: str = field(default="event_type", metadata=checks(NON_EMPTY))
    timestamp: str = field(default="event_time", metadata=checks(NON_EMPTY))
    session_id: str = field(default="session_id", metadata=checks(NON_EMPTY))
    device: str = field(default="device", metadata=checks(NON_EMPTY))
    country: str = field(default="country", metadata=checks(NON_EMPTY))
    price: str = field(default="price", metadata=checks(NON_EMPTY))
    quantity: str = field(default="quantity", metadata=checks(NON_EMPTY))


@dataclass(frozen=True)
class IngestConfig:
    """What ``shoprec ingest`` reads and how it validates it."""

    source: Literal["online_retail", "event_log"] = "online_retail"
    inputs: tuple[str, ...] = ()
    # auto picks by extension: .csv/.csv.gz, .jsonl/.json(.gz), .parquet, .xlsx
    format: Literal["auto", "csv", "jsonl", "parquet", "xlsx"] = "auto"
    catalog: str | None = None
    # Timestamps later than ingest time plus this many days are impossible.
    max_future_days: int = field(default=1, metadata=checks(NON_NEGATIVE))
    # Timestamps before this date are impossible for a web shop.
    min_date: str = field(default="1995-01-01", metadata=checks(DATE))
    # Timezone the source's naive timestamps are in (Online Retail: UK local time).
    source_timezone: str = field(default="UTC", metadata=checks(TIME_ZONE))
    # Online Retail stock codes that are not products, mapped to their kind.
    non_product_codes: Mapping[str, str] = field(default_factory=dict)
    # Stock-code prefixes that are not products (gift vouchers are gift_0001_10, ...).
    non_product_prefixes: Mapping[str, str] = field(default_factory=dict)
    event_log_columns: EventLogColumns = field(default_factory=EventLogColumns)
    # How long an ingest waits for another one into the same data root to finish.
    lock_timeout_s: float = field(default=3600.0, metadata=checks(POSITIVE))

    # Ids must match these regular expressions (Spark's rlike, Java syntax; keep to the part
    # Python's re shares: load compiles them with re, the ingest with Java before it writes) or
    # their row is quarantined INVALID_ID.
    # customer_id is Online Retail's CustomerID; user_id, item_id and session_id the event log's.
    id_patterns: Mapping[str, str] = field(
        default_factory=lambda: {
            "customer_id": r"^\d+(\.0)?$",
            "user_id": r"^[^\x00-\x1f\x7f]{1,256}$",
            "item_id": r"^[^\x00-\x1f\x7f]{1,256}$",
            "session_id": r"^[^\x00-\x1f\x7f]{1,256}$",
        },
        metadata=checks(each(REGEX)),
    )


@dataclass(frozen=True)
class GenerateConfig:
    """Defaults of the synthetic event-log generator (``shoprec generate``)."""

    users: int = field(default=10_000, metadata=checks(POSITIVE))
    items: int = field(default=2_000, metadata=checks(POSITIVE))
    events: int = field(default=1_000_000, metadata=checks(POSITIVE))
    seed: int = field(default=42, metadata=checks(SEED))
    format: Literal["parquet", "csv", "jsonl"] = "parquet"
    start_date: str = field(default="2023-01-01", metadata=checks(DATE))
    days: int = field(default=365, metadata=checks(POSITIVE))
    events_per_file: int = field(default=2_000_000, metadata=checks(POSITIVE))
    # Share of rows deliberately broken so the ingest quarantine has work to do.
    bad_row_rate: float = field(default=0.0, metadata=checks(SHARE))


@dataclass(frozen=True)
class SplitConfig:
    """The temporal split of EVALUATION.md: history | validation window | as_of | evaluation window."""

    # The training cutoff when --as-of is not given: a date (YYYY-MM-DD), or "auto" for
    # the last event date minus evaluation_days.
    as_of: str = field(default="auto", metadata=checks(DATE_OR_AUTO))
    # The last days of history, held out while tuning (hyperparameter search, weights).
    validation_days: int = field(default=28, metadata=checks(POSITIVE))
    # Days from as_of on whose purchases are the ground truth.
    evaluation_days: int = field(default=28, metadata=checks(POSITIVE))


@dataclass(frozen=True)
class TextConfig:
    """Item description vectors learned with Spark ML."""

    vector_size: int = field(default=32, metadata=checks(POSITIVE))
    min_count: int = field(default=2, metadata=checks(NON_NEGATIVE))
    window: int = field(default=5, metadata=checks(POSITIVE))
    max_iter: int = field(default=5, metadata=checks(POSITIVE))
    seed: int = field(default=42, metadata=checks(SEED))
    # Hashing TF dimensions for the TF-IDF vectors (used for the text clusters).
    tfidf_features: int = field(default=4096, metadata=checks(POSITIVE))
    # KMeans clusters over the text vectors: the item's category when the source has none.
    clusters: int = field(default=24, metadata=checks(POSITIVE))


@dataclass(frozen=True)
class FeaturesConfig:
    """``shoprec features``: user, item and context features and the implicit confidence."""

    # Implicit confidence of (user, item): sum of event weights times a time decay with
    # this half-life (days before as_of); returns have a negative weight.
    half_life_days: float = field(default=90.0, metadata=checks(POSITIVE))
    # Any sign: returns weigh against the pair.
    event_weights: Mapping[str, float] = field(
        default_factory=lambda: {"view": 0.1, "cart": 0.3, "purchase": 1.0, "return": -1.0},
        metadata=checks(NON_EMPTY),
    )
    # log: an event weighs 1 + ln(quantity) (wholesale lines of 1,000 units do not drown
    # everything else); none: every event weighs the same whatever the quantity.
    quantity_weighting: Literal["none", "log"] = "log"
    price_bands: int = field(default=5, metadata=checks(POSITIVE))
    # Popularity trend: purchases in the last trend_weeks weeks versus the weeks before.
    trend_weeks: int = field(default=4, metadata=checks(POSITIVE))
    # Major holidays: "MM-DD" for fixed dates, or easter / black_friday / mothers_day_uk
    # (shoprec.holidays; checked at load).
    holidays: tuple[str, ...] = field(
        default=("01-01", "02-14", "easter", "mothers_day_uk", "10-31", "black_friday", "12-25"),
        metadata=checks(each(HOLIDAY)),
    )
    text: TextConfig = field(default_factory=TextConfig)


@dataclass(frozen=True)
class AlsSearchConfig:
    """Grid searched by ``shoprec train-als`` (NDCG@10 on the validation window)."""

    rank: tuple[int, ...] = field(default=(32, 64), metadata=checks(NON_EMPTY, each(POSITIVE)))
    reg_param: tuple[float, ...] = field(default=(0.01, 0.1), metadata=checks(NON_EMPTY, each(NON_NEGATIVE)))
    alpha: tuple[float, ...] = field(default=(1.0, 10.0), metadata=checks(NON_EMPTY, each(NON_NEGATIVE)))
    # When the grid is larger, this many combinations are drawn from it (seeded).
    max_trials: int = field(default=8, metadata=checks(POSITIVE))
    seed: int = field(default=42, metadata=checks(SEED))


@dataclass(frozen=True)
class AlsConfig:
    """Spark MLlib ALS with implicit preferences on gold.confidence."""

    rank: int = field(default=64, metadata=checks(POSITIVE))
    max_iter: int = field(default=10, metadata=checks(POSITIVE))
    reg_param: float = field(default=0.1, metadata=checks(NON_NEGATIVE))
    alpha: float = field(default=10.0, metadata=checks(NON_NEGATIVE))
    # User and item blocks; null: the session's default parallelism (not MLlib's 10,
    # which on 2 cores is 10 tiny tasks per stage).
    num_blocks: int | None = field(default=None, metadata=checks(POSITIVE))
    checkpoint_interval: int = field(default=5, metadata=checks(ALS_CHECKPOINTS))
    # null: <data_root>/_checkpoints/als
    checkpoint_dir: str | None = None
    seed: int = field(default=42, metadata=checks(SEED))
    # false: train once with the values above, no search.
    tune: bool = True
    search: AlsSearchConfig = field(default_factory=AlsSearchConfig)
    registered_model: str = field(default="shoprec-als", metadata=checks(NON_EMPTY))


@dataclass(frozen=True)
class CandidatesConfig:
    """Top-N candidates per user and source (gold.candidates)."""

    n: int = field(default=50, metadata=checks(POSITIVE))
    # true: items the user bought before as_of are never candidates.
    exclude_bought: bool = False
    # Users per matrix product in the blocked ALS top-N; null: sized so one block's
    # score matrix stays under block_mb.
    block_users: int | None = field(default=None, metadata=checks(POSITIVE))
    block_mb: int = field(default=64, metadata=checks(POSITIVE))
    # Popularity baselines weigh a purchase by a decay with this half-life (days).
    popularity_half_life_days: float = field(default=30.0, metadata=checks(POSITIVE))
    # The repeat ("buy it again") baseline weighs each basket holding the item by a decay
    # with this half-life (days; 0: no decay, plain basket counts); null: the grid's best
    # NDCG@10 on the validation window, chosen by shoprec evaluate.
    repeat_half_life_days: float | None = field(default=None, metadata=checks(NON_NEGATIVE))
    repeat_half_life_grid: tuple[float, ...] = field(
        default=(0.0, 7.0, 30.0, 90.0, 365.0), metadata=checks(NON_EMPTY, each(NON_NEGATIVE))
    )
    # Hour-of-day buckets for the popular-by-hour baseline (bucket starts, hours).
    hour_buckets: tuple[int, ...] = field(default=(0, 6, 12, 18), metadata=checks(NON_EMPTY, each(HOUR)))
    # Co-occurrence: partners of the user's most recent items, from baskets.
    recent_items: int = field(default=10, metadata=checks(POSITIVE))
    min_cooccurrence: int = field(default=2, metadata=checks(POSITIVE))
    # Baskets with more distinct items than this are skipped (wholesale pick lists).
    max_basket_items: int = field(default=100, metadata=checks(POSITIVE))
    # Each item keeps its most similar partners only (null: all of them); a user's list sums
    # over ten seeds, and the long tail of each seed's partners is what made it slow.
    partners_per_item: int | None = field(default=200, metadata=checks(POSITIVE))


@dataclass(frozen=True)
class EvaluateConfig:
    """``shoprec evaluate``: metrics of EVALUATION.md over the evaluation window."""

    ks: tuple[int, ...] = field(default=(5, 10, 20), metadata=checks(NON_EMPTY, each(POSITIVE)))
    # AUC: sampled negatives per held-out positive.
    auc_negatives: int = field(default=20, metadata=checks(POSITIVE))
    seed: int = field(default=42, metadata=checks(SEED))


@dataclass(frozen=True)
class HybridModelConfig:
    """Sizes and switches of the NeuMF-style hybrid network (shoprec.hybrid.model)."""

    embedding_dim: int = field(default=32, metadata=checks(POSITIVE))  # user/item embeddings of each tower
    # Units of the MLP tower's layers; empty: the concatenated inputs feed the output directly.
    mlp_layers: tuple[int, ...] = field(default=(128, 64, 32), metadata=checks(each(POSITIVE)))
    # hour, weekday, season, country, device, category, price band
    context_embedding_dim: int = field(default=4, metadata=checks(POSITIVE))
    dropout: float = field(default=0.3, metadata=checks(DROPOUT))
    l2: float = field(default=1.0e-6, metadata=checks(NON_NEGATIVE))
    use_content: bool = True  # text vector, price band, category
    use_context: bool = True  # hour, weekday, season, holiday distance, country, device
    use_history: bool = True  # the user's earlier purchases of the item, and overall
    # Initialise the GMF embeddings from gold.als_*_factors of the same as_of (its rank
    # replaces embedding_dim for that tower). Those factors saw the validation window.
    warm_start_als: bool = False


@dataclass(frozen=True)
class HybridConfig:
    """``shoprec train-hybrid``: training data in Spark, Horovod training, registry."""

    # Training examples: negatives per positive, drawn with probability ~ popularity ** power
    # (0: uniform, 1: proportional), never an item the user bought in the same window.
    negatives: int = field(default=4, metadata=checks(POSITIVE))
    sampling_power: float = field(default=0.75, metadata=checks(NON_NEGATIVE))
    validation_negatives: int = field(default=10, metadata=checks(POSITIVE))
    seed: int = field(default=42, metadata=checks(SEED))
    # Horovod: processes (horovodrun -np locally, horovod.spark.run num_proc on a cluster).
    num_proc: int = field(default=2, metadata=checks(POSITIVE))
    launcher: Literal["auto", "horovodrun", "spark"] = "auto"
    shards_per_rank: int = field(default=2, metadata=checks(POSITIVE))
    # null: the machine's cores / num_proc, so ranks do not oversubscribe cores.
    threads_per_rank: int | None = field(default=None, metadata=checks(POSITIVE))
    epochs: int = field(default=8, metadata=checks(POSITIVE))
    batch_size: int = field(default=1024, metadata=checks(POSITIVE))  # per rank
    learning_rate: float = field(default=0.001, metadata=checks(POSITIVE))  # scaled by the number of ranks
    # Early stopping on validation NDCG@10 (each positive ranked among its negatives).
    patience: int = field(default=2, metadata=checks(POSITIVE))
    model: HybridModelConfig = field(default_factory=HybridModelConfig)
    registered_model: str = field(default="shoprec-hybrid", metadata=checks(NON_EMPTY))
    # Candidates re-ranked by the model for the evaluation: per user, ALS top-N, the
    # items they bought, and the globally popular ones.
    rerank_pool: int = field(default=50, metadata=checks(POSITIVE))
    # Training examples and the model live under <data_root>/<work_dir>/<as_of>.
    work_dir: str = field(default="_hybrid", metadata=checks(NON_EMPTY))


@dataclass(frozen=True)
class RecommendPoolConfig:
    """Candidates per user and source gathered before scoring (0 turns a source off)."""

    als: int = field(default=50, metadata=checks(NON_NEGATIVE))  # ALS top-N
    repeat: int = field(default=20, metadata=checks(NON_NEGATIVE))  # the user's own most recent purchases
    cooccurrence: int = field(default=30, metadata=checks(NON_NEGATIVE))  # bought together with recent items
    content: int = field(default=30, metadata=checks(NON_NEGATIVE))  # text-vector neighbours of recent items
    popular: int = field(default=30, metadata=checks(NON_NEGATIVE))  # popular in the user's country and season
    # rules of gold.bundles fired by the user's recent baskets (shoprec bundles)
    bundle: int = field(default=10, metadata=checks(NON_NEGATIVE))


@dataclass(frozen=True)
class FusionConfig:
    """final = w * CF score + (1 - w) * deep score, both normalised per user."""

    normalisation: Literal["minmax", "rank"] = "rank"
    # The grid searched on the validation window; ``weight`` set skips the search.
    weights: tuple[float, ...] = field(
        default=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), metadata=checks(NON_EMPTY, each(SHARE))
    )
    weight: float | None = field(default=None, metadata=checks(SHARE))
    # Users of the validation window the search scores (a seeded sample when more).
    tuning_users: int = field(default=20_000, metadata=checks(POSITIVE))


@dataclass(frozen=True)
class RerankConfig:
    """Context boost and diversity applied to the fused scores."""

    # score += season_weight x the item's seasonal lift at as_of (its log month index over the
    # season_days after as_of, through a kernel over neighbouring months, in [-1, 1])
    #        + time_weight x the time fit of user and item (hour of day and weekday profiles).
    # null: chosen on the validation window from the grids (NDCG@10); a number fixes it.
    season_weight: float | None = field(default=None, metadata=checks(NON_NEGATIVE))
    time_weight: float | None = field(default=None, metadata=checks(NON_NEGATIVE))
    season_weights: tuple[float, ...] = field(
        default=(0.0, 0.02, 0.05, 0.1, 0.2), metadata=checks(NON_EMPTY, each(NON_NEGATIVE))
    )
    time_weights: tuple[float, ...] = field(
        default=(0.0, 0.01, 0.03, 0.1), metadata=checks(NON_EMPTY, each(NON_NEGATIVE))
    )
    # the weeks after as_of whose months the lift reads
    season_days: int = field(default=28, metadata=checks(POSITIVE))
    # items with fewer purchase lines get no lift
    season_min_lines: int = field(default=10, metadata=checks(NON_NEGATIVE))
    # profiles are pulled towards the shop's by this many pseudo-lines
    time_prior_lines: int = field(default=10, metadata=checks(NON_NEGATIVE))
    # Maximal marginal relevance over text vectors: lambda * relevance - (1 - lambda) * max
    # similarity to the items already chosen; 1.0 turns diversity off.
    diversity_lambda: float = field(default=0.9, metadata=checks(SHARE))
    # the best-scored candidates MMR chooses the K from
    diversity_pool: int = field(default=30, metadata=checks(POSITIVE))


@dataclass(frozen=True)
class ColdStartConfig:
    """Users and items without enough history."""

    # Users with fewer purchase baskets than this are "light"; their content and co-occurrence
    # candidates (neighbours of what they bought) get light_user_boost added to the fused
    # score in [0, 1] (1.0: they always lead). Measured on Online Retail's validation
    # window any boost costs NDCG (0.05: -0.0007, 0.3: -0.0066), so the default is 0.
    light_user_baskets: int = field(default=3, metadata=checks(NON_NEGATIVE))
    light_user_boost: float = field(default=0.0, metadata=checks(NON_NEGATIVE))
    # New items (no sales before as_of) reach a user only through content similarity; neither
    # ALS nor the hybrid model knows them, so their final score is new_item_weight x their
    # similarity relative to the user's most similar content candidate (in [0, 1], the scale
    # of the fused scores). At most new_item_share of a list's K slots go to them.
    new_item_weight: float = field(default=1.0, metadata=checks(NON_NEGATIVE))
    new_item_share: float = field(default=0.2, metadata=checks(SHARE))
    # Country lists for users without history: recency-weighted popularity in the country
    # plus this weight times its popularity in the same weeks of the previous year.
    seasonal_weight: float = field(default=1.0, metadata=checks(NON_NEGATIVE))
    # countries with fewer buyers use the global list
    min_country_buyers: int = field(default=20, metadata=checks(NON_NEGATIVE))


@dataclass(frozen=True)
class RecommendConfig:
    """``shoprec recommend``: gold.recommendations for every known user, plus cold-start lists."""

    k: int = field(default=10, metadata=checks(POSITIVE))
    # the hybrid version that scores (registry alias)
    model_alias: str = field(default="champion", metadata=checks(NON_EMPTY))
    recent_items: int = field(default=10, metadata=checks(POSITIVE))  # seeds for co-occurrence and content
    content_neighbours: int = field(default=20, metadata=checks(POSITIVE))  # text-vector neighbours per item
    # Items a user bought before: allow (reorders welcome), exclude, or consumables (only
    # items at least min_repeat_rate of whose buyers bought them in two or more baskets).
    rebuy: Literal["allow", "exclude", "consumables"] = "allow"
    min_repeat_rate: float = field(default=0.3, metadata=checks(SHARE))
    pool: RecommendPoolConfig = field(default_factory=RecommendPoolConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)


@dataclass(frozen=True)
class RankerParamsConfig:
    """Hyperparameters of the gradient-boosted ranker (XGBoost's names, ``xgboost.XGBRanker``)."""

    objective: Literal["rank:ndcg", "rank:pairwise", "rank:map"] = "rank:ndcg"
    eval_metric: str = field(default="ndcg@10", metadata=checks(NON_EMPTY))  # early stopping watches it
    n_estimators: int = field(default=300, metadata=checks(POSITIVE))  # boosting rounds, at most
    early_stopping_rounds: int = field(default=20, metadata=checks(POSITIVE))
    learning_rate: float = field(default=0.1, metadata=checks(POSITIVE))
    max_depth: int = field(default=6, metadata=checks(POSITIVE))
    min_child_weight: float = field(default=1.0, metadata=checks(NON_NEGATIVE))
    subsample: float = field(default=1.0, metadata=checks(POSITIVE, SHARE))
    colsample_bytree: float = field(default=1.0, metadata=checks(POSITIVE, SHARE))
    reg_lambda: float = field(default=1.0, metadata=checks(NON_NEGATIVE))
    # Pairs per document of the LambdaMART gradient ("topk": the top lambdarank_num_pair_per_sample).
    lambdarank_pair_method: Literal["topk", "mean"] = "topk"
    lambdarank_num_pair_per_sample: int = field(default=10, metadata=checks(POSITIVE))


@dataclass(frozen=True)
class RankerConfig:
    """``shoprec train-ranker``: the learned second-stage ranker over the candidate pool."""

    # Users of the validation window whose pools make the training set (a seeded sample when more).
    max_users: int = field(default=20_000, metadata=checks(POSITIVE))
    # Share of those users held out: early stopping and the validation NDCG@10 the registry compares.
    validation_share: float = field(default=0.2, metadata=checks(POSITIVE, SHARE))
    seed: int = field(default=42, metadata=checks(SEED))
    # XGBoost workers (one Spark barrier task each): the session's default parallelism, at most this.
    max_workers: int = field(default=8, metadata=checks(POSITIVE))
    # Item trend: buyers in the last trend_days before the cutoff against the trend_days before.
    trend_days: int = field(default=28, metadata=checks(POSITIVE))
    # Users whose pool holds none of their window purchases teach a ranking nothing: left out of
    # the booster's training and early-stopping data (still counted in the validation NDCG@10).
    drop_users_without_positives: bool = True
    params: RankerParamsConfig = field(default_factory=RankerParamsConfig)
    registered_model: str = field(default="shoprec-ranker", metadata=checks(NON_EMPTY))


@dataclass(frozen=True)
class BundlesConfig:
    """``shoprec bundles``: association rules over baskets and "bought together" lists."""

    # Baskets (invoices; sessions for event logs) from this many days before as_of.
    history_days: int = field(default=365, metadata=checks(POSITIVE))
    # FPGrowth thresholds. MLlib's defaults (0.3 / 0.8) find almost nothing in retail
    # baskets, where the most common pair is in ~2% of them.
    min_support: float = field(default=0.005, metadata=checks(SHARE))
    min_confidence: float = field(default=0.1, metadata=checks(SHARE))
    min_lift: float = field(default=1.5, metadata=checks(NON_NEGATIVE))
    max_antecedent: int = field(default=2, metadata=checks(POSITIVE))  # items on a rule's left side
    # Larger baskets (wholesale pick lists) are left out of mining, and counted.
    max_basket_items: int = field(default=100, metadata=checks(POSITIVE))
    # FPGrowth numPartitions; null: Spark's default parallelism
    partitions: int | None = field(default=None, metadata=checks(POSITIVE))
    # "frequently bought together" partners kept per item
    per_item: int = field(default=5, metadata=checks(POSITIVE))
    # a user's last baskets that bundle recommendations complete
    recent_baskets: int = field(default=3, metadata=checks(POSITIVE))
    per_user: int = field(default=10, metadata=checks(POSITIVE))
    # Basket completion with a registered hybrid: per-user rank-normalised
    # (1 - w) x rule confidence + w x deep score; 0 keeps the rules' order.
    deep_weight: float = field(default=0.5, metadata=checks(SHARE))
    ks: tuple[int, ...] = field(default=(5, 10), metadata=checks(NON_EMPTY, each(POSITIVE)))
    # the random baseline draws from this many most-bought items
    baseline_pool: int = field(default=50, metadata=checks(POSITIVE))
    seed: int = field(default=42, metadata=checks(SEED))


@dataclass(frozen=True)
class MaintainConfig:
    """``shoprec maintain``: compaction, clean-up and table properties of the Delta tables."""

    # Tables to maintain; empty: every table under the data root.
    tables: tuple[str, ...] = ()
    # OPTIMIZE ... ZORDER BY these columns (the lookup key); other tables are compacted.
    zorder_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # VACUUM keeps every file a version committed within this many hours needs, so time
    # travel inside the window keeps working; it is also the tables' deleted-file retention.
    vacuum_retention_hours: int = field(default=168, metadata=checks(NON_NEGATIVE))
    # Commits (and so time travel) kept in the log; must cover the vacuum window.
    log_retention_days: int = field(default=30, metadata=checks(POSITIVE))
    checkpoint_interval: int = field(default=10, metadata=checks(POSITIVE))
    # Tables whose changes downstream readers follow (Delta's Change Data Feed).
    change_data_feed: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamConfig:
    """``shoprec stream``: new events (files landing in a folder, or a Kafka topic), ingested as they arrive."""

    # Where producers land finished event-log files (written elsewhere, then renamed in, as
    # Spark's file source expects); relative paths are under the data root.
    landing: str = field(default="_landing/events", metadata=checks(NON_EMPTY))
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    # The query's name: its checkpoint is <data_root>/_checkpoints/stream/<name>.
    name: str = field(default="events", metadata=checks(NON_EMPTY))
    trigger_seconds: float = field(default=5.0, metadata=checks(POSITIVE))
    max_files_per_trigger: int = field(default=100, metadata=checks(POSITIVE))
    # Where events come from: files landing in `landing`, or a Kafka topic (one message, one
    # event: its value the event's JSON) through Spark's Kafka source (docs/streaming.md).
    source: Literal["landing", "kafka"] = "landing"
    kafka_bootstrap_servers: str = field(default="127.0.0.1:9092", metadata=checks(NON_EMPTY))
    kafka_topic: str = field(default="shoprec.events", metadata=checks(NON_EMPTY))  # or a,b,c
    # Where a new query (no checkpoint yet) starts: earliest, latest, or Spark's JSON of offsets.
    kafka_starting_offsets: str = field(default="earliest", metadata=checks(NON_EMPTY))
    kafka_max_offsets_per_trigger: int = field(default=100_000, metadata=checks(POSITIVE))
    # Stop when messages the checkpoint expects are gone (retention, a recreated topic) instead
    # of skipping them unseen.
    kafka_fail_on_data_loss: bool = True
    # Further Kafka consumer settings, e.g. security.protocol, sasl.mechanism, sasl.jaas.config
    # (passed as kafka.<name>). Logged masked: a name with password, key, secret or jaas in it.
    kafka_options: Mapping[str, str] = field(default_factory=dict)
    # After each batch, fresh lists in gold.live_recommendations for the users it touched
    # (stages.live: fold-in ALS, the recommend scoring); off: the stream only ingests.
    live_lists: bool = True


@dataclass(frozen=True)
class ServeConfig:
    """``shoprec serve``: the online API over the newest gold snapshot."""

    # Loopback unless told otherwise: put a reverse proxy (TLS, auth, rate limits) in front.
    host: str = field(default="127.0.0.1", metadata=checks(NON_EMPTY))
    port: int = field(default=8000, metadata=checks(PORT))
    workers: int = field(default=1, metadata=checks(POSITIVE))
    # How often the server looks for new Delta versions of the tables it serves.
    refresh_seconds: float = field(default=2.0, metadata=checks(POSITIVE))
    # Request-time context: score + season_weight x (seasonal lift at the request's date -
    # lift at as_of) + moment_weight x the item's fit to the request's hour and weekday.
    season_weight: float = field(default=0.05, metadata=checks(NON_NEGATIVE))
    moment_weight: float = field(default=0.03, metadata=checks(NON_NEGATIVE))
    # The in-memory session: a user's carts and purchases posted within this many minutes.
    session_minutes: float = field(default=30.0, metadata=checks(POSITIVE))
    # Bought-together partners each carted or bought item of the session brings to the top.
    session_partners: int = field(default=3, metadata=checks(POSITIVE))
    max_events_per_request: int = field(default=1000, metadata=checks(POSITIVE))
    # stream.source=kafka: how long POST /v1/events waits for the broker's acks (acks=all) of
    # a request's events before answering 503; also the producer's message.timeout.ms, so an
    # event not acked by then is reported failed rather than sent later behind the answer.
    kafka_timeout_s: float = field(default=10.0, metadata=checks(POSITIVE))
    # Further producer settings, by librdkafka's names (the API's client is librdkafka, the
    # stream's is Java's): TLS and SASL here, e.g. sasl.username, sasl.password: ${VAR},
    # ssl.ca.location. They win over what is carried from stream.kafka_options. Logged masked.
    kafka_producer_options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of one run."""

    env: str
    conf_dir: str
    spark: SparkConfig = field(default_factory=SparkConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    als: AlsConfig = field(default_factory=AlsConfig)
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    bundles: BundlesConfig = field(default_factory=BundlesConfig)
    maintain: MaintainConfig = field(default_factory=MaintainConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    @property
    def data_root(self) -> str:
        return self.storage.data_root

    @property
    def project_root(self) -> Path:
        """The folder that holds conf/ (relative input paths resolve against it)."""
        return Path(self.conf_dir).resolve().parent

    def resolve_path(self, path: str) -> str:
        """Absolute form of a config path; URIs (s3://, dbfs:/, ...) pass through."""
        if paths.is_uri(path):
            return path
        p = Path(os.path.expanduser(path))
        if not p.is_absolute():
            cwd_candidate = Path.cwd() / p
            p = cwd_candidate if cwd_candidate.exists() else self.project_root / p
        return str(p.resolve())

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists, secrets included; log ``masked(cfg.to_dict())`` instead."""
        return _to_plain(self)


_CONFIG_HINTS = typing.get_type_hints(Config)
# Section name -> its dataclass; one YAML file per section.
SECTIONS: dict[str, type] = {
    f.name: _CONFIG_HINTS[f.name] for f in dataclasses.fields(Config) if f.name not in ("env", "conf_dir")
}


# ----------------------------------------------------------------------------- loading
def default_conf_dir() -> Path:
    """conf/ of the source checkout, else the copy shipped inside the wheel."""
    env = os.environ.get(CONF_DIR_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "conf"  # libs/shoprec/config.py -> <repo>/conf
    if (checkout / "base").is_dir():
        return checkout
    return here.parent / "_conf"


def load_config(
    env: str = "local",
    overrides: list[str] | tuple[str, ...] = (),
    conf_dir: str | Path | None = None,
    data_root: str | None = None,
) -> Config:
    """Load base + ``env`` overlay, apply ``key=value`` overrides, return a frozen Config.

    ``data_root`` (the ``--data-root`` option) wins over ``SHOPREC_DATA_ROOT``, which wins
    over ``storage.data_root`` from the files.
    """
    conf_path = Path(conf_dir) if conf_dir else default_conf_dir()
    if not (conf_path / "base").is_dir():
        raise ConfigError(
            f"config folder {conf_path} has no base/ subfolder",
            hint=f"pass --conf-dir or set {CONF_DIR_ENV} to the project's conf/ folder",
        )
    if env not in ENVS and not (conf_path / env).is_dir():
        raise ConfigError(f"unknown environment '{env}'", hint=f"use one of {', '.join(ENVS)}")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for layer in ("base", env):
        for yml in sorted((conf_path / layer).glob("*.yml")):
            _merge_file(merged, origin, yml)
    for item in overrides:
        _apply_override(merged, origin, item)
    env_root = os.environ.get(DATA_ROOT_ENV)
    for value, where in ((env_root, f"${DATA_ROOT_ENV}"), (data_root, "--data-root")):
        if value:
            merged.setdefault("storage", {})["data_root"] = value
            origin["storage.data_root"] = where
    sections = {}
    for name, cls in SECTIONS.items():
        sections[name] = _build(cls, merged.get(name, {}), name, origin)
    cfg = Config(env=env, conf_dir=str(conf_path.resolve()), **sections)
    root = cfg.resolve_path(cfg.storage.data_root) if "://" not in cfg.storage.data_root else cfg.storage.data_root
    return dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, data_root=root))


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, path: str, line: int, first_line: int):
        super().__init__(f"duplicate key {path!r} on line {line} (first on line {first_line})")
        self.path, self.line, self.first_line = path, line, first_line


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key given twice in one mapping is an error (PyYAML
    silently keeps the last) and dates stay strings: config dates are text, checked with the
    key named (PyYAML's own date constructor crashes on an impossible date like 2011-13-01).
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique(node, "", set())
        return super().construct_document(node)

    def _check_unique(self, node: yaml.Node, path: str, seen: set[int]) -> None:
        if id(node) in seen:  # an alias of a node already walked
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                dotted = f"{path}.{key}" if path else str(key)
                line = key_node.start_mark.line + 1
                if key in first:
                    raise _DuplicateKey(dotted, line, first[key])
                first[key] = line
                self._check_unique(value_node, dotted, seen)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_unique(item, f"{path}[{i}]", seen)


_ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _merge_file(merged: dict, origin: dict, yml: Path) -> None:
    section = yml.stem
    if section not in SECTIONS:
        raise ConfigError(
            f"{yml}: unknown config section '{section}'",
            hint=f"config files are named after sections: {', '.join(sorted(SECTIONS))}",
        )
    try:
        data = yaml.load(yml.read_text(), Loader=_ConfigLoader) or {}
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{yml}: duplicate key '{section}.{dup.path}' on line {dup.line} (first on line {dup.first_line})",
            hint="YAML keeps only the last of repeated keys; keep one of them",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{yml}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{yml}: expected a mapping of keys, got {type(data).__name__}")
    _deep_merge(merged.setdefault(section, {}), data, origin, section, str(yml))


def _deep_merge(dst: dict, src: dict, origin: dict, prefix: str, where: str) -> None:
    for key, value in src.items():
        dotted = f"{prefix}.{key}"
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value, origin, dotted, where)
        else:
            dst[key] = value
        _mark(origin, dotted, value, where)


def _mark(origin: dict, dotted: str, value: Any, where: str) -> None:
    origin[dotted] = where
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(origin, f"{dotted}.{k}", v, where)


def _apply_override(merged: dict, origin: dict, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set '{item}' is not key=value", hint="for example --set spark.master=local[2]")
    key, raw = (part.strip() for part in item.split("=", 1))
    parts = key.split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"--set {key}: unknown key", hint=f"keys start with a section: {', '.join(sorted(SECTIONS))}")
    # Walk the typed path; once inside a mapping field the rest is one key, because
    # Spark settings have dots in their names (spark.settings.spark.sql.shuffle.partitions).
    node = merged.setdefault(parts[0], {})
    tp: Any = SECTIONS[parts[0]]
    path = parts[1:]
    while len(path) > 1 and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        if path[0] not in hints:
            break  # unknown key: _build names it with its origin below
        tp = hints[path[0]]
        if typing.get_origin(tp) in (collections.abc.Mapping, dict):
            node = node.setdefault(path[0], {})
            path = [".".join(path[1:])]
            tp = typing.get_args(tp)[1] if typing.get_args(tp) else str
            break
        node = node.setdefault(path[0], {})
        path = path[1:]
    leaf = path[0]
    target = typing.get_type_hints(tp).get(leaf) if dataclasses.is_dataclass(tp) else tp
    value: Any = raw
    if target is not str:  # YAML scalars: 3, true, null, [a, b]
        try:
            value = yaml.load(raw, Loader=_ConfigLoader)
        except _DuplicateKey as dup:
            raise ConfigError(
                f"--set: duplicate key '{dup.path}' in the value of '{key}'", hint="give each key once"
            ) from None
        except yaml.YAMLError:
            value = raw
    node[leaf] = value
    origin[key] = "--set"


# ----------------------------------------------------------------------------- typing
def _build(cls: type, data: Any, where: str, origin: dict) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{_origin(origin, where)}: '{where}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        key = f"{where}.{unknown[0]}"
        raise ConfigError(
            f"{_origin(origin, key)}: unknown config key '{key}'",
            hint=f"known keys of '{where}': {', '.join(sorted(known))}",
        )
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}", origin) for name, value in data.items()}
    built = cls(**kwargs)
    _check(built, where, origin)
    return built


def _check(obj: Any, where: str, origin: dict) -> None:
    """Apply the rules each field of ``obj`` declares (defaults included)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for rule in f.metadata.get("checks", ()):
            for key, item in _checked_values(rule, value, f"{where}.{f.name}"):
                if item is not None and not rule.ok(item):
                    must = rule.must.format(noun=_noun(item))
                    shown = list(item) if isinstance(item, tuple) else dict(item) if isinstance(item, Mapping) else item
                    raise ConfigError(f"{_origin(origin, key)}: '{key}' must be {must}, got {shown!r}", hint=rule.hint)


def _checked_values(rule: Rule, value: Any, key: str) -> Iterator[tuple[str, Any]]:
    if value is None:
        return
    if rule.entry is not None:
        if rule.entry in value:
            yield f"{key}.{rule.entry}", value[rule.entry]
    elif rule.each:
        if isinstance(value, Mapping):
            yield from ((f"{key}.{k}", v) for k, v in value.items())
        else:
            yield from ((f"{key}[{i}]", v) for i, v in enumerate(value))
    else:
        yield key, value


def _noun(value: Any) -> str:
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "mapping" if isinstance(value, Mapping) else "list"


def _coerce(tp: Any, value: Any, key: str, origin: dict) -> Any:
    if isinstance(value, str):
        value = _interpolate(value, key, origin)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key, origin)
    org = typing.get_origin(tp)
    args = typing.get_args(tp)
    if org in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key, origin)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if org is Literal:
        word = ("on" if value else "off") if isinstance(value, bool) else None
        if word in args:
            value = word  # YAML 1.1 reads a bare on/off as a boolean (jvm_jars has off but no on)
        if value not in args:
            raise _type_error(key, origin, value, "one of " + ", ".join(map(str, args)))
        return value
    if org in (tuple, list, collections.abc.Sequence):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, origin, value, "a list")
        return tuple(_coerce(args[0], v, f"{key}[{i}]", origin) for i, v in enumerate(value))
    if org in (collections.abc.Mapping, dict):
        if value is None:
            return types.MappingProxyType({})
        if not isinstance(value, dict):
            raise _type_error(key, origin, value, "a mapping")
        vt = args[1] if args else str
        return types.MappingProxyType({str(k): _coerce(vt, v, f"{key}.{k}", origin) for k, v in value.items()})
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(key, origin, value, "true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(key, origin, value, "an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _type_error(key, origin, value, "a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise _type_error(key, origin, value, "a string")
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported config type {tp}")


def _interpolate(value: str, key: str, origin: dict) -> str:
    def repl(m: re.Match) -> str:
        name, default = m.group(1), m.group(3)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{_origin(origin, key)}: '{key}' needs environment variable {name}, which is not set",
            hint=f"export {name}=... or use --set {key}=...",
        )

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", repl, value)


def _origin(origin: dict, key: str) -> str:
    probe = re.sub(r"\[\d+\]", "", key)  # a list item comes from where its list came from
    while probe:
        if probe in origin:
            return origin[probe]
        probe = probe.rpartition(".")[0]
    return "config"


def _type_error(key: str, origin: dict, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{_origin(origin, key)}: '{key}' must be {expected}, got {value!r}")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- secrets
MASK = "***"
# Words of a key name (split at . _ - and camelCase) that make its value a secret.
_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "tokens",
        "credential", "credentials", "key", "apikey", "accesskey", "secretkey", "privatekey",
        "sig", "signature", "jaas",
    }
)  # fmt: skip
# scheme://userinfo@ : the userinfo ends at the last @ before the path.
_URI_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s?#]*)@")
# In these the userinfo is a container name, not a credential: abfss://container@account.dfs...
_CONTAINER_SCHEMES = ("abfs://", "abfss://", "wasb://", "wasbs://")
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#\s]+)=(?P<value>[^&;#\s]*)")


def is_secret_name(name: str) -> bool:
    """Whether a key named ``name`` holds a secret (``fs.s3a.secret.key``, ``apiKey``, ``password``)."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(word in _SECRET_WORDS for word in words)


def mask_text(text: str) -> str:
    """``text`` with the credentials of any URI in it masked.

    ``scheme://user:token@host`` -> ``scheme://user:***@host``, ``scheme://token@host`` ->
    ``scheme://***@host``, and secret-looking query parameters (``?token=...``) -> ``***``.

    >>> mask_text("http://alice:s3cr3t@mlflow:5000")
    'http://alice:***@mlflow:5000'
    """

    def userinfo(m: re.Match) -> str:
        scheme, info = m.group("scheme"), m.group("userinfo")
        if ":" in info:
            return f"{scheme}{info.split(':', 1)[0]}:{MASK}@"
        if not info or scheme.lower() in _CONTAINER_SCHEMES:
            return m.group(0)
        return f"{scheme}{MASK}@"

    def param(m: re.Match) -> str:
        if not is_secret_name(m.group("name")) or not m.group("value"):
            return m.group(0)
        return f"{m.group('sep')}{m.group('name')}={MASK}"

    text = _URI_USERINFO.sub(userinfo, text)
    return _QUERY_PARAM.sub(param, text) if "=" in text else text


class MaskingFilter(logging.Filter):
    """A log handler's filter that masks URI credentials in every record (``mask_text``): the
    net under messages that quote a URI or a value a user typed (an error naming the tracking
    URI, a library's connection line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        shown = mask_text(text)
        if shown != text:
            record.msg, record.args = shown, None
        return True


def masked(data: Any) -> Any:
    """A copy of plain config data (``cfg.to_dict()``) that is safe to log or print.

    Values of keys whose name looks secret (token, password, secret, ``*.key``, api_key,
    credentials) become ``***`` unless empty; every string has its URI credentials masked
    (``mask_text``). The real values stay in the Config: only the logged copy is masked.
    """
    if isinstance(data, Mapping):
        return {
            k: MASK if is_secret_name(str(k)) and v not in (None, "", {}, []) else masked(v) for k, v in data.items()
        }
    if isinstance(data, (list, tuple)):
        return [masked(v) for v in data]
    if isinstance(data, str):
        return mask_text(data)
    return data
