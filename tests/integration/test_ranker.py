"""The learned ranker (shoprec.ranker, shoprec train-ranker): point-in-time features, the label
window, SparkXGBRanker training, registration under the champion/challenger rule, and Spark
scoring equal to the booster's own predictions. Real Spark, MLflow and XGBoost."""

from __future__ import annotations

import io
import math
from datetime import date

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from shoprec import columns as C
from shoprec.candidates.sources import POOL_SCHEMA
from shoprec.ranker import features as RF
from shoprec.ranker import labels as RL
from shoprec.ranker import model as RM
from shoprec.registry import AS_OF_TAG, CHALLENGER, CHAMPION
from shoprec.split import TemporalSplit
from shoprec.stages.context import JobContext
from shoprec.stages.features import features_stage
from shoprec.stages.train_ranker import train_ranker_stage
from tests.builders import event, interactions, rows_of, write_silver
from tests.conftest import make_config
from tests.integration.test_hybrid import group_shop

CUTOFF = TemporalSplit(date(2021, 2, 1), validation_days=14, evaluation_days=14)
RR = make_config("/tmp/unused").recommend.rerank


def _history():
    return [
        event("u", "A", "2021-01-05 10:00", quantity=2, price=2.0),
        event("u", "B", "2021-01-05 10:00", price=4.0),
        event("u", "A", "2021-01-20 10:00", quantity=3, price=2.0),
        event("v", "A", "2021-01-25 09:00", country="France"),
        event("v", "C", "2021-01-25 09:00", country="France", price=8.0),
        event("w", "C", "2020-12-01 09:00", price=8.0),
    ]


def _pool(spark):
    rows = [
        ("u", "A", C.SRC_REPEAT, "A", 2.0, 1),
        ("u", "A", C.SRC_POPULAR_CONTEXT, None, 1.5, 2),
        ("u", "C", C.SRC_COOCCURRENCE, "A", 0.4, 1),
        ("u", "N", C.SRC_CONTENT, "B", 0.9, 1),  # never sold before the cutoff
        ("v", "A", C.SRC_POPULAR_CONTEXT, "France", 2.0, 1),
    ]
    return spark.createDataFrame(rows, POOL_SCHEMA)


def test_features_are_point_in_time_and_pivot_every_source(spark):
    pool = _pool(spark)
    before = RF.ranker_features(pool, interactions(spark, _history()), CUTOFF, RR, trend_days=14)
    # Poison: rows at the cutoff's midnight and after it, for the same users, items and countries.
    poisoned = [
        *_history(),
        event("u", "C", "2021-02-01 00:00", price=100.0),
        event("u", "N", "2021-02-03 10:00"),
        event("v", "A", "2021-02-01 00:00", quantity=50, country="Germany"),
        event("x", "A", "2021-03-01 10:00", country="France"),
        event("u", "B", "2021-02-10 10:00", event_type=C.VIEW),
    ]
    after = RF.ranker_features(pool, interactions(spark, poisoned), CUTOFF, RR, trend_days=14)
    assert before.columns == [C.USER_ID, C.ITEM_ID, *RF.feature_names()]
    assert rows_of(after) == rows_of(before)

    got = {(r[C.USER_ID], r[C.ITEM_ID]): r.asDict() for r in before.collect()}
    assert set(got) == {("u", "A"), ("u", "C"), ("u", "N"), ("v", "A")}
    ua, uc, un = got["u", "A"], got["u", "C"], got["u", "N"]
    # Two sources proposed (u, A): one row, both flagged, each with its own rank and score.
    assert (ua["repeat_proposed"], ua["repeat_rank"], ua["repeat_score"]) == (1.0, 1.0, 2.0)
    assert (ua["popular_context_proposed"], ua["popular_context_rank"]) == (1.0, 2.0)
    assert (ua["als_proposed"], ua["als_rank"], ua[C.CF_SCORE]) == (0.0, None, None)
    assert (ua[C.N_SOURCES], ua[C.BEST_SOURCE_RANK]) == (2.0, 1.0)
    # History of the pair and the user: A in two baskets (5 units), last at 10:00 12 days before the cutoff.
    days = lambda d: pytest.approx(d - 10 / 24)  # noqa: E731
    assert (ua[C.PAIR_BASKETS], ua[C.PAIR_QUANTITY], ua[C.PAIR_DAYS_SINCE]) == (2.0, 5.0, days(12))
    assert (un[C.PAIR_BASKETS], un[C.PAIR_DAYS_SINCE]) == (0.0, RF.NEVER_DAYS)
    assert (ua[C.USER_BASKETS], ua[C.USER_LINES], ua[C.USER_DAYS_SINCE], ua[C.USER_TENURE_DAYS]) == (
        2.0,
        3.0,
        days(12),
        days(27),
    )
    assert ua[C.USER_MONETARY] == pytest.approx(2 * 2.0 + 4.0 + 3 * 2.0)
    assert ua[C.USER_REPEAT_RATE] == pytest.approx(0.5)  # A rebought, B not
    # Items: A bought by u and v (u twice), C by v and w; N never sold (new: 0 days on sale).
    assert (ua[C.ITEM_BUYERS], ua[C.ITEM_REPEAT_RATE], ua[C.ITEM_DAYS_ON_SALE]) == (2.0, 0.5, days(27))
    # Trend over 14 days: A's recent buyers u (01-20) and v (01-25), u (01-05) in the 14 days before.
    assert (ua[C.ITEM_RECENT_BUYERS], ua[C.ITEM_TREND]) == (2.0, (2 + 1) / (1 + 1))
    assert (un[C.ITEM_BUYERS], un[C.ITEM_DAYS_ON_SALE], un[C.ITEM_PRICE]) == (0.0, 0.0, None)
    # Price: C costs 8, u usually pays 2 (median of 2, 4, 2).
    assert uc[C.PRICE_RATIO] == pytest.approx(4.0)
    # Country: u is in the UK (buyers u and w), where C was bought by w only.
    assert uc[C.COUNTRY_SHARE] == pytest.approx(0.5)
    assert got["v", "A"][C.COUNTRY_SHARE] == pytest.approx(1.0)  # v in France: v bought A


def test_labels_are_the_purchases_of_the_window_after_the_cutoff(spark):
    rows = [
        event("u", "before", "2021-01-31 23:59"),
        event("u", "start", "2021-02-01 00:00"),  # the window's first instant: inside
        event("u", "inside", "2021-02-10 12:00"),
        event("u", "end", "2021-02-15 00:00"),  # the window's end: outside
        event("u", "viewed", "2021-02-05 12:00", event_type=C.VIEW),
        event("v", "inside", "2021-02-03 12:00"),
    ]
    silver = interactions(spark, rows)
    truth = RL.window_truth(silver, CUTOFF)
    items = ["before", "start", "inside", "end", "viewed"]
    table = spark.createDataFrame([*[("u", i) for i in items], ("v", "start")], [C.USER_ID, C.ITEM_ID])
    got = {(r[C.USER_ID], r[C.ITEM_ID]): r[C.LABEL] for r in RL.labelled(table, truth).collect()}
    assert got == {
        ("u", "before"): 0.0,
        ("u", "start"): 1.0,
        ("u", "inside"): 1.0,
        ("u", "end"): 0.0,
        ("u", "viewed"): 0.0,
        ("v", "start"): 0.0,
    }
    # Training users: bought in the window and before it (v never bought before the cutoff).
    assert rows_of(RL.training_users(silver, CUTOFF, truth, 10, 42)) == [("u",)]


# ------------------------------------------------------------------------------ the stage
AS_OF = date(2021, 3, 1)
TINY_RANKER = (
    "features.text.min_count=1",
    "features.text.clusters=2",
    "split.validation_days=14",
    "split.evaluation_days=14",
    "ranker.validation_share=0.3",
    "ranker.params.n_estimators=40",
    "ranker.params.early_stopping_rounds=5",
    "ranker.params.max_depth=3",
)
# No split can pay for itself: every prediction is the same, the pool is ordered by item id.
CONSTANT = ("ranker.params.min_child_weight=1000000000.0", "ranker.params.n_estimators=2")


@pytest.fixture(scope="module")
def ranked(spark, tmp_path_factory):
    """train-ranker three times on one shop: a constant ranker first (champion: there is none),
    a learned one (better: promoted), a constant one again (worse: stays challenger)."""
    root = tmp_path_factory.mktemp("ranker") / "lakehouse"
    out = io.StringIO()
    ctx = JobContext.create(make_config(root, *TINY_RANKER), out)
    write_silver(ctx.tables, spark, group_shop())
    features_stage(ctx, AS_OF)
    reports = []
    for extra in (CONSTANT, (), CONSTANT):
        run_ctx = JobContext(make_config(root, *TINY_RANKER, *extra), spark, ctx.tables, out)
        reports.append(train_ranker_stage(run_ctx, AS_OF))
    return ctx, reports, out.getvalue()


def test_train_ranker_learns_registers_and_promotes_only_a_better_one(ranked):
    ctx, (constant, learned, worse), printed = ranked
    assert constant.counts["users"] == 24 and constant.counts["validation_users"] > 0
    assert constant.counts["positives"] > 0 and constant.workers == 2
    assert learned.ndcg > constant.ndcg  # the learned order beats ties broken by item id
    assert {r["feature"] for r in learned.importance} == set(RF.feature_names())
    assert any(float(r["gain"]) > 0 for r in learned.importance)
    assert (constant.model_version, learned.model_version, worse.model_version) == ("1", "2", "3")
    assert "promoted to champion" in constant.registration and "promoted to champion" in learned.registration
    assert "stays challenger" in worse.registration
    client = MlflowClient()
    name = ctx.cfg.ranker.registered_model
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "2"
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == "3"
    v2 = client.get_model_version(name, "2")
    assert v2.tags[AS_OF_TAG] == AS_OF.isoformat() and float(v2.tags[RM.METRIC]) == pytest.approx(learned.ndcg)

    run = client.get_run(v2.run_id)
    assert run.data.tags["shoprec.stage"] == "train-ranker"
    assert run.data.metrics[RM.METRIC] == pytest.approx(learned.ndcg)
    assert f"{RM.METRIC}.pool" in run.data.metrics
    assert run.data.params["ranker.params.max_depth"] == "3"
    logged = {a.path for a in client.list_artifacts(v2.run_id, "ranker")}
    assert {f"ranker/{f}" for f in ("feature_importance.csv", "feature_importance.png", "features.json")} <= logged
    history = client.get_metric_history(v2.run_id, "round.validation_ndcg_at_10")
    assert len(history) == learned.rounds
    assert "train-ranker (as_of 2021-03-01, trained at the validation start 2021-02-15)" in printed


def test_spark_scores_equal_the_boosters_own_predictions(ranked, spark):
    """The registered champion, loaded back, scores a serving-time table (features at as_of) in
    Spark; its booster's own predict on the collected sample gives the same numbers."""
    import xgboost

    ctx, (_, learned, _), _ = ranked
    loaded = mlflow.spark.load_model(f"models:/{ctx.cfg.ranker.registered_model}@{CHAMPION}")
    (stage,) = loaded.stages
    silver = ctx.tables.read(C.SILVER_INTERACTIONS)
    users = [f"red_user{u}" for u in range(4)] + [f"blue_user{u}" for u in range(4)]
    pool = spark.createDataFrame(
        [(u, f"{c}{k}", C.SRC_REPEAT, None, float(k), k + 1) for u in users for c in ("red", "blue") for k in range(5)],
        POOL_SCHEMA,
    )
    serving = RF.ranker_features(pool, silver, TemporalSplit(AS_OF, 14, 14), ctx.cfg.recommend.rerank, 28)
    scored = RM.score(stage, serving)
    assert scored.columns == [*serving.columns, C.RANKER_SCORE]
    sample = scored.orderBy(C.USER_ID, C.ITEM_ID).limit(40).collect()  # small: the sample compared
    names = list(RF.feature_names())
    x = np.array([[math.nan if r[f] is None else r[f] for f in names] for r in sample], dtype=np.float64)
    booster = RM.best_booster(stage)
    assert booster.num_boosted_rounds() == learned.best_iteration + 1
    own = booster.predict(xgboost.DMatrix(x, feature_names=names, missing=math.nan))
    np.testing.assert_allclose([r[C.RANKER_SCORE] for r in sample], own, rtol=0, atol=1e-6)
