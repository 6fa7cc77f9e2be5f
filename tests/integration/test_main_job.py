"""The main job as README's Quickstart runs it: ``shoprec pipeline`` on the shipped Online Retail
data, every table, model and evaluation number it promises. Its own module, so that pytest-xdist
(--dist loadfile) gives it a worker of its own while the rest of the suite runs on the other."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from shoprec.cli import main
from tests.conftest import TEST_BACKEND, shoprec_command
from tests.serving import Server, call

# Spark's Delta unless SHOPREC_TEST_DELTA_BACKEND names another backend.
MAIN_JOB_BACKEND = TEST_BACKEND if "SHOPREC_TEST_DELTA_BACKEND" in os.environ else "storage.delta_backend=spark"


@pytest.mark.slow
@pytest.mark.horovod
@pytest.mark.timeout(4800)
def test_main_job_runs_the_pipeline_on_the_shipped_online_retail_data(spark, data_root, capsys):
    # On Spark's own Delta, the product default (issue 18): the stage tests keep delta-rs
    # (tests/conftest.py), the main job shows the default backend end to end.
    assert main(["pipeline", "--data-root", str(data_root), "--set", MAIN_JOB_BACKEND]) == 0
    out = capsys.readouterr().out
    assert "rows in 541,909 = kept 534,129 + quarantined 7,780" in out
    assert f"Delta tables:  {data_root}/<layer>/<table>" in out
    assert f"MLflow store:  sqlite:///{data_root}/mlflow.db" in out
    kept = pa.table(DeltaTable(str(data_root / "silver" / "interactions")).to_pyarrow_table(columns=["item_id"]))
    quarantined = DeltaTable(str(data_root / "quarantine" / "online_retail")).to_pyarrow_table(columns=["reason"])
    assert kept.num_rows + quarantined.num_rows == 541_909
    client = MlflowClient(tracking_uri=f"sqlite:///{data_root}/mlflow.db")
    runs = client.search_runs(
        client.get_experiment_by_name("shoprec").experiment_id, filter_string="tags.`shoprec.stage` = 'ingest'"
    )
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert metrics["rows_in"] == metrics["rows_kept"] + metrics["rows_quarantined"] == 541_909
    assert "mlflow.parentRunId" in runs[0].data.tags  # nested under the pipeline run
    pipeline_run = runs[0].data.tags["mlflow.parentRunId"]
    stages = client.search_runs(runs[0].info.experiment_id, filter_string=f"tags.mlflow.parentRunId = '{pipeline_run}'")
    assert sorted(r.data.tags["shoprec.stage"] for r in stages) == sorted(
        ["ingest", "features", "train-als", "train-hybrid", "bundles", "recommend", "evaluate"]
    )
    bundles = next(r for r in stages if r.data.tags["shoprec.stage"] == "bundles").data.metrics
    assert bundles["hit_rate_at_10.bundle"] > bundles["hit_rate_at_10.popular_random"], bundles
    assert bundles["users_with_recommendations"] == bundles["users_with_baskets"] > 0
    assert "bundles: next-basket hit rate@10 bundle" in out
    for model in ("shoprec-als", "shoprec-hybrid"):
        assert str(client.get_model_version_by_alias(model, "champion").version) == "1"
    _assert_recommendations(data_root, out)
    _assert_evaluation_table(data_root, out)
    if MAIN_JOB_BACKEND.endswith("=spark"):
        _assert_written_by_spark_delta(data_root)
    _assert_served_and_streamed(data_root, capsys)


def _assert_served_and_streamed(data_root: Path, capsys) -> None:
    """``shoprec serve`` on the main job's lakehouse answers from its tables, a posted cart
    changes the next list, and ``shoprec stream`` takes the posted event into silver once."""
    recs = DeltaTable(str(data_root / "gold" / "recommendations")).to_pyarrow_table().to_pylist()
    partners = DeltaTable(str(data_root / "gold" / "bundle_partners")).to_pyarrow_table().to_pylist()
    user = "12347"
    listed = {r["item_id"] for r in recs if r["user_id"] == user}
    item = min((p for p in partners if p["rank"] == 1), key=lambda p: (-p["confidence"], p["item_id"]))
    before = DeltaTable(str(data_root / "silver" / "interactions")).to_pyarrow_table(columns=["user_id"]).num_rows
    with Server(shoprec_command(["serve"], data_root), data_root / "serve.log") as server:
        health = server.wait()
        assert health["users"] == len({r["user_id"] for r in recs}) and health["as_of"] == "2011-11-01"
        _, body = call(server.url + f"/v1/users/{user}/recommendations?k=10&at=2011-11-01T12:00:00")
        assert body["served_from"] == "batch" and {i["item_id"] for i in body["items"]} == listed
        _, cold = call(server.url + "/v1/users/nobody-yet/recommendations?k=3&country=France")
        assert cold["served_from"] == "cold_start" and cold["country"] == "France" and len(cold["items"]) == 3
        event = {"user_id": user, "item_id": item["item_id"], "event_type": "cart", "event_time": "2011-12-09 10:00:00"}
        status, posted = call(server.url + "/v1/events", body=[event])
        assert status == 202 and posted["accepted"] == 1, posted
        _, after = call(server.url + f"/v1/users/{user}/recommendations?k=10")
        assert after["items"][0]["item_id"] == item["partner_item_id"], after["items"][:2]
    capsys.readouterr()
    assert main(["stream", "--available-now", "--data-root", str(data_root), "--set", MAIN_JOB_BACKEND]) == 0
    assert "rows in 1 = kept 1 + quarantined 0" in capsys.readouterr().out
    silver = DeltaTable(str(data_root / "silver" / "interactions")).to_pyarrow_table(
        columns=["user_id", "item_id", "event_type"]
    )
    assert silver.num_rows == before + 1
    carts = silver.filter(pc.equal(silver["event_type"], "cart")).to_pylist()
    assert carts == [{"user_id": user, "item_id": item["item_id"], "event_type": "cart"}]


def _assert_written_by_spark_delta(data_root: Path) -> None:
    """Every table's first commit names Spark's Delta as its engine (delta-rs writes its own)."""
    for log in sorted(data_root.glob("*/*/_delta_log/00000000000000000000.json")):
        info = next(json.loads(line)["commitInfo"] for line in log.read_text().splitlines() if "commitInfo" in line)
        assert "Delta-Lake/4.0.1" in info.get("engineInfo", ""), (log, info.get("engineInfo"))


def _assert_recommendations(data_root: Path, out: str) -> None:
    """Every customer seen before as_of has a list, every country a cold-start list."""
    recs = pa.table(DeltaTable(str(data_root / "gold" / "recommendations")).to_pyarrow_table())
    silver = pa.table(
        DeltaTable(str(data_root / "silver" / "interactions")).to_pyarrow_table(
            columns=["user_id", "event_ts", "country"]
        )
    )
    cutoff = pa.scalar(datetime(2011, 11, 1, tzinfo=UTC), type=silver.schema.field("event_ts").type)
    before = silver.filter(pc.less(silver["event_ts"], cutoff))
    customers = set(before["user_id"].to_pylist()) - {None}
    users = set(recs["user_id"].to_pylist())
    assert users == customers
    lists = pa.table(DeltaTable(str(data_root / "gold" / "cold_start_lists")).to_pyarrow_table())
    assert {"United Kingdom", "France", "*"} <= set(lists["list_key"].to_pylist())
    per_user = recs.group_by("user_id").aggregate([("rank", "count"), ("rank", "max")]).to_pylist()
    assert all(r["rank_count"] == r["rank_max"] <= 10 for r in per_user)
    assert sum(r["rank_count"] == 10 for r in per_user) > 0.95 * len(per_user)
    assert all(recs["reason"].to_pylist()) and set(recs["model_name"].to_pylist()) >= {"shoprec-hybrid"}
    bundled = recs.filter(pc.equal(recs["source"], "bundle")).to_pylist()
    assert bundled and all(r["reason"].startswith("goes with ") for r in bundled)
    assert "gold.recommendations" in out and "shoprec-hybrid" in out and "champion" in out


def _assert_evaluation_table(data_root: Path, out: str) -> None:
    """Every source scored; on the real data the fused recommendations beat ALS and every
    baseline (buy it again included, by 0.006 NDCG@10 on 2026-12-04) for warm users and
    popularity for cold users; ALS and the hybrid beat every baseline but buy it again."""
    evaluation = DeltaTable(str(data_root / "gold" / "evaluation")).to_pyarrow_table().to_pylist()
    ndcg = {
        r["source"]: r["value"]
        for r in evaluation
        if (r["segment"], r["variant"], r["metric"], r["k"]) == ("warm", "repeat", "ndcg", 10)
    }
    assert set(ndcg) == {
        "recommend",
        "als",
        "hybrid",
        "bundles",
        "repeat",
        "popular",
        "popular_country",
        "popular_hour",
        "cooccurrence",
    }
    baselines = ("popular", "popular_country", "popular_hour", "cooccurrence")
    assert all(ndcg["als"] > ndcg[b] and ndcg["hybrid"] > ndcg[b] for b in baselines), ndcg
    assert all(ndcg["recommend"] > ndcg[b] for b in ("als", "repeat", *baselines)), ndcg
    cold = {
        r["source"]: r["value"]
        for r in evaluation
        if (r["segment"], r["variant"], r["metric"], r["k"]) == ("cold", "repeat", "ndcg", 10)
    }
    assert cold["recommend"] > cold["popular"], cold
    assert "warm users, repeat purchases count" in out and "NDCG@10" in out
