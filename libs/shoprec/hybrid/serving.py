"""The serving hybrid model: resolved by registry alias, shipped to the executors, scored in Spark.

The registered pyfunc holds the Keras SavedModel and the manifest as artifacts; the
recommend stage downloads that version once (cached under ``<data_root>/_models``), adds
the folder to the Spark job (``SparkContext.addFile`` in local mode, a zip through
``addArchive`` on a cluster, so executors on other machines get it too) and scores with ``hybrid.scoring.score_pairs``: one model load per Python
worker, Arrow batches encoded without pandas, no ``predict`` wrapper and no collect.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import date

import yaml
from pyspark.sql import DataFrame, SparkSession

from shoprec.hybrid import pyfunc
from shoprec.hybrid.scoring import score_pairs
from shoprec.registry import version_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    name: str
    version: str
    alias: str
    folder: str          # the downloaded pyfunc model
    keras_dir: str
    manifest_path: str
    note: str = ""       # why another version than the alias's serves (an as_of before its data)

    def describe(self) -> str:
        return f"{self.name} v{self.version} " + (f"({self.note})" if self.note else f"(alias {self.alias})")

    @property
    def shipped_name(self) -> str:
        """The folder's name under SparkFiles (unique per version, so versions never clash)."""
        return os.path.basename(self.folder)


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
    return ServingModel(name, str(version.version), alias, folder,
                        os.path.join(folder, artifacts[pyfunc.KERAS_MODEL]["path"]),
                        os.path.join(folder, artifacts[pyfunc.MANIFEST]["path"]), note)


def _folder_name(name: str, version) -> str:
    """``<name>-v<n>-<digest>``: the digest tells apart version n of two registries.

    Executors keep shipped folders by their base name for the whole Spark application, and
    Spark refuses a second folder under a name it already holds with other contents. One
    long-lived session can serve models from several registries (a notebook pointed at two
    data roots, the test suite), and each starts counting versions at 1.
    """
    import mlflow

    identity = "|".join(str(x) for x in (mlflow.get_registry_uri(), name, version.version,
                                          version.run_id, version.creation_timestamp))
    return f"{name}-v{version.version}-{hashlib.sha1(identity.encode()).hexdigest()[:10]}"


_SHIPPED: set[tuple[str, str]] = set()


def ship(spark: SparkSession, model: ServingModel) -> None:
    """Make the model folder available to every executor (SparkFiles), once per application."""
    key = (spark.sparkContext.applicationId, model.folder)
    if key in _SHIPPED:
        return
    sc = spark.sparkContext
    if sc.master.startswith("local"):
        sc.addFile(model.folder, recursive=True)
    else:
        # Spark ships a local directory only in local mode; on a cluster the folder travels as
        # a zip that every executor unpacks under the same name in its SparkFiles root.
        archive = model.folder + ".zip"
        if not os.path.exists(archive):
            shutil.make_archive(model.folder, "zip", root_dir=model.folder)
        sc.addArchive(f"{archive}#{model.shipped_name}")
    _SHIPPED.add(key)


def score(features: DataFrame, model: ServingModel, item_features: DataFrame | None = None) -> DataFrame:
    """``features`` (the hybrid RAW_COLUMNS by name; ``text_vector`` may be left out when
    ``item_features`` gives it per item) plus ``score`` from the shipped model."""
    folder = os.path.relpath(model.keras_dir, model.folder)
    manifest = os.path.relpath(model.manifest_path, model.folder)
    return score_pairs(features, os.path.join(model.shipped_name, folder), os.path.join(model.shipped_name, manifest),
                       shipped=True, item_features=item_features)
