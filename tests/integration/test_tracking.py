"""MLflow embedded default: SQLite store under data_root, one run per job, the UI on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from shoprec.errors import ShoprecError
from shoprec.tracking import job_run, store_for, ui_command


def test_store_lives_under_the_data_root(cfg, data_root):
    store = store_for(cfg)
    assert store.tracking_uri == f"sqlite:///{data_root}/mlflow.db"
    assert store.registry_uri == store.tracking_uri
    assert store.artifact_root == (data_root / "mlartifacts").as_uri()


def test_job_run_logs_config_once_and_counts(cfg, data_root):
    with job_run(cfg, "ingest", tags={"shoprec.source": "online_retail"}) as run:
        run.counts({"rows_in": 10, "rows_kept": 8})
        run_id = run.run_id
    client = MlflowClient(tracking_uri=store_for(cfg).tracking_uri)
    got = client.get_run(run_id)
    assert got.data.metrics == {"rows_in": 10.0, "rows_kept": 8.0}
    assert got.data.tags["shoprec.stage"] == "ingest"
    assert got.data.tags["shoprec.outcome"] == "ok"
    assert got.data.params["spark.master"] == "local[2]"
    assert got.data.params["storage.data_root"] == str(data_root)
    artifacts = [a.path for a in client.list_artifacts(run_id, "config")]
    assert artifacts == ["config/resolved.yml"]
    assert (data_root / "mlflow.db").exists()
    assert Path(got.info.artifact_uri.replace("file://", "")).is_relative_to(data_root / "mlartifacts")


def test_stage_runs_nest_under_an_active_pipeline_run(cfg):
    from shoprec.tracking import configure

    configure(cfg)
    with mlflow.start_run(run_name="pipeline") as parent, job_run(cfg, "ingest") as child:
        child_id = child.run_id
    client = MlflowClient(tracking_uri=store_for(cfg).tracking_uri)
    assert client.get_run(child_id).data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_runs_are_named_by_stage_and_cutoff_and_compare_across_runs(cfg, tmp_path):
    from shoprec.reports import runs

    for as_of, ndcg in (("2011-06-01", 0.21), ("2011-11-01", 0.31)):
        with job_run(cfg, "evaluate", tags={"shoprec.as_of": as_of}) as run:
            run.counts(
                {
                    "recommend.warm.repeat.ndcg_at_10": ndcg,
                    "als.warm.repeat.ndcg_at_10": ndcg - 0.01,
                    "als.cold.repeat.ndcg_at_10": 0.0,
                }
            )
    table = runs.evaluation_runs(cfg)
    assert list(table["as_of"]) == ["2011-11-01", "2011-06-01"]  # newest first
    assert sorted(c for c in table.columns if c not in ("run_id", "started", "as_of", "git_commit")) == [
        "als",
        "recommend",
    ]
    assert list(table["recommend"]) == [0.31, 0.21]
    everything = runs.stage_runs(cfg, "evaluate")
    assert list(everything["run_name"]) == ["evaluate 2011-11-01", "evaluate 2011-06-01"]
    assert set(everything["source"]) == {cfg.ingest.source}
    png = runs.plot_runs(table, ["recommend", "als"], str(tmp_path / "runs.png"), "NDCG@10")
    assert Path(png).stat().st_size > 1000


def test_model_versions_and_promotion_by_hand(cfg):
    import mlflow.pyfunc

    from shoprec.registry import register_and_promote, set_alias
    from shoprec.reports import runs
    from shoprec.tracking import configure

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    configure(cfg)
    for value in (0.30, 0.20):  # the second is worse: it stays challenger
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=Constant())
            register_and_promote(info.model_uri, "shoprec-als", "val_ndcg_at_10", value, description=f"v {value}")
    table = runs.model_versions(cfg, "shoprec-als")
    assert list(table["version"]) == [2, 1]
    assert list(table["aliases"]) == ["challenger", "champion"]
    assert list(table["val_ndcg_at_10"]) == [0.20, 0.30] and list(table["description"]) == ["v 0.2", "v 0.3"]
    assert "stays challenger" in table["promotion"][0]
    assert "Spark MLlib ALS" in MlflowClient().get_registered_model("shoprec-als").description
    set_alias("shoprec-als", 2, note="rolled back after an A/B test")
    again = runs.model_versions(cfg, "shoprec-als")
    assert list(again["aliases"]) == ["challenger, champion", ""]
    assert again["promotion"][0] == "shoprec-als v2: champion set by hand (rolled back after an A/B test)"
    with pytest.raises(mlflow.exceptions.MlflowException):  # there is no version 7
        set_alias("shoprec-als", 7)
    with pytest.raises(ShoprecError, match="no registered model 'nope'"):
        runs.model_versions(cfg, "nope")


def test_failed_job_run_is_tagged_failed(cfg):
    with pytest.raises(ValueError), job_run(cfg, "ingest") as run:
        run_id = run.run_id
        raise ValueError("bad")
    client = MlflowClient(tracking_uri=store_for(cfg).tracking_uri)
    got = client.get_run(run_id)
    assert got.data.tags["shoprec.outcome"] == "failed"
    assert got.info.status == "FAILED"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_shoprec_ui_serves_the_store_on_localhost_only(cfg, data_root):
    assert ui_command(cfg)[ui_command(cfg).index("--host") + 1] == "127.0.0.1"
    with job_run(cfg, "ingest") as run:
        run.counts({"rows_in": 1})
    port = _free_port()
    shoprec = Path(sys.executable).with_name("shoprec")
    proc = subprocess.Popen(
        [str(shoprec), "ui", "--data-root", str(data_root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 240  # the server imports MLflow's app first: slow on a busy box
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10", timeout=2
                ) as resp:
                    body = resp.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert '"name": "shoprec"' in body or '"name":"shoprec"' in body
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        if listening:  # ss is there: nothing but loopback
            assert all("127.0.0.1" in line for line in listening.strip().splitlines())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and any workers it started
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert f"http://127.0.0.1:{port}" in out
