"""Test fixtures: one local Spark session for the whole run, temp Delta roots and MLflow stores per test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pyspark.pandas warns unless this is set before the JVM starts.
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

REPO = Path(__file__).resolve().parents[1]
TEST_OVERRIDES = (
    "spark.master=local[2]",
    "spark.settings.spark.sql.shuffle.partitions=2",
    "spark.launch_settings.spark.ui.enabled=false",
    "spark.launch_settings.spark.ui.showConsoleProgress=false",
    # The main job runs the whole pipeline in this one JVM (bundles included): 4g ran out of heap.
    "spark.launch_settings.spark.driver.memory=6g",
)


def make_config(data_root: str | Path, *overrides: str, env: str = "local"):
    from shoprec.config import load_config

    return load_config(env, [*TEST_OVERRIDES, *overrides], REPO / "conf", str(data_root))


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The one Spark session, built by shoprec's own factory from the local config."""
    from shoprec.spark import get_spark

    warehouse = tmp_path_factory.mktemp("warehouse")
    cfg = make_config(tmp_path_factory.mktemp("lakehouse"),
                      f"spark.launch_settings.spark.sql.warehouse.dir={warehouse}")
    session = get_spark(cfg.spark)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def data_root(tmp_path) -> Path:
    return tmp_path / "lakehouse"


@pytest.fixture
def cfg(data_root):
    return make_config(data_root)


@pytest.fixture
def tables(spark, data_root):
    from shoprec.tables import open_tables

    return open_tables(spark, str(data_root), "local")


@pytest.fixture
def repo() -> Path:
    return REPO
