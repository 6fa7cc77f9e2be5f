"""Feature job on real Spark, Delta and MLflow: hand-worked values, and no leak from after as_of."""

from __future__ import annotations

import dataclasses
import math
from datetime import date

import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.errors import ConfigError
from shoprec.features.confidence import implicit_confidence
from shoprec.features.context import with_context
from shoprec.features.text import fit_text_model
from shoprec.features.user import user_features
from shoprec.split import TemporalSplit
from shoprec.stages.features import WRITES, run_features
from shoprec.tables import faults
from shoprec.tracking import job_run, store_for
from tests.builders import event, interactions, rows_of, write_silver

AS_OF = date(2011, 6, 1)
SPLIT = TemporalSplit(AS_OF, validation_days=14, evaluation_days=14)


def test_confidence_decays_with_age_and_returns_subtract(spark, cfg):
    fcfg = cfg.features  # half-life 90 days, purchase 1.0, return -1.0, log quantity
    rows = [
        event("u1", "A", "2011-03-03 00:00"),  # 90 days before: 0.5
        event("u1", "B", "2011-05-31 12:00", quantity=3),  # half a day: (1 + ln 3) * 0.5 ** (0.5/90)
        event("u1", "C", "2011-03-03 00:00"),  # 0.5 ...
        event("u1", "C", "2011-03-03 00:00", event_type=C.RETURN),  # ... minus 0.5: dropped
        event("u2", "A", "2010-12-03 00:00"),  # 180 days: 0.25
        event("u2", "A", "2011-03-03 00:00"),  # + 0.5
        event("u2", "B", "2011-06-01 00:00"),  # at as_of: evaluation window
        event(None, "A", "2011-05-01 00:00"),  # anonymous
        event("u2", "POST", "2011-05-01 00:00", is_product=False),  # postage
    ]
    got = implicit_confidence(interactions(spark, rows), SPLIT, fcfg).collect()
    assert {(r[C.USER_ID], r[C.ITEM_ID]) for r in got} == {("u1", "A"), ("u1", "B"), ("u2", "A")}
    by_pair = {(r[C.USER_ID], r[C.ITEM_ID]): r for r in got}
    assert by_pair[("u1", "A")][C.CONFIDENCE] == pytest.approx(0.5)
    assert by_pair[("u1", "B")][C.CONFIDENCE] == pytest.approx((1 + math.log(3)) * 0.5 ** (0.5 / 90))
    assert by_pair[("u2", "A")][C.CONFIDENCE] == pytest.approx(0.75)
    assert (by_pair[("u2", "A")][C.N_PURCHASES], by_pair[("u2", "A")][C.N_RETURNS]) == (2, 0)


def test_context_hour_weekday_season_and_days_to_the_next_holiday(spark):
    df = spark.createDataFrame(
        [
            ("a", "2011-12-19 14:30:00"),
            ("b", "2011-12-25 08:00:00"),
            ("c", "2011-12-26 23:59:00"),
            ("d", "2011-07-04 00:00:00"),
        ],
        "id string, ts string",
    ).withColumn(C.EVENT_TS, F.to_timestamp("ts"))
    got = {r["id"]: r for r in with_context(df, ["12-25", "easter"]).collect()}
    assert (got["a"][C.HOUR], got["a"][C.WEEKDAY], got["a"][C.MONTH], got["a"][C.SEASON]) == (14, 1, 12, "winter")
    assert got["a"][C.DAYS_TO_HOLIDAY] == 6
    assert got["b"][C.DAYS_TO_HOLIDAY] == 0
    # After Christmas the next holiday is Easter 2012 (8 April): the calendar runs a year past the data.
    assert got["c"][C.DAYS_TO_HOLIDAY] == (date(2012, 4, 8) - date(2011, 12, 26)).days
    assert (got["d"][C.SEASON], got["d"][C.WEEKDAY]) == ("summer", 1)


def test_user_features_worked_by_hand(spark):
    rows = [
        event("u1", "A", "2011-05-22 10:00", quantity=2, price=3.0, basket="b1", country="France"),
        event("u1", "B", "2011-05-22 10:05", quantity=1, price=10.0, basket="b1", country="France"),
        event("u1", "A", "2011-05-29 10:00", quantity=1, price=3.0, basket="b2", country="France"),
        event(
            "u1", "B", "2011-05-30 15:00", event_type=C.RETURN, quantity=1, price=10.0, basket="c1", country="France"
        ),
        event("u2", "C", "2011-04-01 18:00", quantity=5, price=1.0, basket="b3", country="Spain"),
        event("u3", "A", "2011-05-01 09:00", event_type=C.RETURN, basket="c2"),  # only a return
        event("u4", "A", "2011-06-02 10:00", basket="b4"),  # after as_of
    ]
    items = spark.createDataFrame(
        [("A", "mugs", 1), ("B", "lights", 3), ("C", "mugs", 1)], "item_id string, category string, price_band int"
    )
    got = {r[C.USER_ID]: r.asDict() for r in user_features(interactions(spark, rows), SPLIT, items, 3).collect()}
    assert set(got) == {"u1", "u2", "u3"}
    u1 = got["u1"]
    assert u1[C.COUNTRY] == "France"
    assert u1[C.RECENCY_DAYS] == pytest.approx(3 - 10 / 24)  # last purchase 2011-05-29 10:00
    assert (u1[C.FREQUENCY], u1[C.N_PURCHASES], u1[C.N_ITEMS], u1[C.N_RETURNS]) == (2, 3, 2, 1)
    assert u1[C.MONETARY] == pytest.approx(2 * 3.0 + 10.0 + 3.0 - 10.0)
    assert u1[C.AVG_BASKET_SIZE] == pytest.approx((2 + 1) / 2)
    assert u1[C.RETURN_RATE] == pytest.approx(1 / 3)
    assert u1[C.CATEGORY_MIX] == pytest.approx({"mugs": 2 / 3, "lights": 1 / 3})
    assert u1[C.PRICE_BAND_MIX] == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert (u1[C.PREFERRED_HOUR], u1[C.PREFERRED_WEEKDAY]) == (10, 7)  # 22 and 29 May 2011 were Sundays
    u3 = got["u3"]
    assert (u3[C.FREQUENCY], u3[C.N_PURCHASES], u3[C.N_RETURNS], u3[C.MONETARY]) == (0, 0, 1, -1.0)
    assert u3[C.RECENCY_DAYS] is None and u3[C.RETURN_RATE] is None and u3[C.CATEGORY_MIX] is None


FAMILIES = {
    "mug": ["heart", "mug", "ceramic", "tea", "cup", "pink"],
    "xmas": ["christmas", "tree", "bauble", "star", "decoration", "glitter"],
    "garden": ["garden", "spade", "trowel", "plant", "pot", "seed"],
}


def family_catalog(spark, per_family: int = 12):
    """Descriptions made of each family's own words, 3 of 6 per item."""
    rows = []
    for name, words in FAMILIES.items():
        for i in range(per_family):
            picked = [words[(i + j) % len(words)] for j in (0, 1, 3)]
            rows.append((f"{name}{i:02d}", " ".join(picked).upper(), name))
    return spark.createDataFrame(rows, "item_id string, description string, family string")


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_text_vectors_of_similar_products_are_similar(spark, cfg):
    catalog = family_catalog(spark)
    tcfg = cfg.features.text
    model = fit_text_model(catalog, tcfg)
    vectors = {r[C.ITEM_ID]: r for r in model.transform(catalog).collect()}
    family = {r["item_id"]: r["family"] for r in catalog.collect()}
    within, across = [], []
    ids = sorted(vectors)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            sim = cosine(vectors[a][C.TEXT_VECTOR], vectors[b][C.TEXT_VECTOR])
            (within if family[a] == family[b] else across).append(sim)
    assert sum(within) / len(within) > sum(across) / len(across) + 0.3
    assert len(next(iter(vectors.values()))[C.TEXT_VECTOR]) == tcfg.vector_size
    # Same input, same seeds: the same vectors (reruns and the leakage test rely on it).
    again = {r[C.ITEM_ID]: r[C.TEXT_VECTOR] for r in fit_text_model(catalog, tcfg).transform(catalog).collect()}
    assert again == {k: v[C.TEXT_VECTOR] for k, v in vectors.items()}


def history_rows():
    rows = []
    for u in range(8):
        for m, month in enumerate(("2011-02", "2011-03", "2011-04", "2011-05")):
            fam = list(FAMILIES)[(u + m) % 3]
            for j in range(3):
                item = f"{fam}{(u + j) % 12:02d}"
                words = FAMILIES[fam]
                rows.append(
                    event(
                        f"u{u}",
                        item,
                        f"{month}-{10 + u:02d} {9 + j:02d}:00",
                        quantity=1 + j,
                        price=1.0 + (u + j) % 5,
                        country="France" if u % 2 else "United Kingdom",
                        description=f"{words[u % 6]} {words[(u + 1) % 6]} {words[(u + 3) % 6]}".upper(),
                    )
                )
        rows.append(event(f"u{u}", f"{list(FAMILIES)[u % 3]}00", "2011-05-20 12:00", event_type=C.RETURN))
    rows.append(event(None, "mug00", "2011-05-21 12:00"))
    return rows


def poison_rows():
    """Everything at or after as_of: new users and items, absurd quantities, returns, new words."""
    return [
        event("u0", "mug00", "2011-06-01 00:00", quantity=500, price=999.0, country="Japan"),
        event("u1", "garden03", "2011-06-15 10:00", event_type=C.RETURN, quantity=40),
        event("u9", "xmas01", "2011-06-02 10:00", description="TOTALLY NEW WORDS HERE"),
        event("u9", "new01", "2011-06-03 10:00", description="ZEBRA ZEPPELIN ZITHER", price=50.0),
        event("u2", "new01", "2011-06-03 11:00", description="ZEBRA ZEPPELIN ZITHER"),
        event(None, "new02", "2011-07-01 11:00", description="QUIXOTIC QUOKKA"),
    ]


def run_job(spark, cfg, tables):
    with job_run(cfg, "features") as run:
        report = run_features(spark, cfg, tables, SPLIT, run)
    return report, run.run_id


def snapshot(tables):
    return {name: rows_of(tables.read(name)) for name in WRITES}


def test_features_job_writes_gold_tables_logs_them_and_ignores_everything_after_as_of(spark, cfg, tables):
    write_silver(tables, spark, history_rows())
    report, run_id = run_job(spark, cfg, tables)
    before = snapshot(tables)

    assert report.stats(C.GOLD_USER_FEATURES).rows == 8
    assert report.stats(C.GOLD_CONFIDENCE).rows == tables.read(C.GOLD_CONFIDENCE).count() > 0
    assert report.stats(C.GOLD_CONTEXT).rows == 8 * 4 * 3 + 8  # every known product event before as_of
    items = {r[C.ITEM_ID]: r for r in tables.read(C.GOLD_ITEM_FEATURES).collect()}
    assert "new01" not in items and len(items) == report.stats(C.GOLD_ITEM_FEATURES).rows
    assert {r[C.AS_OF] for r in tables.read(C.GOLD_USER_FEATURES).collect()} == {AS_OF}
    assert all(1 <= r[C.PRICE_BAND] <= cfg.features.price_bands for r in items.values())
    metrics = MlflowClient(store_for(cfg).tracking_uri).get_run(run_id).data.metrics
    assert metrics["user_features.rows"] == 8
    assert metrics["item_features.null_rate.item_id"] == 0.0
    assert metrics["context.null_rate.device"] == 1.0  # invoice data has no device
    profiles = tables.read(C.GOLD_ITEM_TIME_PROFILES).collect()
    assert {r[C.ITEM_ID] for r in profiles} <= set(items) and profiles
    assert all(abs(sum(r["hour_share"]) - 1) < 1e-9 and len(r["month_index"]) == 12 for r in profiles)
    assert 0 < report.stats(C.GOLD_USER_TIME_PROFILES).rows <= 8

    # Poison the evaluation window and rerun for the same cutoff: not one row may change.
    write_silver(tables, spark, history_rows() + poison_rows())
    run_job(spark, cfg, tables)
    assert snapshot(tables) == before
    # The rerun replaced the as_of partition instead of adding to it.
    assert tables.read(C.GOLD_USER_FEATURES).count() == 8


def test_a_failing_features_run_leaves_every_gold_table_as_it_was(spark, cfg, tables, data_root):
    write_silver(tables, spark, history_rows())
    run_job(spark, cfg, tables)
    before = snapshot(tables)
    # Item and user features are written before the context step meets the bad holiday (load
    # rejects such a config: replaced after load to fail mid-job).
    broken = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, holidays=("13-45",)))
    with pytest.raises(ConfigError, match="13-45"), job_run(broken, "features") as run:
        run_features(spark, broken, tables, SPLIT, run)
    # Delta restores by committing the old files again: new versions, the old rows.
    assert snapshot(tables) == before
    assert tables.version(C.GOLD_ITEM_FEATURES) == 2 and tables.version(C.GOLD_CONTEXT) == 0


def newcomer_rows():
    """A ninth customer before as_of: new counts, mixes and pairs in every feature table."""
    words = FAMILIES["garden"]
    return [
        event(
            "u8",
            f"garden{j:02d}",
            f"2011-05-{12 + j:02d} 10:00",
            quantity=2,
            price=4.0,
            country="Germany",
            description=f"{words[j]} {words[j + 1]} {words[j + 2]}".upper(),
        )
        for j in range(3)
    ]


def test_features_killed_between_its_commits_leaves_each_partition_whole_and_the_rerun_completes(spark, cfg, tables):
    write_silver(tables, spark, history_rows())
    run_job(spark, cfg, tables)
    before = snapshot(tables)
    write_silver(tables, spark, history_rows() + newcomer_rows())
    # Killed right after its second commit (user_features): nothing rolls back, as after SIGKILL.
    with faults.crash_after(C.GOLD_USER_FEATURES), pytest.raises(faults.Crash), job_run(cfg, "features") as run:
        run_features(spark, cfg, tables, SPLIT, run)
    crashed = snapshot(tables)
    run_job(spark, cfg, tables)
    after = snapshot(tables)
    replaced = WRITES[: WRITES.index(C.GOLD_USER_FEATURES) + 1]
    for name in WRITES:
        assert after[name] != before[name], name  # the newcomer changes every table
        # Each as_of partition is the old one or the new one, whole: never a mix.
        assert crashed[name] == (after[name] if name in replaced else before[name]), name
    assert tables.read(C.GOLD_USER_FEATURES).count() == 9
