"""features -> train-als -> evaluate on small hand-made shops (real Spark, Delta, MLflow)."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.errors import ShoprecError
from shoprec.evaluation.truth import user_segments
from shoprec.split import TemporalSplit, purchases
from shoprec.stages import evaluate as evaluation_job
from shoprec.stages.evaluate import run_evaluate
from shoprec.stages.features import run_features
from shoprec.stages.train_als import run_train_als
from shoprec.tracking import job_run, store_for
from tests.builders import event, rows_of, write_silver
from tests.conftest import make_config

AS_OF = date(2011, 6, 1)
SPLIT = TemporalSplit(AS_OF, validation_days=14, evaluation_days=14)
SMALL_ALS = (
    "als.rank=4",
    "als.max_iter=4",
    "als.alpha=5.0",
    "als.search.rank=[4]",
    "als.search.reg_param=[0.1]",
    "als.search.alpha=[1.0, 5.0]",
    "candidates.n=10",
)


def stage(spark, cfg, tables, name, runner):
    with job_run(cfg, name) as run:
        report = runner(spark, cfg, tables, SPLIT, run)
    return report, run.run_id


# ---------------------------------------------------------------------------- evaluate
def popular_shop():
    """A is everybody's favourite before and after as_of; n1 is a cold user who also buys
    the new item N."""
    rows = [event(f"u{i}", "A", "2011-05-10 10:00") for i in range(1, 5)]
    # A and B share two baskets: the one pair co-occurrence can use.
    rows += [
        event("u1", "B", "2011-05-10 10:00"),
        event("u2", "B", "2011-05-10 10:00"),
        event("u3", "C", "2011-05-12 10:00"),
    ]
    rows += [event(f"u{i}", "A", "2011-06-03 10:00") for i in range(1, 5)]
    rows += [event("n1", "A", "2011-06-05 10:00"), event("n1", "N", "2011-06-05 10:00")]
    rows += [event("late", "A", "2011-06-20 10:00")]  # after the window: not evaluated
    return rows


def test_evaluate_scores_every_baseline_per_segment_and_logs_table_and_plot(spark, cfg, tables, capsys):
    write_silver(tables, spark, popular_shop())
    report, run_id = stage(spark, cfg, tables, "evaluate", run_evaluate)

    assert report.sources == [
        C.SRC_REPEAT,
        C.SRC_POPULAR,
        C.SRC_POPULAR_COUNTRY,
        C.SRC_POPULAR_HOUR,
        C.SRC_COOCCURRENCE,
    ]
    # Warm users u1..u4 get A at rank 1 and bought only A: NDCG 1. n1's truth is {A, N}: a hit
    # at rank 1 of 2 relevant items gives 1 / (1 + 1/log2 3).
    cold = 1 / (1 + 1 / 1.584962500721156)
    assert report.value("popular", "warm", "repeat", "ndcg", 10) == pytest.approx(1.0)
    assert report.value("popular", "cold", "repeat", "ndcg", 10) == pytest.approx(cold)
    assert report.value("popular", "all", "repeat", "ndcg", 10) == pytest.approx((4 + cold) / 5)
    assert report.value("popular", "new_items", "repeat", "recall", 20) == 0.0  # nobody recommends N
    assert report.value("popular", "all", "repeat", "mrr") == pytest.approx(1.0)
    assert report.segment_users == {"all": 5, "warm": 4, "cold": 1, "new_items": 1}
    # New-to-the-user truth: u1..u4 rebought A, so only n1 is left.
    assert report.value("popular", "all", "new", "ndcg", 10) == pytest.approx(cold)
    # Co-occurrence seeds with A give B first; for A itself (u1, u2 also bought B) A comes
    # back at rank 1 or 2, and n1 (no history) has no list and counts as 0.
    assert report.value("cooccurrence", "cold", "repeat", "ndcg", 10) == 0.0
    assert 0.0 < report.value("cooccurrence", "warm", "repeat", "ndcg", 10) < 1.0
    # Buy it again: u1..u4 rebuy A, their own item (A before B on a tie); n1 gets the popular fill.
    assert report.value("repeat", "warm", "repeat", "ndcg", 10) == pytest.approx(1.0)
    assert report.value("repeat", "cold", "repeat", "ndcg", 10) == pytest.approx(cold)
    # Nobody bought in the validation window: the grid's smallest half-life, said so.
    assert report.repeat_half_life_days == 0.0 and report.repeat_search is not None

    written = tables.read(C.GOLD_EVALUATION)
    assert written.count() == len(report.rows)
    assert written.where(F.col(C.AS_OF) != F.lit(AS_OF)).count() == 0
    client = MlflowClient(store_for(cfg).tracking_uri)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["popular.warm.repeat.ndcg_at_10"] == pytest.approx(1.0)
    assert metrics["popular.all.repeat.n_users"] == 5
    assert metrics["repeat.warm.repeat.ndcg_at_10"] == pytest.approx(1.0)
    assert metrics["repeat_tuning.n_users"] == 0
    assert client.get_run(run_id).data.params["resolved.repeat_half_life_days"] == "0.0"
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert artifacts == {
        "evaluation/evaluation.csv",
        "evaluation/evaluation.html",
        "evaluation/ndcg_recall.png",
        "evaluation/ndcg_by_segment.png",
    }
    text = "\n".join(report.summary_lines())
    assert "popular_country" in text and "NDCG@10" in text
    assert "repeat half-life 0 days: no warm users in the validation window" in text

    # A rerun replaces the as_of partitions instead of adding to them.
    n_candidates = tables.read(C.GOLD_CANDIDATES).count()
    stage(spark, cfg, tables, "evaluate", run_evaluate)
    assert tables.read(C.GOLD_EVALUATION).count() == len(report.rows)
    assert tables.read(C.GOLD_CANDIDATES).count() == n_candidates


def test_evaluate_without_purchases_in_the_window_says_so(spark, cfg, tables):
    write_silver(tables, spark, [event("u1", "A", "2011-05-10 10:00")])
    with pytest.raises(ShoprecError, match="evaluation window"):
        stage(spark, cfg, tables, "evaluate", run_evaluate)
    assert not tables.exists(C.GOLD_EVALUATION)


# ---------------------------------------------------------------------------- all stages
def grouped_shop(seed=7):
    """Two taste groups; each user keeps buying from their own group, before and after as_of."""
    rnd = random.Random(seed)
    rows = []
    start = datetime(2011, 2, 1, 9)
    for u in range(30):
        group = u % 2
        for visit in range(10):
            ts = start + timedelta(days=rnd.randint(0, 135), hours=rnd.randint(0, 8))
            for item in rnd.sample(range(12), 3):
                rows.append(
                    event(
                        f"u{u:02d}",
                        f"g{group}i{item:02d}",
                        ts,
                        quantity=rnd.randint(1, 4),
                        price=1.0 + item % 4,
                        basket=f"u{u}-{visit}",
                        country="France" if u % 3 == 0 else "United Kingdom",
                        description=f"{'RED HEART' if group else 'GARDEN'} THING {item % 3}",
                    )
                )
    for u in range(30):  # the evaluation window
        ts = datetime(2011, 6, 3, 10) + timedelta(days=u % 7)
        for item in rnd.sample(range(12), 2):
            rows.append(event(f"u{u:02d}", f"g{u % 2}i{item:02d}", ts, basket=f"u{u}-eval"))
    return rows


def poison():
    rows = [
        event("u00", "g1i00", "2011-06-01 00:00", quantity=900, price=99.0, country="Japan"),
        event("u01", "zz", "2011-06-02 00:00", description="POISON"),
        event("intruder", "g0i03", "2011-06-04 12:00"),
        event("intruder", "g1i03", "2011-06-04 12:00"),
    ]
    rows += [event(f"u{u:02d}", "g1i05", "2011-06-05 09:00", event_type=C.RETURN, quantity=50) for u in range(0, 30, 2)]
    return rows


MODEL_TABLES = (C.GOLD_CONFIDENCE, C.GOLD_ALS_USER_FACTORS, C.GOLD_ALS_ITEM_FACTORS, C.GOLD_CANDIDATES)


def train_and_candidates(spark, cfg, tables):
    """features, train-als, then the baselines exactly as evaluate writes them."""
    stage(spark, cfg, tables, "features", run_features)
    als, run_id = stage(spark, cfg, tables, "train-als", run_train_als)
    sales = tables.read(C.SILVER_INTERACTIONS)
    history = SPLIT.history(purchases(sales))
    serve = evaluation_job.users_to_serve(tables, user_segments(sales, SPLIT), history)
    ccfg, _ = evaluation_job.repeat_config(history, cfg.candidates, SPLIT)
    evaluation_job.write_baselines(tables, history, serve, ccfg, AS_OF)
    return als, run_id


def scored(df):
    """Candidate lists of the users known before as_of (the window's cold users are served
    too, but only after they appear), without scores: ALS in float32 may differ in the last bits."""
    return sorted(
        (r[C.CANDIDATE_SOURCE], r[C.USER_ID], r[C.RANK], r[C.ITEM_ID])
        for r in df.collect()
        if r[C.USER_ID] != "intruder"
    )


def test_als_learns_the_groups_registers_the_model_and_nothing_after_as_of_leaks(spark, tables, data_root):
    cfg = make_config(data_root, *SMALL_ALS)
    write_silver(tables, spark, grouped_shop())
    als, run_id = train_and_candidates(spark, cfg, tables)

    assert len(als.trials) == 2 and als.params in [t.params for t in als.trials]
    assert als.model_version == "1" and "champion" in als.promotion
    candidates = tables.read(C.GOLD_CANDIDATES).where(F.col(C.CANDIDATE_SOURCE) == C.SRC_ALS)
    rows = candidates.collect()
    assert len(rows) == 30 * 10
    own_group = sum(r[C.ITEM_ID].startswith(f"g{int(r[C.USER_ID][1:]) % 2}") for r in rows if r[C.RANK] <= 5)
    assert own_group / (30 * 5) >= 0.9
    assert tables.read(C.GOLD_ALS_ITEM_FACTORS).count() == 24
    client = MlflowClient(store_for(cfg).tracking_uri)
    children = client.search_runs([client.get_run(run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(children) == 2
    assert str(client.get_model_version_by_alias("shoprec-als", "champion").version) == "1"

    before_confidence = rows_of(tables.read(C.GOLD_CONFIDENCE))
    before_candidates = scored(tables.read(C.GOLD_CANDIDATES))
    before_factors = rows_of(tables.read(C.GOLD_ALS_USER_FACTORS), C.FACTORS)

    write_silver(tables, spark, grouped_shop() + poison())
    train_and_candidates(spark, cfg, tables)
    assert rows_of(tables.read(C.GOLD_CONFIDENCE)) == before_confidence
    assert rows_of(tables.read(C.GOLD_ALS_USER_FACTORS), C.FACTORS) == before_factors
    assert scored(tables.read(C.GOLD_CANDIDATES)) == before_candidates
