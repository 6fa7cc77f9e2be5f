"""Test fixtures: one local Spark session for the whole run, temp Delta roots and MLflow stores per test."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pyspark.pandas warns unless this is set before the JVM starts.
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

REPO = Path(__file__).resolve().parents[1]
# Stage tests write through delta-rs, several times faster per operation than Spark's own
# Delta on tiny tables (docs/development.md). Spark's Delta is what the main-job test, the
# contract and interop tests (both backends), maintain and the cluster test run on; set
# SHOPREC_TEST_DELTA_BACKEND=auto to run every stage test on it too.
TEST_BACKEND = f"storage.delta_backend={os.environ.get('SHOPREC_TEST_DELTA_BACKEND', 'local')}"
TEST_OVERRIDES = (
    "spark.master=local[2]",
    "spark.settings.spark.sql.shuffle.partitions=2",
    "spark.launch_settings.spark.ui.enabled=false",
    "spark.launch_settings.spark.ui.showConsoleProgress=false",
    # The main job runs the whole pipeline in this one JVM (bundles included): 4g ran out of heap.
    "spark.launch_settings.spark.driver.memory=6g",
    TEST_BACKEND,
)


def shoprec_command(args: list[str], data_root: Path | str, *overrides: str) -> list[str]:
    """The ``shoprec`` command line of a test's subprocess: this environment's console script,
    the data root, and the tests' settings (``TEST_OVERRIDES``) plus ``overrides``."""
    import sys

    command = [str(Path(sys.executable).parent / "shoprec"), *args, "--data-root", str(data_root)]
    return command + [arg for s in (*TEST_OVERRIDES, *overrides) for arg in ("--set", s)]


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py as a module (bench/ holds scripts, not a package). A bench that imports
    ``_common`` needs bench/ on sys.path (test_bench's ``bench_modules`` puts it there)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None  # the file is in the checkout
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_config(data_root: str | Path, *overrides: str, env: str = "local"):
    from shoprec.config import load_config

    return load_config(env, [*TEST_OVERRIDES, *overrides], REPO / "conf", str(data_root))


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The one Spark session, built by shoprec's own factory from the local config."""
    from shoprec.spark import get_spark

    warehouse = tmp_path_factory.mktemp("warehouse")
    cfg = make_config(
        tmp_path_factory.mktemp("lakehouse"), f"spark.launch_settings.spark.sql.warehouse.dir={warehouse}"
    )
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


# ---------------------------------------------------------------------- two workers (pytest-xdist)
# pytest.ini runs the suite on two workers (-n 2 --dist loadfile): a test module runs whole on
# one worker, so its module fixtures are built once (the main-job test has a module of its own).
# The modules go out longest first, so the two workers finish together; the rest keeps file order.
# xdist hands each worker two modules at the start and the next one whenever fewer than three
# of its tests are left, so a one-test module queues a second behind it: the two quick unit
# modules after the two longest tests keep everything else free for the worker that is ahead
# (session 12: the notebooks module sat 47 min behind the main-job test).
# Not --dist loadgroup with xdist_group marks: under pytest 9 xdist's loadgroup cannot rename the
# node ids it groups by, so every test became its own group and both workers built each module's
# fixtures (session 12: the recommend fixture, 500 s, was built twice in CI).
LONGEST_FIRST = (
    "test_main_job.py",
    "test_cluster.py",
    "test_config.py",  # behind the main-job test
    "test_cli.py",  # behind the cluster test
    "test_notebooks.py",
    "test_bench.py",
    "test_ranker.py",
    "test_live.py",
    "test_recommend.py",
    "test_tables.py",
    "test_time_profiles.py",
    "test_model_stages.py",
    "test_hybrid.py",
    "test_features.py",
    "test_metrics.py",
    "test_ingest_online_retail.py",
    "test_maintain.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order otherwise


# ------------------------------------------------------------------------------ Kafka (tests.kafka_broker)
@pytest.fixture(scope="module")
def broker(spark, tmp_path_factory):
    """A real broker for one test module (those that call ``kafka_broker.require_or_skip()``)."""
    from tests.kafka_broker import KafkaBroker

    started = KafkaBroker.start(tmp_path_factory.mktemp("kafka"), spark)
    print(f"Kafka broker up in {started.started_s:.1f} s on {started.bootstrap_servers}")
    yield started
    started.stop()


@pytest.fixture
def broker_log(request, broker):
    """The broker's log under a failing test's output (``usefixtures("broker_log")``)."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        print(broker.log_tail())
