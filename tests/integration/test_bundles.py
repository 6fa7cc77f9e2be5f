"""shoprec bundles: FPGrowth rules, partners per item, basket completion, hit rate, the stage."""

from __future__ import annotations

import io
from datetime import date

import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.bundles import complete
from shoprec.bundles import rules as R
from shoprec.bundles.baskets import baskets as basket_frame
from shoprec.bundles.baskets import for_mining, recent_basket_items
from shoprec.stages.bundles import bundles_stage
from shoprec.stages.context import JobContext
from tests.builders import event, interactions, rows_of, write_silver
from tests.conftest import make_config

AS_OF = date(2021, 3, 1)
# Ten baskets before as_of: A in 7, B in 6, C in 4, D in 3; A+B in 6, A+C, B+C, C+D, A+B+C in 2.
HISTORY = (
    [("ab", i, "AB") for i in range(4)]
    + [("abc", i, "ABC") for i in range(2)]
    + [("cd", i, "CD") for i in range(2)]
    + [(None, 0, "A"), ("d", 0, "D")]
)
# The first basket in the evaluation window of four of them.
NEXT = [("ab", 0, "CX"), ("abc", 0, "E"), ("d", 0, "B"), ("cd", 0, "A")]
THRESHOLDS = ("bundles.min_support=0.2", "bundles.min_confidence=0.5", "bundles.min_lift=1.2")


def _rows(specs, day: str):
    out = []
    for who, i, items in specs:
        user = f"{who}{i}" if who else None
        for item in items:
            out.append(event(user, item, f"{day} 1{i}:00", basket=f"{who}{i}-{day}", description=f"product {item}"))
    return out


def _shop():
    return _rows(HISTORY, "2021-01-10") + _rows(NEXT, "2021-03-05")


def _bcfg(*extra):
    return make_config("/tmp/unused", *THRESHOLDS, *extra).bundles


def _mined(spark, *extra):
    history = basket_frame(interactions(spark, _shop()), date(2020, 3, 1), AS_OF)
    mined, counts = for_mining(history, 100)
    return history, R.mine_rules(mined, counts.mined, _bcfg(*extra), 2), counts


def test_fpgrowth_rules_have_the_support_confidence_and_lift_of_the_baskets(spark):
    _, rules, counts = _mined(spark)
    assert (counts.baskets, counts.mined, counts.too_large, counts.single_item) == (10, 10, 0, 2)
    # A->B: 6 of A's 7 baskets hold B (0.857), B is in 6 of 10 (lift 1.43). C->A, C->B and
    # {A,B}->C fall below the lift or the confidence thresholds.
    assert rows_of(rules) == sorted(
        [
            (["A"], "B", 0.6, round(6 / 7, 9), round(6 / 7 / 0.6, 9), 6),
            (["A", "C"], "B", 0.2, 1.0, round(1 / 0.6, 9), 2),
            (["B"], "A", 0.6, 1.0, round(1 / 0.7, 9), 6),
            (["B", "C"], "A", 0.2, 1.0, round(1 / 0.7, 9), 2),
            (["C"], "D", 0.2, 0.5, round(0.5 / 0.3, 9), 2),
            (["D"], "C", 0.2, round(2 / 3, 9), round(2 / 3 / 0.4, 9), 2),
        ],
        key=repr,
    )
    _, one_item, _ = _mined(spark, "bundles.max_antecedent=1")
    assert one_item.where(F.size(C.ANTECEDENT_ITEMS) > 1).count() == 0 and one_item.count() == 4


def test_partners_per_item_and_the_rules_a_basket_fires(spark):
    history, rules, _ = _mined(spark)
    assert rows_of(R.partners(rules, 1).select(C.ITEM_ID, C.RANK, C.PARTNER_ITEM_ID)) == [
        ("A", 1, "B"),
        ("B", 1, "A"),
        ("C", 1, "D"),
        ("D", 1, "C"),
    ]
    held = spark.createDataFrame([("u", "A"), ("u", "C"), ("w", "A"), ("w", "B")], [C.USER_ID, C.ITEM_ID])
    fired = R.fired_rules(held, rules).select(C.USER_ID, C.ANTECEDENT_ITEMS, C.CONSEQUENT_ITEM)
    # u holds A and C: A->B, {A,C}->B and C->D fire; w holds both sides of A->B, so nothing.
    assert rows_of(fired) == sorted([("u", ["A"], "B"), ("u", ["A", "C"], "B"), ("u", ["C"], "D")], key=repr)
    best = complete.rule_candidates(held, rules).select(C.USER_ID, C.ITEM_ID, "anchor_item", "source_score")
    assert rows_of(best) == [("u", "B", "A + C", 1.0), ("u", "D", "C", 0.5)]
    # As recommend's candidate source: ranked by confidence, anchored on the first left-side item.
    source = complete.pool_source(held, rules, 1)
    assert rows_of(source) == [("u", "B", C.SRC_BUNDLE, "A", 1.0, 1)]
    recent = recent_basket_items(history, 3)
    assert rows_of(recent.where(F.col(C.USER_ID) == "abc0").select(C.ITEM_ID)) == [("A",), ("B",), ("C",)]


@pytest.fixture(scope="module")
def bundled(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles") / "lakehouse"
    cfg = make_config(root, *THRESHOLDS, "bundles.ks=[1,3]", "bundles.baseline_pool=1", "split.evaluation_days=14")
    out = io.StringIO()
    ctx = JobContext.create(cfg, out)
    write_silver(ctx.tables, spark, _shop())
    first = bundles_stage(ctx, AS_OF)
    second = bundles_stage(ctx, AS_OF)
    recs = ctx.tables.read_as_of(C.GOLD_BUNDLE_RECOMMENDATIONS, AS_OF)
    return ctx, first, second, recs, out.getvalue()


def test_every_user_with_a_basket_gets_completions_tier_by_tier(bundled):
    _, first, _, recs, _ = bundled
    got = rows_of(recs.select(C.USER_ID, C.RANK, C.ITEM_ID, C.CANDIDATE_SOURCE))
    expected = []
    for i in range(4):  # A and B: no rule leads outside the basket; C goes with both, D is popular
        expected += [(f"ab{i}", 1, "C", C.SRC_COOCCURRENCE), (f"ab{i}", 2, "D", C.SRC_POPULAR_BASKET)]
    for i in range(2):
        expected += [(f"abc{i}", 1, "D", C.SRC_BUNDLE)]  # C -> D
        expected += [(f"cd{i}", 1, "B", C.SRC_COOCCURRENCE), (f"cd{i}", 2, "A", C.SRC_COOCCURRENCE)]
    expected += [
        ("d0", 1, "C", C.SRC_BUNDLE),
        ("d0", 2, "A", C.SRC_POPULAR_BASKET),
        ("d0", 3, "B", C.SRC_POPULAR_BASKET),
    ]
    assert got == sorted(expected, key=repr)
    assert first.users_with_baskets == first.users_with_recommendations == 9
    reasons = {r[C.USER_ID]: r[C.REASON] for r in recs.where(F.col(C.RANK) == 1).collect()}
    assert reasons["abc0"] == "goes with C (product C) from your basket (in 50% of baskets with it)"
    assert reasons["d0"] == "goes with D (product D) from your basket (in 67% of baskets with it)"
    assert reasons["cd0"] == "bought together with C (product C)"
    row = recs.where(F.col(C.USER_ID) == "ab0").orderBy(C.RANK).collect()
    assert row[1][C.REASON] == "often bought with other items"
    assert {r[C.MODEL_NAME] for r in recs.collect()} == {"shoprec-bundles"}  # no hybrid registered


def test_hit_rate_counts_the_next_basket(bundled):
    _, first, _, _, out = bundled
    rates = {(r[C.CANDIDATE_SOURCE], r[C.K]): (r[C.HIT_RATE], r[C.N_USERS]) for r in first.hit_rates}
    # Next baskets: ab0 {C, X} (C at 1), abc0 {E} (miss), d0 {B} (B at 3), cd0 {A} (A at 2).
    assert rates[(C.SRC_BUNDLE, 1)] == (0.25, 4) and rates[(C.SRC_BUNDLE, 3)] == (0.75, 4)
    # The most-bought-together list without the basket: ab0 C D, abc0 D, d0 A B C, cd0 A B.
    assert rates[(C.SRC_POPULAR_BASKET, 1)] == (0.5, 4) and rates[(C.SRC_POPULAR_BASKET, 3)] == (0.75, 4)
    # A pool of one item (A): only cd0, who lacks A and buys it next, is a hit.
    assert rates[(C.SRC_POPULAR_RANDOM, 1)] == (0.25, 4) and rates[(C.SRC_POPULAR_RANDOM, 3)] == (0.25, 4)
    assert "next-basket hit rate" in out and "strongest rules" in out


def test_tables_are_written_per_as_of_and_replaced_on_rerun(bundled):
    ctx, first, second, recs, _ = bundled
    for name in (C.GOLD_BUNDLES, C.GOLD_BUNDLE_PARTNERS, C.GOLD_BUNDLE_RECOMMENDATIONS):
        assert second.table_versions[name] == first.table_versions[name] + 1
        assert ctx.tables.partition_columns(name) == [C.AS_OF]
    assert (
        (second.rules, second.users_with_recommendations) == (first.rules, first.users_with_recommendations) == (6, 9)
    )
    rules = ctx.tables.read(C.GOLD_BUNDLES)
    assert rules.count() == 6 and rules.where(F.col(C.LIFT) <= 1).count() == 0
    assert recs.count() == 4 * 2 + 2 * 1 + 2 * 2 + 3
