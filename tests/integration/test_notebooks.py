"""Notebooks are executed top to bottom (as plain Python; widgets fall back to env vars) and
what they produce is checked. Notebook 03 builds a small lakehouse from a generated event
log, stage by stage; 02, 04, 05 and 06 then read it."""

from __future__ import annotations

import os
import runpy
from datetime import date

import pytest

from shoprec import columns as C
from tests.conftest import TEST_OVERRIDES
from tests.integration.test_ingest_online_retail import LINES, write_csv
from tests.integration.test_jobs import SMALL

AS_OF = "2023-11-01"


def _run(repo, name: str, **params: str) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in params.items():
            mp.setenv(f"SHOPREC_NB_{key.upper()}", str(value))
        return runpy.run_path(str(repo / "notebooks" / name), run_name="__main__")


@pytest.mark.notebook
def test_ingest_notebook_runs_and_shows_quality(spark, repo, tmp_path):
    source = write_csv(tmp_path / "invoices.csv.gz", LINES)
    ns = _run(
        repo,
        "01_ingest_and_quality.py",
        data_root=tmp_path / "lakehouse",
        inputs=source,
        settings="; ".join(TEST_OVERRIDES),
    )
    assert (ns["report"].rows_in, ns["report"].rows_kept) == (19, 7)
    reasons = dict(zip(ns["quarantine_by_reason"]["reason"], ns["quarantine_by_reason"]["count"], strict=True))
    assert reasons["SIGN_MISMATCH"] == 2 and sum(reasons.values()) == 12
    top = ns["top_items"]
    assert top.iloc[0]["item_id"] == "85123A" and top.iloc[0]["baskets"] == 3
    assert set(ns["top_countries"]["country"]) == {"United Kingdom", "EIRE"}  # France only bought postage
    assert len(ns["examples"]) == 12


@pytest.fixture(scope="module")
def lakehouse(spark, tmp_path_factory):
    """Notebook 03 run on 30,000 generated events: (data root, its namespace, the settings)."""
    from shoprec.ingest.generator import generate

    work = tmp_path_factory.mktemp("notebooks")
    gen = generate(str(work / "gen"), users=400, items=150, events=30_000, seed=3)
    # The generated sessions are mostly single items (108 of 805 baskets hold two or more):
    # rules need support of one basket here.
    bundles = ["bundles.min_support=0.001", "bundles.min_lift=1.0"]
    settings = "; ".join(
        [*TEST_OVERRIDES, *SMALL, *bundles, "ingest.source=event_log", f"ingest.catalog={gen.catalog_file}"]
    )
    root = work / "lakehouse"
    from tests.conftest import REPO

    ns = _run(
        REPO,
        "03_pipeline_step_by_step.py",
        data_root=root,
        as_of=AS_OF,
        inputs=os.path.dirname(gen.event_files[0]),
        settings=settings,
    )
    return root, ns, settings


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.horovod
@pytest.mark.timeout(1800)
def test_pipeline_notebook_runs_every_stage_into_the_lakehouse(lakehouse):
    root, ns, _ = lakehouse
    reports = ns["reports"]
    assert list(reports) == ["ingest", "features", "train-als", "train-hybrid", "bundles", "recommend", "evaluate"]
    assert ns["split"].as_of == date(2023, 11, 1)
    assert reports["ingest"].rows_in == reports["ingest"].rows_kept + reports["ingest"].rows_quarantined == 30_000
    assert reports["recommend"].users > 0 and reports["recommend"].rows >= 10 * reports["recommend"].users
    sources = set(reports["evaluate"].sources)
    assert {C.SRC_RECOMMEND, C.SRC_ALS, C.SRC_HYBRID, C.SRC_BUNDLES, C.SRC_POPULAR} <= sources
    for table in (C.GOLD_RECOMMENDATIONS, C.GOLD_BUNDLES, C.GOLD_EVALUATION, C.GOLD_ITEM_TIME_PROFILES):
        layer, name = table.split(".")
        assert (root / layer / name / "_delta_log").is_dir(), table


@pytest.mark.notebook
@pytest.mark.slow
def test_explore_notebook_summarises_the_purchases(repo, lakehouse):
    root, _, settings = lakehouse
    ns = _run(repo, "02_explore_data.py", data_root=root, settings=settings, min_lines=5)
    summary, tail, months = ns["summary"], ns["tail"], ns["months"]
    assert summary["lines"] == int(months["lines"].sum()) == int(tail["lines"].sum()) > 0
    assert summary["items"] == len(tail) and summary["first_day"] >= date(2023, 1, 1)
    assert list(tail["cumulative_share"]) == sorted(tail["cumulative_share"]) and tail["cumulative_share"].iloc[-1] == 1
    shares = list(ns["head"].values())
    assert shares == sorted(shares) and 0 < shares[0] < shares[-1] <= 1
    assert abs(ns["hours"]["hour_share"].sum() - 1) < 1e-9 and len(ns["weekdays"]) == 7
    assert 0 < len(ns["seasonal"]) <= 10 and (ns["seasonal"]["n_lines"] >= 5).all()
    assert list(ns["seasonal"]["seasonality"]) == sorted(ns["seasonal"]["seasonality"], reverse=True)
    assert os.path.getsize(ns["chart"]) > 10_000


@pytest.mark.notebook
@pytest.mark.slow
def test_compare_runs_notebook_tabulates_runs_and_promotes_by_hand(repo, lakehouse):
    root, _, settings = lakehouse
    ns = _run(
        repo,
        "04_compare_runs.py",
        data_root=root,
        settings=settings,
        promote_model="shoprec-als",
        promote_version="1",
        promote_note="notebook test",
    )
    evaluations = ns["evaluations"]
    assert len(evaluations) == 1 and evaluations["as_of"].iloc[0] == AS_OF
    assert {"recommend", "als", "hybrid", "bundles", "popular"} <= set(ns["sources"])
    assert 0 < evaluations["recommend"].iloc[0] <= 1 and os.path.getsize(ns["chart"]) > 1000
    assert len(ns["training"]) == 1 and ns["training"]["val_ndcg_at_10"].iloc[0] > 0
    hybrid = ns["versions"]["shoprec-hybrid"]
    assert list(hybrid["version"]) == [1] and "champion" in hybrid["aliases"].iloc[0]
    assert ns["promotion"] == "shoprec-als v1: champion set by hand (notebook test)"
    assert ns["versions"]["shoprec-als"]["promotion"].iloc[0] == ns["promotion"]


@pytest.mark.notebook
@pytest.mark.slow
def test_inspect_user_notebook_shows_history_list_and_reasons(repo, lakehouse):
    root, _, settings = lakehouse
    ns = _run(repo, "05_inspect_user.py", data_root=root, settings=settings)
    assert ns["as_of"] == date(2023, 11, 1) and ns["user_id"] == ns["examples"][0]
    history, recs = ns["history"], ns["recommendations"]
    assert len(history) > 0 and (history[C.EVENT_TS].dt.date < date(2023, 11, 1)).all()
    assert list(recs[C.RANK]) == list(range(1, 11)) and recs[C.REASON].str.len().min() > 0
    assert recs[C.ITEM_ID].is_unique and recs["bought_after"].dtype == bool
    completions = ns["completions"]
    assert list(completions[C.RANK]) == list(range(1, len(completions) + 1)) and len(completions) > 0
    # Completions never offer what is already in the baskets they complete (the last three).
    latest = history.groupby(C.BASKET_ID)[C.EVENT_TS].max().nlargest(3).index
    in_baskets = set(history[history[C.BASKET_ID].isin(latest)][C.ITEM_ID])
    assert in_baskets and not set(completions[C.ITEM_ID]) & in_baskets


@pytest.mark.notebook
@pytest.mark.slow
def test_bundles_browser_names_rules_and_partners(repo, lakehouse):
    root, _, settings = lakehouse
    ns = _run(repo, "06_bundles_browser.py", data_root=root, settings=settings, min_baskets=1)
    rules = ns["rules"]
    assert len(rules) > 0 and list(rules["lift"]) == sorted(rules["lift"], reverse=True)
    assert rules["consequent_name"].notna().all() and rules["antecedent_names"].str.len().min() > 0
    partners = ns["partners"]
    assert ns["item_id"] == rules["antecedent_items"].iloc[0][0]
    assert 0 < len(partners) <= 5 and list(partners[C.RANK]) == list(range(1, len(partners) + 1))


@pytest.mark.notebook
@pytest.mark.slow
def test_realtime_notebook_posts_a_cart_and_the_list_and_silver_follow(repo, lakehouse, tmp_path):
    import shutil

    root, _, settings = lakehouse
    copy = tmp_path / "lakehouse"  # the notebook writes (landing, silver): the others read the original
    shutil.copytree(root, copy)
    ns = _run(repo, "08_realtime.py", data_root=copy, settings=settings)
    assert ns["server"].poll() is not None  # the notebook stopped the server it started
    assert ns["posted"]["accepted"] == 1 and [r["reason"] for r in ns["posted"]["rejected"]] == ["MISSING_KEY"]
    before, after = ns["before"], ns["after"]
    assert before["served_from"] == after["served_from"] == "batch" and before["user_id"] == ns["user_id"]
    partners = [b["item_id"] for b in ns["bundles"]]
    lead = list(ns["after_table"]["item_id"][: len(partners)])
    assert partners and lead == partners, (partners, lead)  # the cart's partners lead, in rule order
    assert all(r.startswith("goes with ") for r in ns["after_table"]["reason"][: len(lead)])
    assert ns["silver_after"] == ns["silver_before"] + 1
    assert [b.rows_in for b in ns["streamed"].batches] == [1]
