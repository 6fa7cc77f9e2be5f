"""The hybrid network (TF 2.15, ``tf.keras``): NeuMF towers + item content + context + history.

    user, item ──► GMF embeddings ──► element-wise product ───────────────────────┐
    user, item ──► MLP embeddings ─┐                                               ├─► sigmoid
    text vector, category, price band (content) ──┤                                │
    hour, weekday, season, country, device, holiday distance (context) ──┼─► MLP ──┘
    earlier purchases of the pair and of the user (history) ─────────────┘

Every input is a named Keras ``Input`` (``features.INPUTS``); numeric inputs are
normalised inside the model with the manifest's statistics, so the saved model plus
``features.encode`` is everything scoring needs. Built only from stock layers: the
SavedModel loads without custom objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from shoprec.config import HybridModelConfig
from shoprec.hybrid import features as H

if TYPE_CHECKING:
    import tensorflow as tf


def build_model(
    manifest: Mapping, mcfg: HybridModelConfig, als_factors: Mapping[str, np.ndarray] | None = None
) -> tf.keras.Model:
    """The compiled-ready (not compiled) Keras model for ``manifest``'s vocabularies.

    ``als_factors`` (``{"user": [n_users + 1, rank], "item": [...]}`` aligned with the
    manifest vocabularies, row 0 = unknown) warm-starts the GMF embeddings.
    """
    import tensorflow as tf

    L = tf.keras.layers
    reg = tf.keras.regularizers.l2(mcfg.l2) if mcfg.l2 > 0 else None
    sizes = H.vocab_sizes(manifest)
    inputs = {name: L.Input(shape=(), dtype="int32", name=name) for name in H.INPUTS[:-2]}
    inputs["numeric"] = L.Input(shape=(len(H.NUMERIC),), dtype="float32", name="numeric")
    inputs["text_vector"] = L.Input(shape=(manifest["text_dim"],), dtype="float32", name="text_vector")

    def embed(name: str, dim: int, tower: str, init: np.ndarray | None = None) -> Any:  # a Keras tensor
        kwargs = {"embeddings_regularizer": reg}
        if init is not None:
            kwargs["embeddings_initializer"] = tf.keras.initializers.Constant(init)
            dim = init.shape[1]
        return L.Embedding(sizes[name], dim, name=f"{tower}_{name}_embedding", **kwargs)(inputs[name])

    factors = als_factors or {}
    gmf = L.Multiply(name="gmf")(
        [
            embed("user", mcfg.embedding_dim, "gmf", factors.get("user")),
            embed("item", mcfg.embedding_dim, "gmf", factors.get("item")),
        ]
    )
    mlp_parts = [embed("user", mcfg.embedding_dim, "mlp"), embed("item", mcfg.embedding_dim, "mlp")]
    d = mcfg.context_embedding_dim
    if mcfg.use_content:
        mlp_parts += [inputs["text_vector"], embed("category", d, "content"), embed("price_band", d, "content")]
    if mcfg.use_context:
        mlp_parts += [embed(name, d, "context") for name in ("hour", "weekday", "season", "country", "device")]
    norm = manifest["normalisation"]
    numeric = L.Normalization(mean=norm["mean"], variance=norm["variance"], name="numeric_norm")(inputs["numeric"])
    keep = ([0] if mcfg.use_context else []) + ([1, 2, 3, 4] if mcfg.use_history else [])
    if keep:
        mlp_parts.append(tf.gather(numeric, keep, axis=1) if len(keep) < len(H.NUMERIC) else numeric)
    x = L.Concatenate(name="mlp_input")(mlp_parts)
    for i, units in enumerate(mcfg.mlp_layers):
        x = L.Dense(units, activation="relu", kernel_regularizer=reg, name=f"mlp_{i}")(x)
        if mcfg.dropout > 0:
            x = L.Dropout(mcfg.dropout, name=f"mlp_dropout_{i}")(x)
    fused = L.Concatenate(name="neumf")([gmf, x])
    out = L.Dense(1, activation="sigmoid", name="score")(fused)
    return tf.keras.Model(inputs=inputs, outputs=L.Reshape((), name="prob")(out), name="shoprec_hybrid")


def weights_digest(model: tf.keras.Model) -> str:
    """sha256 of every weight, in order: equal digests = identical models."""
    import hashlib

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()
