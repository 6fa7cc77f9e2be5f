"""The serving hybrid model: shipped to the executors, scored in Spark.

The registered pyfunc holds the Keras SavedModel and the manifest as artifacts; the stage
resolves and downloads that version once (``stages.models.resolve``, cached under
``<data_root>/_models``), this module adds
the folder to the Spark job (``SparkContext.addFile`` in local mode, a zip through
``addArchive`` on a cluster, so executors on other machines get it too) and scores with
``hybrid.scoring.score_pairs``: one model load per Python worker, Arrow batches encoded without
pandas, no ``predict`` wrapper and no collect.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from shoprec.hybrid.scoring import score_pairs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    name: str
    version: str
    alias: str
    folder: str  # the downloaded pyfunc model
    keras_dir: str
    manifest_path: str
    note: str = ""  # why another version than the alias's serves (an as_of before its data)

    def describe(self) -> str:
        return f"{self.name} v{self.version} " + (f"({self.note})" if self.note else f"(alias {self.alias})")

    @property
    def shipped_name(self) -> str:
        """The folder's name under SparkFiles (unique per version, so versions never clash)."""
        return os.path.basename(self.folder)


_SHIPPED: set[tuple[str, str]] = set()


def ship(spark: SparkSession, model: ServingModel) -> None:
    """Make the model folder available to every executor (SparkFiles), once per application."""
    key = (spark.sparkContext.applicationId, model.folder)
    if key in _SHIPPED:
        return
    sc = spark.sparkContext
    if (sc.master or "").startswith("local"):
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
    return score_pairs(
        features,
        os.path.join(model.shipped_name, folder),
        os.path.join(model.shipped_name, manifest),
        shipped=True,
        item_features=item_features,
    )
