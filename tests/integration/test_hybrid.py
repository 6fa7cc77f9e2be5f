"""The hybrid model: training examples in Spark, 2-rank Horovod training, pyfunc, registry rule."""

from __future__ import annotations

import json
import math
import os
import random
from datetime import date, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from shoprec import columns as C
from shoprec.features.item import item_features
from shoprec.hybrid import dataset
from shoprec.hybrid import features as H
from shoprec.hybrid.pyfunc import Scorer
from shoprec.hybrid.train import MODEL_DIR, ranking_sums
from shoprec.split import TemporalSplit
from shoprec.stages.train_hybrid import _log_and_register, launch, training_spec
from shoprec.tracking import configure
from tests.builders import event, interactions
from tests.conftest import make_config

AS_OF = date(2021, 3, 1)
SPLIT = TemporalSplit(AS_OF, validation_days=14, evaluation_days=14)
TINY = [
    "hybrid.batch_size=64",
    "hybrid.epochs=8",
    "hybrid.patience=8",
    "hybrid.num_proc=2",
    "hybrid.learning_rate=0.005",
    "hybrid.negatives=3",
    "hybrid.validation_negatives=5",
    "hybrid.model.embedding_dim=8",
    "hybrid.model.mlp_layers=[16]",
    "hybrid.model.dropout=0.0",
    "features.text.min_count=1",
    "features.text.clusters=2",
]


def group_shop(users_per_group=12, items_per_group=10, weeks=10, seed=7):
    """Users of group g buy only items of group g, a basket a week, some after as_of too."""
    rnd = random.Random(seed)
    start = datetime(2020, 12, 1, 10)
    rows = []
    for g, word in enumerate(("red", "blue")):
        for u in range(users_per_group):
            user = f"{word}_user{u}"
            for w in range(weeks + 2):
                ts = start + timedelta(days=7 * w, hours=u % 5)
                for k in rnd.sample(range(items_per_group), 3):
                    rows.append(
                        event(
                            user,
                            f"{word}{k}",
                            ts,
                            description=f"{word} cup number {k}",
                            country="France" if g else "United Kingdom",
                        )
                    )
    rows.append(event("late_user", "late_item", "2021-03-02 12:00"))  # at/after as_of: must not appear
    return rows


# ------------------------------------------------------------------------------ examples
def test_history_features_are_point_in_time(spark):
    rows = [
        event("u", "X", "2021-01-01 10:00"),
        event("u", "X", "2021-01-03 10:00"),
        event("u", "Y", "2021-01-03 10:00"),
        event("u", "X", "2021-03-05 10:00"),
    ]  # last: after as_of
    got = dataset.basket_positives(interactions(spark, rows), SPLIT).select(
        C.ITEM_ID, C.EVENT_TS, C.PAIR_PURCHASES, C.PAIR_DAYS_SINCE, C.USER_PURCHASES, C.USER_DAYS_SINCE
    )
    assert sorted(map(tuple, got.collect())) == [
        ("X", datetime(2021, 1, 1, 10), 0, None, 0, None),
        ("X", datetime(2021, 1, 3, 10), 1, 2.0, 1, 2.0),
        ("Y", datetime(2021, 1, 3, 10), 0, None, 1, 2.0),
    ]


@pytest.fixture(scope="module")
def shop(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("hybrid")
    cfg = make_config(root / "lakehouse", *TINY)
    silver = interactions(spark, group_shop()).persist()
    items = item_features(silver, None, SPLIT, cfg.features)
    data = dataset.write_training_data(silver, items, SPLIT, cfg, str(root / "data"))
    return cfg, silver, data, root


def _read(data, part: str) -> pd.DataFrame:
    return pd.concat([pq.read_table(f).to_pandas() for f in data.files(part)], ignore_index=True)


def test_training_examples_negatives_windows_and_manifest(shop):
    cfg, _silver, data, _ = shop
    train, valid = _read(data, dataset.TRAIN), _read(data, dataset.VALID)
    validation_start = pd.Timestamp("2021-02-15", tz="UTC")
    assert train[C.EVENT_TS].max() < validation_start <= valid[C.EVENT_TS].min()
    assert valid[C.EVENT_TS].max() < pd.Timestamp("2021-03-01", tz="UTC")
    for frame, n in ((train, cfg.hybrid.negatives), (valid, cfg.hybrid.validation_negatives)):
        per_example = frame.groupby(C.EXAMPLE_ID)[C.LABEL].agg(["sum", "size"])
        assert (per_example["sum"] == 1).all()  # one positive per example id
        assert (per_example["size"] <= 1 + n).all()  # at most n negatives, n nearly always
        assert (per_example["size"] == 1 + n).mean() > 0.9  # (2n + 4 draws from this tiny catalog)
    # Training negatives: never an item the user bought in the training window.
    bought = set(zip(train.loc[train[C.LABEL] == 1, C.USER_ID], train.loc[train[C.LABEL] == 1, C.ITEM_ID], strict=True))
    negatives = train[train[C.LABEL] == 0]
    assert not any((u, i) in bought for u, i in zip(negatives[C.USER_ID], negatives[C.ITEM_ID], strict=True))
    # A negative shares its positive's context.
    ctx = train.groupby(C.EXAMPLE_ID)[[C.HOUR, C.WEEKDAY, C.COUNTRY, C.USER_PURCHASES]].nunique()
    assert (ctx == 1).all().all()
    # Validation negatives may be items bought earlier, and then say so.
    vneg = valid[valid[C.LABEL] == 0]
    assert (vneg[C.PAIR_PURCHASES] > 0).any()
    with open(data.manifest_path) as fh:
        m = json.load(fh)
    assert "late_user" not in m["vocab"][C.USER_ID] and "late_item" not in m["vocab"][C.ITEM_ID]
    assert len(m["vocab"][C.USER_ID]) == 24 and m["vocab"][C.COUNTRY] == ["France", "United Kingdom"]
    assert m["counts"]["train_rows"] == len(train) and m["counts"]["valid_positives"] == int(valid[C.LABEL].sum())
    assert len(m["normalisation"]["mean"]) == len(H.NUMERIC)


def test_ranking_sums_hand_worked():
    # user 0: positive ranked 2nd of 3 -> NDCG 1/log2(3), AUC 1/2; user 1: positive first -> 1, 1
    groups = np.array([0, 0, 0, 1, 1])
    labels = np.array([0, 1, 0, 1, 0], dtype=np.float32)
    scores = np.array([0.9, 0.5, 0.1, 0.7, 0.2])
    ndcg_sum, auc_sum, n_ndcg, n_auc = ranking_sums(groups, labels, scores)
    assert ndcg_sum == pytest.approx(1 / math.log2(3) + 1.0)
    assert auc_sum == pytest.approx(0.5 + 1.0)
    assert (n_ndcg, n_auc) == (2, 2)
    # a tie with a negative is not a win
    sums = ranking_sums(np.array([0, 0]), np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    assert sums[0] == pytest.approx(1 / math.log2(3))


# ------------------------------------------------------------------------------ Horovod
@pytest.fixture(scope="module")
def trained(shop):
    cfg, _, data, root = shop
    spec = training_spec(cfg, data.folder, str(root / "out"), None)
    result, epochs = launch(spec, 2, "horovodrun")
    return spec, result, epochs


@pytest.mark.horovod
def test_two_horovod_ranks_end_identical_and_learn_the_pattern(trained):
    spec, result, epochs = trained
    ranks = [json.loads(Path(spec["out_dir"], f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["weights_digest"] == ranks[1]["weights_digest"]
    assert ranks[0]["size"] == 2 and ranks[0]["train_rows"] + ranks[1]["train_rows"] > 0
    assert ranks[0]["steps_per_epoch"] == ranks[1]["steps_per_epoch"]
    assert result["val_auc"] > 0.75, epochs
    assert len(epochs) == 8 and epochs[-1]["loss"] < epochs[0]["loss"]


@pytest.mark.horovod
def test_registered_model_loads_and_scores_a_pandas_frame(shop, trained):
    cfg, _, data, _ = shop
    spec, result, _ = trained
    configure(cfg)
    with mlflow.start_run():
        described, version = _log_and_register(cfg, _Run(), spec, data.manifest_path, result)
    assert version == "1" and "promoted to champion" in described
    model = mlflow.pyfunc.load_model(f"models:/{cfg.hybrid.registered_model}@champion")
    frame = _read(data, dataset.VALID).head(50)
    raw = frame[list(H.RAW_COLUMNS)].copy()
    for c in (C.HOUR, C.WEEKDAY, C.PRICE_BAND, C.DAYS_TO_HOLIDAY, C.PAIR_PURCHASES, C.USER_PURCHASES):
        raw[c] = raw[c].astype("float64")
    raw[C.TEXT_VECTOR] = raw[C.TEXT_VECTOR].map(list)
    scores = np.asarray(model.predict(raw))
    direct = Scorer(os.path.join(spec["out_dir"], MODEL_DIR), data.manifest_path).score(frame)
    assert scores.shape == (50,) and ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(scores, direct, rtol=1e-5, atol=1e-6)
    arrow = Scorer(os.path.join(spec["out_dir"], MODEL_DIR), data.manifest_path).score_arrow(
        pa.RecordBatch.from_pandas(frame[list(H.RAW_COLUMNS)], preserve_index=False)
    )
    np.testing.assert_allclose(arrow, direct, rtol=1e-6, atol=1e-7)
    unknown = raw.head(1).assign(**{C.USER_ID: "never_seen", C.ITEM_ID: "never_seen"})
    assert 0 < float(np.asarray(model.predict(unknown))[0]) < 1
    with pytest.raises(Exception, match="user_id"):
        model.predict(raw.drop(columns=[C.USER_ID]))


@pytest.mark.horovod
def test_promotion_rule_both_ways(shop, trained):
    cfg, _, data, _ = shop
    cfg = make_config(shop[3] / "promotion", *TINY)
    spec, result, _ = trained
    configure(cfg)
    client = MlflowClient()
    name = cfg.hybrid.registered_model
    outcomes = []
    for value in (0.30, 0.20, 0.40):
        with mlflow.start_run():
            _, version = _log_and_register(cfg, _Run(), spec, data.manifest_path, {**result, "val_ndcg_at_10": value})
        outcomes.append((version, str(client.get_model_version_by_alias(name, "champion").version)))
    assert outcomes == [("1", "1"), ("2", "1"), ("3", "3")]
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "3"


@pytest.mark.horovod
def test_a_cached_model_that_is_not_the_registered_artifact_is_downloaded_again(shop, trained, caplog):
    """models.resolve serves from <data-root>/_models: a copy with another run's MLmodel or
    with files changed since its download is replaced by the registry's artifact, never loaded."""
    from shoprec.stages import models

    cfg = make_config(shop[3] / "verified", *TINY)
    spec, result, _ = trained
    configure(cfg)
    with mlflow.start_run():
        _log_and_register(cfg, _Run(), spec, shop[2].manifest_path, result)
    name, cache = cfg.hybrid.registered_model, str(shop[3] / "verified" / "_models")

    def served():
        return models.resolve(name, "champion", cache, date(2099, 1, 1))

    first = served()
    assert first is not None and os.path.isdir(first.keras_dir)
    record = os.path.join(first.folder, models._DOWNLOADED)
    stamp = os.stat(record).st_mtime_ns
    assert served().folder == first.folder and os.stat(record).st_mtime_ns == stamp  # reused as is
    weights = next(Path(first.folder).rglob("*.pb"))
    original = weights.read_bytes()
    weights.write_bytes(original + b"tampered")
    mlmodel = Path(first.folder) / "MLmodel"
    for tamper in (lambda: None, lambda: mlmodel.write_text(mlmodel.read_text().replace("run_id:", "run_id: x"))):
        tamper()
        caplog.clear()
        again = served()
        assert again is not None and "downloading it again" in caplog.text, caplog.text
        assert weights.read_bytes() == original and models._cached_copy_problem(again.folder, _version(name)) is None


def _version(name: str):
    return MlflowClient().get_model_version_by_alias(name, "champion")


class _Run:
    run_id = None
