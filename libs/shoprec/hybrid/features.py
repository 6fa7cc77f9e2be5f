"""The hybrid model's inputs: raw example columns, and their encoding into model tensors.

Spark writes raw examples (ids and country names as strings, counts as counts); every
consumer turns them into tensors with :func:`encode`, the one implementation: each
Horovod rank on its shards, the registered pyfunc on a pandas frame, and batch scoring
in Spark. The vocabularies and normalisation statistics travel in the manifest, so a
model and its manifest are all that scoring needs.

Raw example columns (``RAW_COLUMNS``)::

    user_id, item_id                 string   -> embeddings (0 = unknown)
    country, device, season, category string  -> small embeddings (0 = unknown/null)
    hour (0-23), weekday (1-7), price_band (1..B)  int -> embeddings (0 = null)
    days_to_holiday                  int      -> numeric
    text_vector                      array<double> (the item description's vector)
    pair_purchases                   int      earlier purchase baskets of this item by this user
    pair_days_since                  double   days since that user last bought the item (null: never)
    user_purchases                   int      earlier purchase baskets of the user
    user_days_since                  double   days since the user's previous basket (null: none)
    label                            int      1 bought, 0 sampled negative (training data only)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shoprec import columns as C

# String vocabularies learned from the training examples: index = position + 1, 0 = unknown.
VOCAB_FEATURES = (C.USER_ID, C.ITEM_ID, C.COUNTRY, C.DEVICE, C.SEASON, C.CATEGORY)
# Small integers used as they are (0 = null); the manifest gives each one's size.
INT_FEATURES = (C.HOUR, C.WEEKDAY, C.PRICE_BAND)
INT_SIZES = {C.HOUR: 25, C.WEEKDAY: 8}  # hour 0..23 stored as hour + 1; price band: bands + 1
# Numeric inputs after :func:`numeric_frame` (log counts, capped days), normalised in the model.
NUMERIC = ("days_to_holiday", "log_pair_purchases", "log_pair_days_since", "log_user_purchases", "log_user_days_since")
NEVER_DAYS = 730.0  # "never bought" reads as two years ago
NO_HOLIDAY_DAYS = 366.0

RAW_COLUMNS = (
    C.USER_ID,
    C.ITEM_ID,
    C.COUNTRY,
    C.DEVICE,
    C.SEASON,
    C.CATEGORY,
    C.HOUR,
    C.WEEKDAY,
    C.PRICE_BAND,
    C.DAYS_TO_HOLIDAY,
    C.TEXT_VECTOR,
    C.PAIR_PURCHASES,
    C.PAIR_DAYS_SINCE,
    C.USER_PURCHASES,
    C.USER_DAYS_SINCE,
)

# Model input names (Keras Input layers) in order.
INPUTS = (
    "user",
    "item",
    "country",
    "device",
    "season",
    "category",
    "hour",
    "weekday",
    "price_band",
    "numeric",
    "text_vector",
)
_VOCAB_INPUT = {
    C.USER_ID: "user",
    C.ITEM_ID: "item",
    C.COUNTRY: "country",
    C.DEVICE: "device",
    C.SEASON: "season",
    C.CATEGORY: "category",
}


def numeric_frame(pdf: pd.DataFrame) -> np.ndarray:
    """The ``NUMERIC`` columns as float32 [n, 5]: counts as log1p, days capped, nulls filled."""

    def col(name: str, fill: float) -> np.ndarray:
        return pd.to_numeric(pdf[name], errors="coerce").fillna(fill).to_numpy(np.float64)

    return _numeric(col)


def _numeric(col: Callable[[str, float], np.ndarray]) -> np.ndarray:
    """``col(name, fill)`` gives a column as float64 with nulls filled."""
    days_pair = np.clip(col(C.PAIR_DAYS_SINCE, NEVER_DAYS), 0, NEVER_DAYS)
    days_user = np.clip(col(C.USER_DAYS_SINCE, NEVER_DAYS), 0, NEVER_DAYS)
    out = np.stack(
        [
            np.clip(col(C.DAYS_TO_HOLIDAY, NO_HOLIDAY_DAYS), 0, NO_HOLIDAY_DAYS),
            np.log1p(np.clip(col(C.PAIR_PURCHASES, 0.0), 0, None)),
            np.log1p(days_pair),
            np.log1p(np.clip(col(C.USER_PURCHASES, 0.0), 0, None)),
            np.log1p(days_user),
        ],
        axis=1,
    )
    return out.astype(np.float32)


def _lookup(values: pd.Series, vocab: list[str]) -> np.ndarray:
    index = pd.Index(vocab)
    codes = index.get_indexer(values.astype("string").fillna("\0null").to_numpy(dtype=object))
    return (codes + 1).astype(np.int32)  # -1 (unknown or null) -> 0


def _small_int(values: pd.Series, size: int, offset: int = 0) -> np.ndarray:
    return _small_int_of(pd.to_numeric(values, errors="coerce").to_numpy(np.float64), size, offset)


def _small_int_of(v: np.ndarray, size: int, offset: int) -> np.ndarray:
    v = v + offset
    v = np.where(np.isnan(v) | (v < 0) | (v >= size), 0, v)
    return v.astype(np.int32)


def text_matrix(values: pd.Series, dim: int) -> np.ndarray:
    """array<double> cells -> float32 [n, dim]; missing vectors are zeros."""
    out = np.zeros((len(values), dim), dtype=np.float32)
    for i, v in enumerate(values.to_numpy(dtype=object)):
        if v is not None and len(v) == dim:
            out[i] = v
    return out


def encode(pdf: pd.DataFrame, manifest: Mapping) -> dict[str, np.ndarray]:
    """Raw example columns -> the model's named input arrays (see ``INPUTS``)."""
    missing = [c for c in RAW_COLUMNS if c not in pdf.columns]
    if missing:
        raise ValueError(f"hybrid model input is missing columns {missing}; expected {list(RAW_COLUMNS)}")
    vocab = manifest["vocab"]
    out = {_VOCAB_INPUT[name]: _lookup(pdf[name], vocab[name]) for name in VOCAB_FEATURES}
    out["hour"] = _small_int(pdf[C.HOUR], INT_SIZES[C.HOUR], offset=1)
    out["weekday"] = _small_int(pdf[C.WEEKDAY], INT_SIZES[C.WEEKDAY])
    out["price_band"] = _small_int(pdf[C.PRICE_BAND], manifest["sizes"]["price_band"])
    out["numeric"] = numeric_frame(pdf)
    out["text_vector"] = text_matrix(pdf[C.TEXT_VECTOR], manifest["text_dim"])
    return out


# ------------------------------------------------------------------------------ Arrow
def arrow_vocabularies(manifest: Mapping) -> dict[str, pa.Array]:
    """The manifest's vocabularies as Arrow arrays, built once per loaded model."""
    return {name: pa.array(manifest["vocab"][name], pa.string()) for name in VOCAB_FEATURES}


def encode_arrow(
    batch: pa.RecordBatch, manifest: Mapping, vocabularies: Mapping[str, pa.Array], text: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """:func:`encode` for an Arrow record batch, without pandas: vocabulary lookups in Arrow's
    hash kernels, the text vectors read straight from the list column's buffer. Gives the
    same arrays as :func:`encode` on ``batch.to_pandas()`` (a test holds the two together);
    the Spark scoring path uses it, the pyfunc (pandas in) uses :func:`encode`. ``text``:
    the text vectors already looked up (:func:`lookup_text`); the batch then need not
    carry them."""
    names = batch.schema.names
    missing = [c for c in RAW_COLUMNS if c not in names and not (c == C.TEXT_VECTOR and text is not None)]
    if missing:
        raise ValueError(f"hybrid model input is missing columns {missing}; expected {list(RAW_COLUMNS)}")

    def column(name: str) -> pa.Array:
        return batch.column(names.index(name))

    def floats(name: str) -> np.ndarray:
        return pc.cast(column(name), pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN

    out = {}
    for name in VOCAB_FEATURES:
        values = column(name)
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        index = pc.index_in(values, value_set=vocabularies[name])  # null: unknown or null
        out[_VOCAB_INPUT[name]] = (pc.fill_null(index, -1).to_numpy(zero_copy_only=False) + 1).astype(np.int32)
    out["hour"] = _small_int_of(floats(C.HOUR), INT_SIZES[C.HOUR], 1)
    out["weekday"] = _small_int_of(floats(C.WEEKDAY), INT_SIZES[C.WEEKDAY], 0)
    out["price_band"] = _small_int_of(floats(C.PRICE_BAND), manifest["sizes"]["price_band"], 0)
    out["numeric"] = _numeric(lambda name, fill: np.nan_to_num(floats(name), nan=fill))
    out["text_vector"] = text if text is not None else text_matrix_arrow(column(C.TEXT_VECTOR), manifest["text_dim"])
    return out


def lookup_text(batch: pa.RecordBatch, item_ids: pa.Array, matrix: np.ndarray) -> np.ndarray:
    """The rows of ``matrix`` (one per id of ``item_ids``, plus a last row of zeros) for the
    batch's items; unknown items get the zeros."""
    names = batch.schema.names
    index = pc.index_in(batch.column(names.index(C.ITEM_ID)), value_set=item_ids)
    return matrix[pc.fill_null(index, -1).to_numpy(zero_copy_only=False)]


def text_matrix_arrow(values: pa.Array, dim: int) -> np.ndarray:
    """list<double> -> float32 [n, dim] from the flat values buffer; null or wrong-length
    vectors are zeros."""
    out = np.zeros((len(values), dim), dtype=np.float32)
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
    ok = lengths == dim
    if ok.all():
        out[:] = values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), dim)
    elif ok.any():
        rows = np.flatnonzero(ok)
        out[rows] = values.take(pa.array(rows)).flatten().to_numpy(zero_copy_only=False).reshape(len(rows), dim)
    return out


def vocab_sizes(manifest: Mapping) -> dict[str, int]:
    """Embedding table sizes per input (unknown slot included)."""
    sizes = {_VOCAB_INPUT[name]: len(manifest["vocab"][name]) + 1 for name in VOCAB_FEATURES}
    sizes.update(hour=INT_SIZES[C.HOUR], weekday=INT_SIZES[C.WEEKDAY], price_band=manifest["sizes"]["price_band"])
    return sizes


def normalisation(sample: pd.DataFrame) -> dict[str, list[float]]:
    """Mean and variance of the numeric inputs over a sample of training rows."""
    x = numeric_frame(sample).astype(np.float64)
    var = x.var(axis=0)
    return {"mean": x.mean(axis=0).tolist(), "variance": np.where(var > 0, var, 1.0).tolist()}
