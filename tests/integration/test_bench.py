"""Every benchmark runs with ``--smoke``: it prints its table and writes its JSON.

The full-size runs stay manual (docs/BENCHMARKS.md); these only prove the scripts still work
against today's library, so a changed signature fails here instead of on the next manual run.
Benches that share a session with the tests (generate, ingest, als_topn, pipeline) run in this
process on the session's Spark; scoring and train_throughput start (and stop) their own Spark
applications and Horovod processes, so they run as users run them, in a subprocess. Both read
the tiny lakehouse that ``bench/pipeline.py --smoke`` builds once for the module.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import TEST_BACKEND, load_bench

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
NUMBER = r"\d[\d,]*(?:\.\d+)?"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_modules():
    """bench/<name>.py as modules, with bench/ importable for their ``_common`` (as when run as scripts)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCH))
        yield load_bench


def run_in_process(module: ModuleType, *args: str) -> str:
    """``module.main(args)``; its stdout (the table). Fails unless it returns 0."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = module.main(list(args))
    assert code == 0, out.getvalue()
    return out.getvalue()


def run_script(name: str, *args: str, timeout: int = 600) -> str:
    """``python bench/<name>.py args`` as a user runs it; its stdout. Fails unless it exits 0."""
    env = dict(
        os.environ,
        SPARK_LOCAL_IP="127.0.0.1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    result = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def read_json(folder: Path, name: str) -> dict:
    with open(folder / f"{name}.json") as fh:
        report = json.load(fh)
    assert report["smoke"] is True
    return report


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-work")


@pytest.fixture(scope="module")
def smoke_pipeline(spark, bench_modules, work, results):
    """``bench/pipeline.py --smoke`` once: its table, and the tiny lakehouse (a registered
    hybrid champion included) that scoring and train_throughput read."""
    # On the tests' Delta backend (delta-rs unless SHOPREC_TEST_DELTA_BACKEND says; tests/conftest.py).
    table = run_in_process(
        bench_modules("pipeline"),
        "--smoke",
        "--work",
        str(work),
        "--results-dir",
        str(results),
        "--synthetic-set",
        TEST_BACKEND,
    )
    return table, work / "synthetic"


def test_smoke_never_writes_the_committed_results(bench_modules):
    common = bench_modules("_common")
    args = bench_modules("generate").parse_args(["--smoke", "--results-dir", str(BENCH / "results")])
    with pytest.raises(SystemExit, match="full-size result"):
        common.json_path(args, "generate")
    assert common.json_path(bench_modules("generate").parse_args([]), "generate") == str(
        BENCH / "results" / "generate.json"
    )


def test_generate(bench_modules, work, results):
    table = run_in_process(
        bench_modules("generate"), "--smoke", "--out", str(work / "generate"), "--results-dir", str(results), "--clean"
    )
    assert re.search(r"^events\s+20,000$", table, re.MULTILINE), table
    assert re.search(rf"^events/s\s+{NUMBER}$", table, re.MULTILINE), table
    report = read_json(results, "generate")
    assert report["events"] == 20_000 and report["events_per_s"] > 0 and report["wall_s"] >= 0


def test_ingest(spark, bench_modules, work, results):
    table = run_in_process(
        bench_modules("ingest"), "--smoke", "--root", str(work / "ingest"), "--results-dir", str(results), "--keep"
    )
    assert re.search(r"^A rows in\s+2,000$", table, re.MULTILINE), table
    assert re.search(r"^B rows in\s+20,000$", table, re.MULTILINE), table
    assert re.search(rf"^B rows/s\s+{NUMBER}$", table, re.MULTILINE), table
    report = read_json(results, "ingest")
    retail, events = report["online_retail"], report["event_log"]
    assert retail["first"]["rows_in"] == retail["first"]["rows_kept"] + retail["first"]["rows_quarantined"] == 2_000
    assert events["run"]["rows_in"] == 20_000 and events["run"]["wall_s"] > 0
    assert all(retail["checks"].values()) and all(events["checks"].values())


def test_als_topn(spark, bench_modules, work, results):
    # The event log test_ingest left ingested (--keep), so ALS reads it instead of ingesting again.
    events_root = work / "ingest" / "event_log"
    extra = ["--events-root", str(events_root)] if (events_root / "silver").is_dir() else []
    table = run_in_process(
        bench_modules("als_topn"), "--smoke", "--root", str(work / "als"), *extra, "--results-dir", str(results)
    )
    assert re.search(r"fit s\s+top-10 s\s+NDCG@10\s+Recall@10", table), table
    for row in ("Spark ALS + blocked top-N (ours)", "Spark ALS + recommendForAllUsers", "implicit (single node)"):
        assert re.search(rf"{re.escape(row)}\s+{NUMBER}\s+{NUMBER}\s+0\.\d{{4}}\s+0\.\d{{4}}", table), table
    report = read_json(results, "als_topn")["event_log"]
    for key in ("spark_fit_s", "topn_blocked_s", "recommend_for_all_users_s", "implicit_fit_s", "topn_speedup"):
        assert report[key] >= 0, key
    assert report["params"]["rank"] == 8 and report["lists_identical_share"] > 0.9
    assert 0 < report["spark_quality"]["ndcg_at_10"] <= 1 and report["spark_quality"]["users"] > 0


@pytest.mark.horovod
def test_pipeline(smoke_pipeline, work, results):
    table, _ = smoke_pipeline
    assert re.search(r"^stage\s+synthetic event log \(30,000 events", table, re.MULTILINE), table
    for stage in ("ingest", "features", "train-als", "train-hybrid", "bundles", "recommend", "evaluate"):
        assert re.search(rf"^{stage}\s+{NUMBER}$", table, re.MULTILINE), table
    report = read_json(results, "pipeline")
    (run,) = report["results"]
    assert set(run["stages"]) >= {"ingest", "train-hybrid", "evaluate", "pipeline (MLflow run)"}
    assert run["wall_seconds"] > 0 and run["peak_rss_gb"] > 0
    # Its output went to a file: no progress bars there (spark.ui.showConsoleProgress: auto).
    log = (work / "synthetic.log").read_text()
    assert "pipeline summary" in log and "[Stage " not in log


@pytest.mark.horovod
def test_scoring(smoke_pipeline, work, results):
    _, lakehouse = smoke_pipeline
    table = run_script(
        "scoring",
        "--smoke",
        "--data-root",
        str(lakehouse),
        "--work",
        str(work / "scoring"),
        "--results-dir",
        str(results),
    )
    assert re.search(r"^path\s+pairs\s+seconds\s+rows/s$", table, re.MULTILINE), table
    assert re.search(
        rf"^shoprec: shipped model, mapInArrow, large Arrow batches\s+5,000\s+{NUMBER}\s+{NUMBER}$", table, re.MULTILINE
    ), table
    assert re.search(rf"^ratio shoprec / default: {NUMBER}x", table, re.MULTILINE), table
    report = read_json(results, "scoring")
    assert [r["pairs"] for r in report["results"]] == [5_000, 5_000]
    assert all(r["rows_per_s"] > 0 for r in report["results"]) and report["ratio"] > 0
    assert report["model"].startswith("shoprec-hybrid v")


@pytest.mark.horovod
def test_train_throughput(smoke_pipeline, work, results):
    _, lakehouse = smoke_pipeline
    table = run_script(
        "train_throughput",
        "--smoke",
        "--data-root",
        str(lakehouse),
        "--out",
        str(work / "train"),
        "--results-dir",
        str(results),
    )
    assert re.search(r"samples/s\s+vs plain\s+train s\s+best val NDCG@10\s+s to best", table), table
    for label in ("plain model.fit, 1 process", "Horovod, 1 process", "Horovod, 2 processes"):
        assert re.search(rf"{re.escape(label)}\s+{NUMBER}\s+{NUMBER}", table), table
    report = read_json(results, "train_throughput")
    assert report["epochs"] == 1 and len(report["modes"]) == 3
    assert all(m["samples_per_second"] > 0 and m["epochs"] == 1 for m in report["modes"].values())
    assert report["quality"], "the smoke lakehouse has gold.evaluation"


def test_api_load(smoke_pipeline, work, results):
    _, lakehouse = smoke_pipeline
    table = run_script(
        "api_load",
        "--smoke",
        "--data-root",
        str(lakehouse),
        "--synthetic-users",
        "300",
        "--client",
        "python",
        "--results-dir",
        str(results),
    )
    assert re.search(rf"^shoprec serve: .*\(pipeline output\)\s+{NUMBER} users", table, re.MULTILINE), table
    assert re.search(r"^shoprec serve: 300 synthetic users' lists\s+300 users", table, re.MULTILINE), table
    assert re.search(rf"^shoprec / mlflow, 4 conn\s+{NUMBER}x req/s", table, re.MULTILINE), table
    report = read_json(results, "api_load")
    for section in report["shoprec"]:
        runs = [*section["closed_loop"], section["paced"]]
        assert [r["connections"] for r in runs] == [1, 4, 16]
        assert all(r["requests"] > 0 and r["non_2xx"] == 0 for r in runs), runs
    assert all(r["requests"] > 0 and r["non_2xx"] == 0 for r in report["mlflow"]["closed_loop"])
    assert report["mlflow"]["mean_pool"] > 0 and len(report["ratios"]) == 2


def test_freshness(smoke_pipeline, work, results):
    _, lakehouse = smoke_pipeline
    table = run_script("freshness", "--smoke", "--data-root", str(lakehouse), "--results-dir", str(results))
    assert re.search(r"^in a live list within the timeout\s+1$", table, re.MULTILINE), table
    assert re.search(rf"^seconds to the live list, median\s+{NUMBER}$", table, re.MULTILINE), table
    report = read_json(results, "freshness")
    assert report["events"] == report["arrived"] == 1 and report["median_s"] > 0
    # The bought item's partner led the very next list (None: the smoke shop has no partners).
    assert report["session_effect_share"] in (1.0, None)


def test_machine(results):
    table = run_script("machine", "--smoke", "--results-dir", str(results))
    assert re.search(rf"^python loop, 1,000,000 additions\s+{NUMBER} s$", table, re.MULTILINE), table
    assert re.search(rf"^Spark query, 1,000 rows in 2 partitions \(median\)\s+{NUMBER} s$", table, re.MULTILINE), table
    assert re.search(rf"^Arrow UDF query / plain query\s+{NUMBER}x$", table, re.MULTILINE), table
    report = read_json(results, "machine")
    assert report["python_loop"]["iterations"] == 1_000_000 and report["python_loop"]["seconds"] > 0
    assert report["tensorflow_import_s"] > 0 and report["matmul"]["gflops"] > 0
    spark = report["spark"]
    assert all(spark[k] > 0 for k in ("spark_start_s", "query_s", "arrow_udf_s", "first_arrow_udf_s")), spark
    assert report["ratios"]["arrow_udf_over_query"] == spark["arrow_udf_s"] / spark["query_s"]
    assert report["machine"]["cpus"] == os.cpu_count() and report["machine"]["spark_master"] == "local[2]"


def test_stream_throughput(work, results):
    # Both sources: the real Kafka broker too (CI has its jars and SHOPREC_REQUIRE_KAFKA=1, so
    # there a missing broker fails the bench; elsewhere the bench skips Kafka with a line).
    table = run_script(
        "stream_throughput",
        "--smoke",
        "--root",
        str(work / "stream"),
        "--results-dir",
        str(results),
        "--set",
        TEST_BACKEND,
    )
    report = read_json(results, "stream_throughput")
    assert report["generated"]["files"] == 2 and report["seed_batch"]["rows_in"] == 1_000
    assert re.search(r"^\s+landing\s+kafka\s+kafka / landing$", table, re.MULTILINE), table
    assert re.search(r"^rows in = kept \+ quarantined\s+yes\s+(yes|skipped)$", table, re.MULTILINE), table
    assert re.search(r"^seed batch: 1,000 events ingested first", table, re.MULTILINE), table
    assert re.search(r"^events\s+2,000\s+(2,000|skipped)$", table, re.MULTILINE), table
    ran = {name: r for name, r in report["sources"].items() if "skipped" not in r}
    if "kafka" not in ran:
        assert not os.environ.get("SHOPREC_REQUIRE_KAFKA") and "kafka skipped: " in table, table
    for name, r in ran.items():
        assert r["events"] == r["rows_in"] == 2_000, name
        assert r["rows_in"] == r["rows_kept"] + r["rows_quarantined"] and r["batches"] == 2, name
        assert r["events_per_s_sustained"] > 0 and r["batch_s"]["median"] > 0 and r["latency_s"]["max"] > 0, name
        assert all(r["checks"].values()), (name, r["checks"])
    if len(ran) == 2:
        assert re.search(rf"^events/s sustained\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x$", table, re.MULTILINE), table
        assert report["checks"]["same_kept_and_quarantined"] and report["ratios"]["events_per_s_sustained"] > 0
