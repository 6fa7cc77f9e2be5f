"""Model registry rule shared by every trained model: challenger, promoted to champion only when better.

A newly registered version always gets the alias ``challenger``. It becomes
``champion`` when there is no champion yet, or when its validation metric beats the
champion's (stored on each version as a tag when it was registered), unless it was
trained as of an earlier date than the champion: a backfill (``--as-of`` in the past) is
validated on another window and knows less, so it never replaces a model trained on later
data. The decision and both numbers are logged to the active MLflow run and tagged on the
new version.

Serving as of a date uses ``version_for``: the alias's version when it was trained as of
that date or before, else the newest version that was (never a model that saw the future).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


AS_OF_TAG = "shoprec.as_of"  # the cutoff a version was trained as of (ISO date)
AS_OF_TAGS = (AS_OF_TAG, "as_of")  # "as_of": how ALS versions were tagged before


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    metric: str
    value: float
    champion_value: float | None  # the champion's metric before this registration
    promoted: bool
    as_of: str | None = None
    champion_as_of: str | None = None

    @property
    def alias(self) -> str:
        return CHAMPION if self.promoted else CHALLENGER

    def describe(self) -> str:
        before = "none" if self.champion_value is None else f"{self.champion_value:.4f}"
        verdict = "promoted to champion" if self.promoted else "stays challenger"
        if not self.promoted and _older(self.as_of, self.champion_as_of):
            verdict += f" (trained as of {self.as_of}, before the champion's {self.champion_as_of})"
        return f"{self.name} v{self.version}: {self.metric} {self.value:.4f} vs champion {before} -> {verdict}"


def _older(as_of: str | None, champion_as_of: str | None) -> bool:
    return bool(as_of and champion_as_of and as_of < champion_as_of)  # ISO dates sort as strings


def should_promote(
    value: float,
    champion_value: float | None,
    higher_is_better: bool = True,
    as_of: str | None = None,
    champion_as_of: str | None = None,
) -> bool:
    """The promotion rule: no champion yet, or not trained on older data than the champion
    and strictly better than it."""
    if champion_value is None:
        return True
    if _older(as_of, champion_as_of):
        return False
    return value > champion_value if higher_is_better else value < champion_value


def as_of_of(version: ModelVersion) -> str | None:
    """The cutoff a model version was trained as of (ISO date), from its tags."""
    tags = version.tags or {}
    return next((tags[t] for t in AS_OF_TAGS if tags.get(t)), None)


def version_for(name: str, alias: str, as_of: str) -> tuple[ModelVersion | None, str]:
    """(the version to serve ``as_of`` with, a note): the alias's version when trained as of
    ``as_of`` or before; else the newest version trained by then (the alias's would score
    with what happened after as_of); (None, why) when no version qualifies or none has the alias."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        aliased = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, f"no {name}@{alias}"
    trained = as_of_of(aliased)
    if trained is None or trained <= as_of:
        return aliased, ""
    usable = [v for v in client.search_model_versions(f"name='{name}'") if (as_of_of(v) or "9999") <= as_of]
    if not usable:
        return None, (
            f"{name}@{alias} (v{aliased.version}) is trained as of {trained}, after {as_of}, and no version is older"
        )
    best = max(usable, key=lambda v: (as_of_of(v), int(v.version)))
    return best, (
        f"{alias} v{aliased.version} is trained as of {trained}, after {as_of}: "
        f"v{best.version} (as of {as_of_of(best)}) serves instead"
    )


MODEL_DESCRIPTIONS = {
    "shoprec-als": "Spark MLlib ALS on implicit confidence (gold.confidence). Scores user-item pairs "
    "by factor dot product; shoprec train-als registers a version per as_of and "
    "promotes it to champion when its validation NDCG@10 beats the champion's.",
    "shoprec-hybrid": "Hybrid deep recommender (TensorFlow, trained with Horovod): neural collaborative "
    "filtering + item text + time and context features. Served by shoprec recommend "
    "through the champion alias; promoted when its validation NDCG@10 beats the champion's.",
    "shoprec-ranker": "Gradient-boosted ranker (XGBoost, trained on Spark with SparkXGBRanker) over the "
    "candidate pool of every source with point-in-time features; shoprec train-ranker registers a "
    "version per as_of and promotes it when its validation NDCG@10 beats the champion's.",
}


def register_and_promote(
    model_uri: str,
    name: str,
    metric: str,
    value: float,
    higher_is_better: bool = True,
    tags: dict[str, str] | None = None,
    description: str | None = None,
    as_of: str | None = None,
) -> Registration:
    """Register ``model_uri`` as a new version of ``name`` and apply the promotion rule.

    ``description`` goes on the version (what it was trained on); the registered model gets
    its ``MODEL_DESCRIPTIONS`` entry, so the MLflow UI says what each model is."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    tags = {metric: str(value), **(tags or {}), **({AS_OF_TAG: as_of} if as_of else {})}
    version = mlflow.register_model(model_uri, name, tags=tags).version
    if name in MODEL_DESCRIPTIONS:
        client.update_registered_model(name, description=MODEL_DESCRIPTIONS[name])
    if description:
        client.update_model_version(name, version, description=description)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
        champion_value, champion_as_of = _metric_of(champion, metric), as_of_of(champion)
    except MlflowException:  # no champion yet
        champion_value, champion_as_of = None, None
    promoted = should_promote(value, champion_value, higher_is_better, as_of, champion_as_of)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    registration = Registration(name, str(version), metric, value, champion_value, promoted, as_of, champion_as_of)
    client.set_model_version_tag(name, version, "shoprec.promotion", registration.describe())
    if mlflow.active_run():
        mlflow.log_metrics(
            {
                f"registry.{metric}": value,
                **({f"registry.champion_{metric}": champion_value} if champion_value is not None else {}),
                "registry.promoted": float(promoted),
            }
        )
        mlflow.set_tags({"shoprec.model_version": str(version), "shoprec.promotion": registration.describe()})
    log.info("%s", registration.describe())
    return registration


def _metric_of(version: ModelVersion, metric: str) -> float | None:
    raw = (version.tags or {}).get(metric)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def set_alias(name: str, version: str | int, alias: str = CHAMPION, note: str = "") -> str:
    """Point ``alias`` of ``name`` at ``version`` by hand (a notebook's "promote" button), and
    record who decided it on the version: the rule above is bypassed, so say why in ``note``."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.get_model_version(name, str(version))  # fails clearly when the version does not exist
    client.set_registered_model_alias(name, alias, str(version))
    text = f"{name} v{version}: {alias} set by hand" + (f" ({note})" if note else "")
    client.set_model_version_tag(name, str(version), "shoprec.promotion", text)
    log.info("%s", text)
    return text
