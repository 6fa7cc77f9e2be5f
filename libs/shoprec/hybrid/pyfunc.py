"""The hybrid model as an MLflow pyfunc: raw feature columns in, a score per row out.

The artifact holds the Keras SavedModel and the manifest (vocabularies, sizes,
normalisation); ``predict`` encodes with ``features.encode`` and calls the model
directly (no per-call ``Model.predict`` set-up) in chunks that bound memory.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow.models import ModelSignature
    from mlflow.pyfunc import PythonModel, PythonModelContext
else:
    try:  # mlflow is a dependency of the package; keep the import lazy-safe for type checkers
        # PythonModelContext at run time too: mlflow resolves predict's annotations when the
        # class is created (typing.get_type_hints), so every name in them must exist here.
        from mlflow.pyfunc import PythonModel, PythonModelContext
    except ImportError:  # pragma: no cover
        PythonModel = object

from shoprec import columns as C
from shoprec.hybrid import features as H

KERAS_MODEL = "keras_model"
MANIFEST = "manifest"
CHUNK = 65_536


class Scorer:
    """A loaded Keras model plus its manifest: ``score(pdf) -> float32 array``."""

    def __init__(self, model_dir: str, manifest_path: str):
        import tensorflow as tf

        self.model = tf.keras.models.load_model(model_dir, compile=False)
        with open(manifest_path) as fh:
            self.manifest = json.load(fh)
        self._call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        self._vocabularies = H.arrow_vocabularies(self.manifest)

    def score(self, pdf: pd.DataFrame) -> np.ndarray:
        out = np.empty(len(pdf), dtype=np.float32)
        for start in range(0, len(pdf), CHUNK):
            x = H.encode(pdf.iloc[start : start + CHUNK], self.manifest)
            out[start : start + CHUNK] = self._call(x).numpy().ravel()
        return out

    def score_arrow(self, batch: pa.RecordBatch, text_lookup: tuple | None = None) -> np.ndarray:
        """:meth:`score` for an Arrow record batch (the Spark path: no pandas on the way).

        ``text_lookup`` (item ids as an Arrow array, float32 matrix with a zero last row)
        gives the text vectors by item when the batch does not carry them."""
        out = np.empty(batch.num_rows, dtype=np.float32)
        for start in range(0, batch.num_rows, CHUNK):
            chunk = batch.slice(start, CHUNK)
            text = H.lookup_text(chunk, *text_lookup) if text_lookup is not None else None
            x = H.encode_arrow(chunk, self.manifest, self._vocabularies, text)
            out[start : start + CHUNK] = self._call(x).numpy().ravel()
        return out


class HybridPyfunc(PythonModel):
    """``mlflow.pyfunc`` wrapper: accepts the ``features.RAW_COLUMNS`` by name."""

    def load_context(self, context: PythonModelContext) -> None:
        self.scorer = Scorer(context.artifacts[KERAS_MODEL], context.artifacts[MANIFEST])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.Series:
        return pd.Series(self.scorer.score(model_input).astype(np.float64), name=C.SCORE)


def signature() -> ModelSignature:
    """Input columns by name (ids and categories as strings, counts and days as doubles)."""
    from mlflow.models import ModelSignature
    from mlflow.types import DataType
    from mlflow.types.schema import Array, ColSpec, Schema, TensorSpec

    strings = (C.USER_ID, C.ITEM_ID)
    optional_strings = (C.COUNTRY, C.DEVICE, C.SEASON, C.CATEGORY)
    doubles = (
        C.HOUR,
        C.WEEKDAY,
        C.PRICE_BAND,
        C.DAYS_TO_HOLIDAY,
        C.PAIR_PURCHASES,
        C.PAIR_DAYS_SINCE,
        C.USER_PURCHASES,
        C.USER_DAYS_SINCE,
    )
    cols: list[ColSpec | TensorSpec] = [ColSpec(DataType.string, c) for c in strings]
    cols += [ColSpec(DataType.string, c, required=False) for c in optional_strings]
    cols += [ColSpec(DataType.double, c, required=False) for c in doubles]
    cols.append(ColSpec(Array(DataType.double), C.TEXT_VECTOR, required=False))
    return ModelSignature(inputs=Schema(cols), outputs=Schema([ColSpec(DataType.double, C.SCORE)]))


def pip_requirements() -> list[str]:
    """The pins the model needs to load (the project's own, no inference at log time)."""
    import importlib.metadata as md

    names = ("tensorflow-cpu", "numpy", "pandas", "pyarrow", "mlflow", "protobuf")
    out = []
    for name in names:
        try:
            out.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            continue
    return out
