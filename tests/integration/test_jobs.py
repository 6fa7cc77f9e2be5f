"""The jobs as users run them: horovodrun here, the main job in test_main_job, spark-submit in test_cluster;
the small settings those share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_bench

BIN = Path(sys.executable).parent


def submit_jars() -> list[str]:
    """``--jars`` with the JVM set bootstrap fetched (Spark's Delta), as docs/CLUSTER.md says."""
    from shoprec.spark import jvm_jars

    jars = jvm_jars()
    return ["--jars", ",".join(jars)] if jars else []


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    return env


@pytest.mark.horovod
def test_horovod_build_runs_two_gloo_ranks(tmp_path):
    script = tmp_path / "allreduce.py"
    script.write_text(
        "import horovod.tensorflow as hvd\n"
        "import tensorflow as tf\n"
        "hvd.init()\n"
        "total = hvd.allreduce(tf.constant([float(hvd.rank() + 1)]), op=hvd.Sum)\n"
        "print(f'RANK {hvd.rank()} OF {hvd.size()} SUM {float(total[0])}', flush=True)\n"
    )
    result = subprocess.run(
        [str(BIN / "horovodrun"), "-np", "2", "--gloo", "-H", "localhost:2", sys.executable, str(script)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = sorted(line.split("]<stdout>:")[-1] for line in result.stdout.splitlines() if "RANK" in line)
    assert lines == ["RANK 0 OF 2 SUM 3.0", "RANK 1 OF 2 SUM 3.0"]


# The benches' smoke models (one ALS trial, a small hybrid, fixed fusion and context weights),
# with the Spark settings a local or a cluster run can both take.
_BENCH = load_bench("_common")
SUBMIT_AS_OF = _BENCH.SMOKE_AS_OF
SMALL = [
    *_BENCH.SMOKE_MODELS,
    "spark.settings.spark.sql.shuffle.partitions=2",
    "spark.launch_settings.spark.ui.enabled=false",
]
