"""Model registry rule shared by every trained model: challenger, promoted to champion only when better.

A newly registered version always gets the alias ``challenger``. It becomes
``champion`` when there is no champion yet, or when its validation metric beats the
champion's (stored on each version as a tag when it was registered). The decision and
both numbers are logged to the active MLflow run and tagged on the new version.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    metric: str
    value: float
    champion_value: float | None  # the champion's metric before this registration
    promoted: bool

    @property
    def alias(self) -> str:
        return CHAMPION if self.promoted else CHALLENGER

    def describe(self) -> str:
        before = "none" if self.champion_value is None else f"{self.champion_value:.4f}"
        verdict = "promoted to champion" if self.promoted else "stays challenger"
        return f"{self.name} v{self.version}: {self.metric} {self.value:.4f} vs champion {before} -> {verdict}"


def should_promote(value: float, champion_value: float | None, higher_is_better: bool = True) -> bool:
    """The promotion rule: no champion yet, or strictly better than it."""
    if champion_value is None:
        return True
    return value > champion_value if higher_is_better else value < champion_value


MODEL_DESCRIPTIONS = {
    "shoprec-als": "Spark MLlib ALS on implicit confidence (gold.confidence). Scores user-item pairs "
                   "by factor dot product; shoprec train-als registers a version per as_of and "
                   "promotes it to champion when its validation NDCG@10 beats the champion's.",
    "shoprec-hybrid": "Hybrid deep recommender (TensorFlow, trained with Horovod): neural collaborative "
                      "filtering + item text + time and context features. Served by shoprec recommend "
                      "through the champion alias; promoted when its validation NDCG@10 beats the champion's.",
}


def register_and_promote(
    model_uri: str, name: str, metric: str, value: float, higher_is_better: bool = True,
    tags: dict[str, str] | None = None, description: str | None = None,
) -> Registration:
    """Register ``model_uri`` as a new version of ``name`` and apply the promotion rule.

    ``description`` goes on the version (what it was trained on); the registered model gets
    its ``MODEL_DESCRIPTIONS`` entry, so the MLflow UI says what each model is."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    version = mlflow.register_model(model_uri, name, tags={metric: str(value), **(tags or {})}).version
    if name in MODEL_DESCRIPTIONS:
        client.update_registered_model(name, description=MODEL_DESCRIPTIONS[name])
    if description:
        client.update_model_version(name, version, description=description)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
        champion_value = _metric_of(champion, metric)
    except MlflowException:  # no champion yet
        champion_value = None
    promoted = should_promote(value, champion_value, higher_is_better)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    registration = Registration(name, str(version), metric, value, champion_value, promoted)
    client.set_model_version_tag(name, version, "shoprec.promotion", registration.describe())
    if mlflow.active_run():
        mlflow.log_metrics({
            f"registry.{metric}": value,
            **({f"registry.champion_{metric}": champion_value} if champion_value is not None else {}),
            "registry.promoted": float(promoted),
        })
        mlflow.set_tags({"shoprec.model_version": str(version), "shoprec.promotion": registration.describe()})
    log.info("%s", registration.describe())
    return registration


def _metric_of(version, metric: str) -> float | None:
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
