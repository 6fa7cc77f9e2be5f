"""Registered models, resolved for a cutoff: the version of the serving hybrid that may serve as_of."""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import date
from typing import TYPE_CHECKING

import yaml

from shoprec.hybrid import pyfunc
from shoprec.hybrid.serving import ServingModel
from shoprec.registry import version_for

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


def resolve(name: str, alias: str, cache_root: str, as_of: date) -> ServingModel | None:
    """The version of ``name`` that serves ``as_of``, downloaded: the one behind ``alias``,
    never one trained on later data (``registry.version_for``); None when there is none."""
    import mlflow

    version, note = version_for(name, alias, as_of.isoformat())
    if version is None:
        log.warning("no serving model: %s", note)
        return None
    if note:
        log.warning("%s", note)
    folder = os.path.join(os.path.abspath(cache_root), _folder_name(name, version))
    if not os.path.exists(os.path.join(folder, "MLmodel")):
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=folder)
    with open(os.path.join(folder, "MLmodel")) as fh:
        artifacts = yaml.safe_load(fh)["flavors"]["python_function"]["artifacts"]
    return ServingModel(
        name,
        str(version.version),
        alias,
        folder,
        os.path.join(folder, artifacts[pyfunc.KERAS_MODEL]["path"]),
        os.path.join(folder, artifacts[pyfunc.MANIFEST]["path"]),
        note,
    )


def _folder_name(name: str, version: ModelVersion) -> str:
    """``<name>-v<n>-<digest>``: the digest tells apart version n of two registries.

    Executors keep shipped folders by their base name for the whole Spark application, and
    Spark refuses a second folder under a name it already holds with other contents. One
    long-lived session can serve models from several registries (a notebook pointed at two
    data roots, the test suite), and each starts counting versions at 1.
    """
    import mlflow

    identity = "|".join(
        str(x) for x in (mlflow.get_registry_uri(), name, version.version, version.run_id, version.creation_timestamp)
    )
    return f"{name}-v{version.version}-{hashlib.sha1(identity.encode()).hexdigest()[:10]}"
