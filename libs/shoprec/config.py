"""Typed configuration: ``conf/base/*.yml`` + ``conf/<env>/*.yml`` overlays + ``--set`` overrides.

Each YAML file is one section, named by its file stem (``conf/base/spark.yml`` is the
``spark`` section). Overlays are merged key by key over base; mappings merge, other values
replace. The result is parsed into frozen dataclasses; an unknown or mistyped key is an
error naming the key and the file it came from.

String values may use ``${VAR}`` or ``${VAR:-default}`` to read the environment, which is
how the cluster overlay picks up the remote MLflow tracking URI.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from shoprec.errors import ConfigError

ENVS = ("local", "cluster")
DATA_ROOT_ENV = "SHOPREC_DATA_ROOT"
CONF_DIR_ENV = "SHOPREC_CONF_DIR"


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class SparkConfig:
    """How to get a Spark session (see ``shoprec.spark``)."""

    master: str | None = "local[*]"
    app_name: str = "shoprec"
    # auto: enable Delta's session extensions when the Delta JARs are configured;
    # on/off force it. Only matters for the Spark ("spark") table backend.
    delta_extensions: Literal["auto", "on", "off"] = "auto"
    # auto: put the JVM set bootstrap fetched (jvm/spark/pom.xml: Delta, the Kafka
    # connector) on spark.jars when this process launches the JVM; off: leave it out.
    jvm_jars: Literal["auto", "off"] = "auto"
    # Applied to every session we build or reuse (runtime SQL settings).
    settings: Mapping[str, str] = field(default_factory=dict)
    # Applied only when this process launches the JVM (driver memory and the like);
    # under spark-submit these come from spark-submit itself.
    launch_settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StorageConfig:
    """Where tables live and which Delta backend writes them."""

    data_root: str = "./lakehouse"
    # auto: Spark's own Delta when its classes are on the classpath, else delta-rs.
    delta_backend: Literal["auto", "spark", "local"] = "auto"


@dataclass(frozen=True)
class MlflowConfig:
    """Tracking and registry. Empty URIs mean the embedded default under data_root."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_root: str | None = None
    experiment: str = "shoprec"


@dataclass(frozen=True)
class EventLogColumns:
    """Column names of a generic event log (map your file's names onto ours)."""

    user_id: str = "user_id"
    item_id: str = "item_id"
    event_type: str = "event_type"
    timestamp: str = "event_time"
    session_id: str = "session_id"
    device: str = "device"
    country: str = "country"
    price: str = "price"
    quantity: str = "quantity"


@dataclass(frozen=True)
class IngestConfig:
    """What ``shoprec ingest`` reads and how it validates it."""

    source: Literal["online_retail", "event_log"] = "online_retail"
    inputs: tuple[str, ...] = ()
    # auto picks by extension: .csv/.csv.gz, .jsonl/.json(.gz), .parquet, .xlsx
    format: Literal["auto", "csv", "jsonl", "parquet", "xlsx"] = "auto"
    catalog: str | None = None
    # Timestamps later than ingest time plus this many days are impossible.
    max_future_days: int = 1
    # Timestamps before this date are impossible for a web shop.
    min_date: str = "1995-01-01"
    # Timezone the source's naive timestamps are in (Online Retail: UK local time).
    source_timezone: str = "UTC"
    # Online Retail stock codes that are not products, mapped to their kind.
    non_product_codes: Mapping[str, str] = field(default_factory=dict)
    # Stock-code prefixes that are not products (gift vouchers are gift_0001_10, ...).
    non_product_prefixes: Mapping[str, str] = field(default_factory=dict)
    event_log_columns: EventLogColumns = field(default_factory=EventLogColumns)


@dataclass(frozen=True)
class GenerateConfig:
    """Defaults of the synthetic event-log generator (``shoprec generate``)."""

    users: int = 10_000
    items: int = 2_000
    events: int = 1_000_000
    seed: int = 42
    format: Literal["parquet", "csv", "jsonl"] = "parquet"
    start_date: str = "2023-01-01"
    days: int = 365
    events_per_file: int = 2_000_000
    # Share of rows deliberately broken so the ingest quarantine has work to do.
    bad_row_rate: float = 0.0


@dataclass(frozen=True)
class SplitConfig:
    """The temporal split of EVALUATION.md: history | validation window | as_of | evaluation window."""

    # The training cutoff when --as-of is not given: a date (YYYY-MM-DD), or "auto" for
    # the last event date minus evaluation_days.
    as_of: str = "auto"
    # The last days of history, held out while tuning (hyperparameter search, weights).
    validation_days: int = 28
    # Days from as_of on whose purchases are the ground truth.
    evaluation_days: int = 28


@dataclass(frozen=True)
class TextConfig:
    """Item description vectors learned with Spark ML."""

    vector_size: int = 32
    min_count: int = 2
    window: int = 5
    max_iter: int = 5
    seed: int = 42
    # Hashing TF dimensions for the TF-IDF vectors (used for the text clusters).
    tfidf_features: int = 4096
    # KMeans clusters over the text vectors: the item's category when the source has none.
    clusters: int = 24


@dataclass(frozen=True)
class FeaturesConfig:
    """``shoprec features``: user, item and context features and the implicit confidence."""

    # Implicit confidence of (user, item): sum of event weights times a time decay with
    # this half-life (days before as_of); returns have a negative weight.
    half_life_days: float = 90.0
    event_weights: Mapping[str, float] = field(
        default_factory=lambda: {"view": 0.1, "cart": 0.3, "purchase": 1.0, "return": -1.0}
    )
    # log: an event weighs 1 + ln(quantity) (wholesale lines of 1,000 units do not drown
    # everything else); none: every event weighs the same whatever the quantity.
    quantity_weighting: Literal["none", "log"] = "log"
    price_bands: int = 5
    # Popularity trend: purchases in the last trend_weeks weeks versus the weeks before.
    trend_weeks: int = 4
    # Major holidays: "MM-DD" for fixed dates, or easter / black_friday / mothers_day_uk.
    holidays: tuple[str, ...] = ("01-01", "02-14", "easter", "mothers_day_uk", "10-31", "black_friday", "12-25")
    text: TextConfig = field(default_factory=TextConfig)


@dataclass(frozen=True)
class AlsSearchConfig:
    """Grid searched by ``shoprec train-als`` (NDCG@10 on the validation window)."""

    rank: tuple[int, ...] = (32, 64)
    reg_param: tuple[float, ...] = (0.01, 0.1)
    alpha: tuple[float, ...] = (1.0, 10.0)
    # When the grid is larger, this many combinations are drawn from it (seeded).
    max_trials: int = 8
    seed: int = 42


@dataclass(frozen=True)
class AlsConfig:
    """Spark MLlib ALS with implicit preferences on gold.confidence."""

    rank: int = 64
    max_iter: int = 10
    reg_param: float = 0.1
    alpha: float = 10.0
    # User and item blocks; null: the session's default parallelism (not MLlib's 10,
    # which on 2 cores is 10 tiny tasks per stage).
    num_blocks: int | None = None
    checkpoint_interval: int = 5
    # null: <data_root>/_checkpoints/als
    checkpoint_dir: str | None = None
    seed: int = 42
    # false: train once with the values above, no search.
    tune: bool = True
    search: AlsSearchConfig = field(default_factory=AlsSearchConfig)
    registered_model: str = "shoprec-als"


@dataclass(frozen=True)
class CandidatesConfig:
    """Top-N candidates per user and source (gold.candidates)."""

    n: int = 50
    # true: items the user bought before as_of are never candidates.
    exclude_bought: bool = False
    # Users per matrix product in the blocked ALS top-N; null: sized so one block's
    # score matrix stays under block_mb.
    block_users: int | None = None
    block_mb: int = 64
    # Popularity baselines weigh a purchase by a decay with this half-life (days).
    popularity_half_life_days: float = 30.0
    # Hour-of-day buckets for the popular-by-hour baseline (bucket starts, hours).
    hour_buckets: tuple[int, ...] = (0, 6, 12, 18)
    # Co-occurrence: partners of the user's most recent items, from baskets.
    recent_items: int = 10
    min_cooccurrence: int = 2
    # Baskets with more distinct items than this are skipped (wholesale pick lists).
    max_basket_items: int = 100


@dataclass(frozen=True)
class EvaluateConfig:
    """``shoprec evaluate``: metrics of EVALUATION.md over the evaluation window."""

    ks: tuple[int, ...] = (5, 10, 20)
    # AUC: sampled negatives per held-out positive.
    auc_negatives: int = 20
    seed: int = 42


@dataclass(frozen=True)
class HybridModelConfig:
    """Sizes and switches of the NeuMF-style hybrid network (shoprec.hybrid.model)."""

    embedding_dim: int = 32  # user/item embeddings of each tower
    mlp_layers: tuple[int, ...] = (128, 64, 32)
    context_embedding_dim: int = 4  # hour, weekday, season, country, device, category, price band
    dropout: float = 0.3
    l2: float = 1.0e-6
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
    negatives: int = 4
    sampling_power: float = 0.75
    validation_negatives: int = 10
    seed: int = 42
    # Horovod: processes (horovodrun -np locally, horovod.spark.run num_proc on a cluster).
    num_proc: int = 2
    launcher: Literal["auto", "horovodrun", "spark"] = "auto"
    shards_per_rank: int = 2
    # null: the machine's cores / num_proc, so ranks do not oversubscribe cores.
    threads_per_rank: int | None = None
    epochs: int = 8
    batch_size: int = 1024  # per rank
    learning_rate: float = 0.001  # scaled by the number of ranks
    # Early stopping on validation NDCG@10 (each positive ranked among its negatives).
    patience: int = 2
    model: HybridModelConfig = field(default_factory=HybridModelConfig)
    registered_model: str = "shoprec-hybrid"
    # Candidates re-ranked by the model for the evaluation: per user, ALS top-N, the
    # items they bought, and the globally popular ones.
    rerank_pool: int = 50
    # Training examples and the model live under <data_root>/<work_dir>/<as_of>.
    work_dir: str = "_hybrid"


@dataclass(frozen=True)
class RecommendPoolConfig:
    """Candidates per user and source gathered before scoring (0 turns a source off)."""

    als: int = 50  # ALS top-N
    repeat: int = 20  # the user's own most recent purchases
    cooccurrence: int = 30  # bought together with the user's recent items
    content: int = 30  # text-vector neighbours of the user's recent items
    popular: int = 30  # popular in the user's country and season
    bundle: int = 10  # rules of gold.bundles fired by the user's recent baskets (shoprec bundles)


@dataclass(frozen=True)
class FusionConfig:
    """final = w * CF score + (1 - w) * deep score, both normalised per user."""

    normalisation: Literal["minmax", "rank"] = "rank"
    # The grid searched on the validation window; ``weight`` set skips the search.
    weights: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    weight: float | None = None
    # Users of the validation window the search scores (a seeded sample when more).
    tuning_users: int = 20_000


@dataclass(frozen=True)
class RerankConfig:
    """Context boost and diversity applied to the fused scores."""

    # score += season_weight x the item's seasonal lift at as_of (its log month index over the
    # season_days after as_of, through a kernel over neighbouring months, in [-1, 1])
    #        + time_weight x the time fit of user and item (hour of day and weekday profiles).
    # null: chosen on the validation window from the grids (NDCG@10); a number fixes it.
    season_weight: float | None = None
    time_weight: float | None = None
    season_weights: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2)
    time_weights: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1)
    season_days: int = 28  # the weeks after as_of whose months the lift reads
    season_min_lines: int = 10  # items with fewer purchase lines get no lift
    time_prior_lines: int = 10  # profiles are pulled towards the shop's by this many pseudo-lines
    # Maximal marginal relevance over text vectors: lambda * relevance - (1 - lambda) * max
    # similarity to the items already chosen; 1.0 turns diversity off.
    diversity_lambda: float = 0.9
    diversity_pool: int = 30  # the best-scored candidates MMR chooses the K from


@dataclass(frozen=True)
class ColdStartConfig:
    """Users and items without enough history."""

    # Users with fewer purchase baskets than this are "light"; their content and co-occurrence
    # candidates (neighbours of what they bought) get light_user_boost added to the fused
    # score in [0, 1] (1.0: they always lead). Measured on Online Retail's validation
    # window any boost costs NDCG (0.05: -0.0007, 0.3: -0.0066), so the default is 0.
    light_user_baskets: int = 3
    light_user_boost: float = 0.0
    # New items (no sales before as_of) reach a user only through content similarity; neither
    # ALS nor the hybrid model knows them, so their final score is new_item_weight x their
    # similarity relative to the user's most similar content candidate (in [0, 1], the scale
    # of the fused scores). At most new_item_share of a list's K slots go to them.
    new_item_weight: float = 1.0
    new_item_share: float = 0.2
    # Country lists for users without history: recency-weighted popularity in the country
    # plus this weight times its popularity in the same weeks of the previous year.
    seasonal_weight: float = 1.0
    min_country_buyers: int = 20  # countries with fewer buyers use the global list


@dataclass(frozen=True)
class RecommendConfig:
    """``shoprec recommend``: gold.recommendations for every known user, plus cold-start lists."""

    k: int = 10
    model_alias: str = "champion"  # the hybrid version that scores (registry alias)
    recent_items: int = 10  # seeds for co-occurrence and content neighbours
    content_neighbours: int = 20  # text-vector neighbours kept per item
    # Items a user bought before: allow (reorders welcome), exclude, or consumables (only
    # items at least min_repeat_rate of whose buyers bought them in two or more baskets).
    rebuy: Literal["allow", "exclude", "consumables"] = "allow"
    min_repeat_rate: float = 0.3
    pool: RecommendPoolConfig = field(default_factory=RecommendPoolConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)


@dataclass(frozen=True)
class BundlesConfig:
    """``shoprec bundles``: association rules over baskets and "bought together" lists."""

    # Baskets (invoices; sessions for event logs) from this many days before as_of.
    history_days: int = 365
    # FPGrowth thresholds. MLlib's defaults (0.3 / 0.8) find almost nothing in retail
    # baskets, where the most common pair is in ~2% of them.
    min_support: float = 0.005
    min_confidence: float = 0.1
    min_lift: float = 1.5
    max_antecedent: int = 2  # items on a rule's left side
    # Larger baskets (wholesale pick lists) are left out of mining, and counted.
    max_basket_items: int = 100
    partitions: int | None = None  # FPGrowth numPartitions; null: Spark's default parallelism
    per_item: int = 5  # "frequently bought together" partners kept per item
    recent_baskets: int = 3  # a user's last baskets that bundle recommendations complete
    per_user: int = 10
    # Basket completion with a registered hybrid: per-user rank-normalised
    # (1 - w) x rule confidence + w x deep score; 0 keeps the rules' order.
    deep_weight: float = 0.5
    ks: tuple[int, ...] = (5, 10)
    baseline_pool: int = 50  # the random baseline draws from this many most-bought items
    seed: int = 42


@dataclass(frozen=True)
class MaintainConfig:
    """``shoprec maintain``: compaction, clean-up and table properties of the Delta tables."""

    # Tables to maintain; empty: every table under the data root.
    tables: tuple[str, ...] = ()
    # OPTIMIZE ... ZORDER BY these columns (the lookup key); other tables are compacted.
    zorder_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # VACUUM keeps every file a version committed within this many hours needs, so time
    # travel inside the window keeps working; it is also the tables' deleted-file retention.
    vacuum_retention_hours: int = 168
    # Commits (and so time travel) kept in the log; must cover the vacuum window.
    log_retention_days: int = 30
    checkpoint_interval: int = 10
    # Tables whose changes downstream readers follow (Delta's Change Data Feed).
    change_data_feed: tuple[str, ...] = ()


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
    bundles: BundlesConfig = field(default_factory=BundlesConfig)
    maintain: MaintainConfig = field(default_factory=MaintainConfig)

    @property
    def data_root(self) -> str:
        return self.storage.data_root

    @property
    def project_root(self) -> Path:
        """The folder that holds conf/ (relative input paths resolve against it)."""
        return Path(self.conf_dir).resolve().parent

    def resolve_path(self, path: str) -> str:
        """Absolute form of a config path; URIs (s3://, dbfs:/, ...) pass through."""
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/", path):
            return path
        p = Path(os.path.expanduser(path))
        if not p.is_absolute():
            cwd_candidate = Path.cwd() / p
            p = cwd_candidate if cwd_candidate.exists() else self.project_root / p
        return str(p.resolve())

    def to_dict(self) -> dict[str, Any]:
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


def _merge_file(merged: dict, origin: dict, yml: Path) -> None:
    section = yml.stem
    if section not in SECTIONS:
        raise ConfigError(
            f"{yml}: unknown config section '{section}'",
            hint=f"config files are named after sections: {', '.join(sorted(SECTIONS))}",
        )
    try:
        data = yaml.safe_load(yml.read_text()) or {}
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
            value = yaml.safe_load(raw)
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
    return cls(**kwargs)


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
    probe = key
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
