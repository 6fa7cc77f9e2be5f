"""Ingest killed at every commit boundary, then rerun: the tables end equal to a clean run's.

At every boundary the crash is simulated in-process (``shoprec.tables.faults.crash_after``): it
is raised right after the chosen commit and, like SIGKILL, nothing rolls back or cleans up
after it. Once, ``shoprec ingest`` runs as its own process and really is SIGKILLed there
(``SHOPREC_FAULT_AFTER_COMMIT``), its JVM and all."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec import paths
from shoprec.stages.ingest import run_ingest
from shoprec.tables import faults, open_tables
from tests.conftest import make_config, shoprec_command
from tests.integration.test_ingest_online_retail import LINES, write_csv

SOURCE = "online_retail"
# Every commit of one ingest, in the order it makes them (the ingest log last).
COMMITS = [
    C.bronze_table(SOURCE),
    C.quarantine_table(SOURCE),
    C.SILVER_INTERACTIONS,
    C.SILVER_ITEMS,
    C.SILVER_USERS,
    C.BRONZE_INGEST_LOG,
]
# Columns that differ between any two runs by design (when, and which MLflow run).
_RUN_COLUMNS = {C.INGESTED_AT, C.META_INGESTED_AT, "mlflow_run_id"}


def _contents(tables) -> dict[str, list[str]]:
    out = {}
    for name in COMMITS:
        df = tables.read(name)
        df = df.select(*[F.col(f"`{c}`") for c in df.columns if c not in _RUN_COLUMNS])
        out[name] = sorted(map(str, df.collect()))
    return out


@pytest.fixture
def invoices(tmp_path):
    return write_csv(tmp_path / "invoices.csv.gz", LINES)


@pytest.fixture
def clean(spark, tmp_path, invoices):
    root = tmp_path / "clean"
    tables = open_tables(spark, str(root), "local")
    run_ingest(spark, make_config(root), tables, inputs=[invoices])
    return _contents(tables)


def test_ingest_killed_after_any_commit_completes_on_rerun_equal_to_a_clean_run(spark, tmp_path, invoices, clean):
    assert sum(map(len, clean.values())) > 0 and len(clean[C.SILVER_INTERACTIONS]) == 7
    for boundary in COMMITS:
        root = tmp_path / boundary.replace(".", "_")
        cfg, tables = make_config(root), open_tables(spark, str(root), "local")
        with faults.crash_after(boundary), pytest.raises(faults.Crash):
            run_ingest(spark, cfg, tables, inputs=[invoices])
        assert tables.exists(boundary), boundary  # the crash came after that commit
        staging = paths.staging(str(root), "ingest")
        assert os.listdir(staging), boundary  # the staged batch waits for the rerun
        report = run_ingest(spark, cfg, tables, inputs=[invoices])
        if boundary == C.BRONZE_INGEST_LOG:
            assert report.files_skipped == (invoices,), boundary  # done: the log was its last commit
        else:
            assert (report.rows_in, report.rows_kept, report.rows_quarantined) == (19, 7, 12), boundary
        assert _contents(tables) == clean, boundary
        versions = tables.versions(COMMITS)
        assert run_ingest(spark, cfg, tables, inputs=[invoices]).files_skipped == (invoices,)
        assert tables.versions(COMMITS) == versions, boundary  # a rerun after that writes nothing


def test_shoprec_ingest_sigkilled_after_silver_completes_on_rerun_equal_to_a_clean_run(
    spark, tmp_path, invoices, clean
):
    root = tmp_path / "killed"
    command = shoprec_command(["ingest"], root, f"ingest.inputs=[{invoices}]")
    env = dict(os.environ, **{faults.ENV: C.SILVER_INTERACTIONS})
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    tables = open_tables(spark, str(root), "local")
    assert tables.exists(C.SILVER_INTERACTIONS) and not tables.exists(C.BRONZE_INGEST_LOG)
    report = run_ingest(spark, make_config(root), tables, inputs=[invoices])
    assert (report.rows_in, report.rows_kept, report.rows_quarantined) == (19, 7, 12)
    assert _contents(tables) == clean
