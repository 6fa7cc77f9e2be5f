"""Cluster mode for real on one box: a standalone Spark cluster (a master and two 1-core
workers, each its own JVM, started with the ``spark-class`` launcher the pyspark package
ships), the whole pipeline submitted to it with the cluster overlay, the hybrid model
trained through ``horovod.spark.run`` with one Horovod rank per executor."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyspark
import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from tests.integration.test_jobs import SMALL, SUBMIT_AS_OF, submit_jars

BIN = Path(sys.executable).parent
SPARK_HOME = Path(pyspark.__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, **extra)
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], stdout=fh,
                                stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and re.search(pattern, log.read_text(errors="replace")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[1]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {log} after {seconds} s:\n{log.read_text()[-3000:]}")


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process group started (the JVM and what it forked), SIGKILL stragglers."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def standalone_cluster(tmp_path):
    """``spark://127.0.0.1:<port>`` of a master and two workers (1 core, 2 GB each)."""
    port, ui = _free_port(), _free_port()
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    try:
        master = _start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                         "--webui-port", str(ui)], logs / "master.log")
        procs.append(master)
        _wait_for(logs / "master.log", r"I have been elected leader", master)
        url = f"spark://127.0.0.1:{port}"
        for i in range(2):
            worker = _start(["org.apache.spark.deploy.worker.Worker", url, "--cores", "1", "--memory", "2g",
                             "--host", "127.0.0.1", "--webui-port", str(_free_port()),
                             "--work-dir", str(tmp_path / f"work{i}")], logs / f"worker{i}.log")
            procs.append(worker)
        for i in range(2):
            _wait_for(logs / f"worker{i}.log", r"Successfully registered with master", procs[i + 1])
        yield url, procs
        _stop(procs)
        assert all(p.poll() is not None for p in procs), "a cluster process outlived the test"
    finally:
        _stop(procs)


@pytest.mark.slow
@pytest.mark.horovod
@pytest.mark.cluster
@pytest.mark.timeout(3000)
def test_pipeline_runs_on_a_standalone_cluster_with_horovod_on_spark(standalone_cluster, tmp_path):
    from shoprec.ingest.generator import generate

    url, procs = standalone_cluster
    gen = generate(str(tmp_path / "gen"), users=400, items=150, events=30_000, seed=3)
    root = tmp_path / "lakehouse"
    # The cluster overlay as a team would use it (Spark's own Delta, its JARs shipped with
    # --jars), minus the tracking server one box does not have (SQLite instead).
    sets = [*SMALL, "spark.settings.spark.sql.shuffle.partitions=4", "ingest.source=event_log",
            f"ingest.inputs=[{os.path.dirname(gen.event_files[0])}]", f"ingest.catalog={gen.catalog_file}"]
    result = subprocess.run(
        [str(BIN / "spark-submit"), "--master", url, "--driver-memory", "2g", "--executor-memory", "1500m",
         "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.ui.enabled=false", *submit_jars(),
         "jobs/pipeline.py", "--env", "cluster", "--data-root", str(root), "--as-of", SUBMIT_AS_OF,
         *[arg for s in sets for arg in ("--set", s)]],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=2700,
        env=_env(MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db", SHOPREC_DATA_ROOT=str(root)),
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    out = result.stdout
    assert "hybrid model" in out or "train-hybrid" in out
    # Trained across the executors: horovod.spark.run, not horovodrun.
    assert "spark with 2 process(es)" in out, out[-4000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs(client.get_experiment_by_name("shoprec").experiment_id,
                              filter_string="tags.`shoprec.stage` = 'train-hybrid'")
    assert len(runs) == 1 and runs[0].data.params["hybrid.launcher_processes"] == "2"
    assert runs[0].data.tags["shoprec.env"] == "cluster"
    assert str(client.get_model_version_by_alias("shoprec-hybrid", "champion").version) == "1"
    # The outputs have a local run's shape: every user seen before as_of has a list of K.
    recs = pa.table(DeltaTable(str(root / "gold" / "recommendations")).to_pyarrow_table())
    assert set(recs["as_of"].to_pylist()) == {date(2023, 11, 1)}
    per_user = recs.group_by("user_id").aggregate([("rank", "count")]).to_pylist()
    assert per_user and all(r["rank_count"] <= 10 for r in per_user)
    assert sum(r["rank_count"] == 10 for r in per_user) > 0.9 * len(per_user)
    sources = set(pa.table(DeltaTable(str(root / "gold" / "evaluation")).to_pyarrow_table())["source"].to_pylist())
    assert {"recommend", "als", "hybrid", "bundles", "popular"} <= sources
    # Executors ran in the workers' JVMs, not in the driver.
    executors = [*(tmp_path / "work0").glob("app-*/*"), *(tmp_path / "work1").glob("app-*/*")]
    assert len(executors) >= 2, executors
    assert all(p.poll() is None for p in procs)  # the cluster outlived the application
