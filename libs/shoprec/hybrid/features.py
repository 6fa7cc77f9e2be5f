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

from typing import Mapping

import numpy as np
import pandas as pd

from shoprec import columns as C

PAIR_PURCHASES = "pair_purchases"
PAIR_DAYS_SINCE = "pair_days_since"
USER_PURCHASES = "user_purchases"
USER_DAYS_SINCE = "user_days_since"
LABEL = "label"
EXAMPLE_ID = "example_id"   # groups a positive with its negatives (and a user's list for NDCG)

# String vocabularies learned from the training examples: index = position + 1, 0 = unknown.
VOCAB_FEATURES = (C.USER_ID, C.ITEM_ID, C.COUNTRY, C.DEVICE, C.SEASON, C.CATEGORY)
# Small integers used as they are (0 = null); the manifest gives each one's size.
INT_FEATURES = (C.HOUR, C.WEEKDAY, C.PRICE_BAND)
INT_SIZES = {C.HOUR: 25, C.WEEKDAY: 8}   # hour 0..23 stored as hour + 1; price band: bands + 1
# Numeric inputs after :func:`numeric_frame` (log counts, capped days), normalised in the model.
NUMERIC = ("days_to_holiday", "log_pair_purchases", "log_pair_days_since", "log_user_purchases",
           "log_user_days_since")
NEVER_DAYS = 730.0        # "never bought" reads as two years ago
NO_HOLIDAY_DAYS = 366.0
TEXT_VECTOR = C.TEXT_VECTOR

RAW_COLUMNS = (C.USER_ID, C.ITEM_ID, C.COUNTRY, C.DEVICE, C.SEASON, C.CATEGORY, C.HOUR, C.WEEKDAY,
               C.PRICE_BAND, C.DAYS_TO_HOLIDAY, TEXT_VECTOR, PAIR_PURCHASES, PAIR_DAYS_SINCE,
               USER_PURCHASES, USER_DAYS_SINCE)

# Model input names (Keras Input layers) in order.
INPUTS = ("user", "item", "country", "device", "season", "category", "hour", "weekday", "price_band",
          "numeric", "text_vector")
_VOCAB_INPUT = {C.USER_ID: "user", C.ITEM_ID: "item", C.COUNTRY: "country", C.DEVICE: "device",
                C.SEASON: "season", C.CATEGORY: "category"}


def numeric_frame(pdf: pd.DataFrame) -> np.ndarray:
    """The ``NUMERIC`` columns as float32 [n, 5]: counts as log1p, days capped, nulls filled."""
    def col(name: str, fill: float) -> np.ndarray:
        return pd.to_numeric(pdf[name], errors="coerce").fillna(fill).to_numpy(np.float64)

    days_pair = np.clip(col(PAIR_DAYS_SINCE, NEVER_DAYS), 0, NEVER_DAYS)
    days_user = np.clip(col(USER_DAYS_SINCE, NEVER_DAYS), 0, NEVER_DAYS)
    out = np.stack([
        np.clip(col(C.DAYS_TO_HOLIDAY, NO_HOLIDAY_DAYS), 0, NO_HOLIDAY_DAYS),
        np.log1p(np.clip(col(PAIR_PURCHASES, 0.0), 0, None)),
        np.log1p(days_pair),
        np.log1p(np.clip(col(USER_PURCHASES, 0.0), 0, None)),
        np.log1p(days_user),
    ], axis=1)
    return out.astype(np.float32)


def _lookup(values: pd.Series, vocab: list[str]) -> np.ndarray:
    index = pd.Index(vocab)
    codes = index.get_indexer(values.astype("string").fillna("\0null").to_numpy(dtype=object))
    return (codes + 1).astype(np.int32)  # -1 (unknown or null) -> 0


def _small_int(values: pd.Series, size: int, offset: int = 0) -> np.ndarray:
    v = pd.to_numeric(values, errors="coerce").to_numpy(np.float64) + offset
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
    out["text_vector"] = text_matrix(pdf[TEXT_VECTOR], manifest["text_dim"])
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
