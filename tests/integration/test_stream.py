"""shoprec stream: event-log files landing in a folder, ingested exactly once, kill or not.

A real Structured Streaming query over a landing folder. The first run is ``shoprec stream`` as
its own process, SIGKILLed right after its first micro-batch's silver commit (its JVM goes
with it); the restart reruns that batch from Spark's offset log, the ingest resumes what was
staged, and the tables end equal to one batch ingest of the same files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from shoprec import columns as C
from shoprec.ingest.generator import generate
from shoprec.stages.context import JobContext
from shoprec.stages.ingest import run_ingest
from shoprec.stages.stream import landing_dir, stream_config, stream_stage
from shoprec.tables import faults, open_tables
from tests.conftest import make_config, shoprec_command

ONE_FILE_A_BATCH = "stream.max_files_per_trigger=1"


def _land(path: str, landing: str) -> None:
    """As a producer should: write beside the folder, then rename in (one atomic step)."""
    os.makedirs(landing, exist_ok=True)
    tmp = os.path.join(os.path.dirname(landing), "." + os.path.basename(path))
    shutil.copyfile(path, tmp)
    os.replace(tmp, os.path.join(landing, os.path.basename(path)))


def _quarantine_reasons(tables) -> dict[str, int]:
    rows = tables.read(C.quarantine_table("event_log")).groupBy(C.REASON).count().collect()
    return {r[C.REASON]: r["count"] for r in rows}


def _ids(tables) -> list[str]:
    return sorted(r[0] for r in tables.read(C.SILVER_INTERACTIONS).select(C.INTERACTION_ID).collect())


@pytest.fixture(scope="module")
def event_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("events")
    result = generate(
        str(out), users=40, items=15, events=600, fmt="jsonl", events_per_file=200, bad_row_rate=0.05, days=30
    )
    assert len(result.event_files) == 3 and result.bad_rows > 0
    return sorted(result.event_files)


def test_stream_killed_mid_batch_resumes_and_ingests_every_file_exactly_once(spark, tmp_path, event_files):
    clean_root = tmp_path / "clean"
    clean = open_tables(spark, str(clean_root), "local")
    run_ingest(spark, stream_config(make_config(clean_root)), clean, inputs=list(event_files))

    root = tmp_path / "lakehouse"
    cfg = make_config(root, ONE_FILE_A_BATCH)
    landing = landing_dir(cfg)
    for path in event_files[:2]:
        _land(path, landing)
    command = shoprec_command(["stream", "--available-now"], root, ONE_FILE_A_BATCH)
    env = dict(os.environ, **{faults.ENV: C.SILVER_INTERACTIONS})
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    tables = open_tables(spark, str(root), "local")
    assert tables.exists(C.SILVER_INTERACTIONS) and not tables.exists(C.BRONZE_INGEST_LOG)

    ctx = JobContext.create(cfg)
    restarted = stream_stage(ctx, available_now=True)
    # Batch 0 again (from the offset log, the same file), then batch 1.
    assert [(b.batch_id, len(b.files)) for b in restarted.batches] == [(0, 1), (1, 1)]
    _land(event_files[2], landing)
    later = stream_stage(ctx, available_now=True)
    assert [(b.batch_id, b.files) for b in later.batches] == [(2, (os.path.join(landing, "part-00002.jsonl.gz"),))]
    assert stream_stage(ctx, available_now=True).batches == []  # nothing new: nothing done

    assert _ids(tables) == _ids(clean) and len(set(_ids(tables))) == len(_ids(tables))
    assert _quarantine_reasons(tables) == _quarantine_reasons(clean)
    rows = restarted.totals()["rows_in"] + later.totals()["rows_in"]
    assert rows == 600 == tables.read(C.bronze_table("event_log")).count()
    assert tables.read(C.BRONZE_INGEST_LOG).count() == 3
    assert all(b.latency_s >= 0 for b in restarted.batches + later.batches)
