"""Two ingests of different files into one data root at once: one waits for the other, and the
tables end as if they had run one after the other.

Without the ingest lock they race (each de-duplicates against the silver it read and rewrites
silver.items from the interactions it saw). To make the overlap certain rather than likely, the
test holds the lock itself while it starts ``shoprec ingest`` of file B as its own process (its
own JVM) and waits until that process says it is waiting; then it starts the ingest of file A
in this process, lets go, and the two compete for the lock as two users' jobs would."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from shoprec import columns as C
from shoprec.ingest import quality as Q
from shoprec.stages.ingest import run_ingest
from shoprec.stages.ingest_batch import ingest_lock
from shoprec.tables import open_tables
from tests.conftest import make_config, shoprec_command
from tests.integration.test_ingest_online_retail import LINES, write_csv

SOURCE = "online_retail"
WAITING = "waiting for it"  # what a blocked ingest logs


def _ingest_process(root: Path, path: str) -> subprocess.Popen:
    command = shoprec_command(["ingest"], root, f"ingest.inputs=[{path}]")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _collect(stream, lines: list[str]) -> threading.Thread:
    def read() -> None:
        for line in stream:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def _wait_for(lines: list[str], text: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in lines):
        assert process.poll() is None, "".join(lines)[-3000:]  # it must block, not finish
        assert time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.5)


def test_two_ingests_at_once_end_as_one_after_the_other(spark, tmp_path):
    # A: lines 2-11 of the test file; B: lines 12-20 plus line 2 again (a cross-file duplicate).
    a = write_csv(tmp_path / "a.csv.gz", LINES[:10])
    b = write_csv(tmp_path / "b.csv.gz", [*LINES[10:], LINES[0]])
    clean_root = tmp_path / "clean"
    clean_tables = open_tables(spark, str(clean_root), "local")
    run_ingest(spark, make_config(clean_root), clean_tables, inputs=[write_csv(tmp_path / "all.csv.gz", LINES)])

    root = tmp_path / "both"
    cfg, tables = make_config(root), open_tables(spark, str(root), "local")
    output: list[str] = []
    reports = []
    with ingest_lock(str(root), timeout_s=60):
        other = _ingest_process(root, b)
        reader = _collect(other.stdout, output)
        _wait_for(output, WAITING, other, timeout_s=300)
        here = threading.Thread(target=lambda: reports.append(run_ingest(spark, cfg, tables, inputs=[a])))
        here.start()
    here.join(timeout=600)
    assert other.wait(timeout=600) == 0, "".join(output)[-3000:]
    reader.join(timeout=10)
    assert not here.is_alive() and len(reports) == 1

    log_rows = tables.read(C.BRONZE_INGEST_LOG).collect()
    assert sorted(r["path"] for r in log_rows) == sorted([a, b])
    assert sum(r["rows"] for r in log_rows) == 20 == tables.read(C.bronze_table(SOURCE)).count()
    silver, quarantine = tables.read(C.SILVER_INTERACTIONS), tables.read(C.quarantine_table(SOURCE))
    assert silver.count() + quarantine.count() == 20
    ids = sorted(r[0] for r in silver.select(C.INTERACTION_ID).collect())
    assert ids == sorted(r[0] for r in clean_tables.read(C.SILVER_INTERACTIONS).select(C.INTERACTION_ID).collect())

    # The clean run's 12 quarantined lines plus the second copy of line 2 (which copy depends
    # on which ingest went first; both orders are right).
    def reasons(t):
        rows = t.read(C.quarantine_table(SOURCE)).groupBy(C.REASON).count().collect()
        return {r[C.REASON]: r["count"] for r in rows}

    expected = reasons(clean_tables)
    expected[Q.DUPLICATE] += 1
    assert reasons(tables) == expected and quarantine.count() == 13
    for name in (C.SILVER_ITEMS, C.SILVER_USERS):
        assert sorted(map(str, tables.read(name).drop(C.INGESTED_AT).collect())) == sorted(
            map(str, clean_tables.read(name).drop(C.INGESTED_AT).collect())
        ), name
