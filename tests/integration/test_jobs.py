"""The jobs as users run them: horovodrun (on loopback) here, the main job in test_main_job,
spark-submit in test_cluster; the small settings those share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


_LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _listening(procs) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of ``procs``."""
    import psutil

    found = set()
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            pass
    return found


_LISTENING_SCRIPT = """
import json, sys
import psutil
from shoprec.config import load_config
from shoprec.spark import get_spark
spark = get_spark(load_config("local", ["spark.master=local[1]"]).spark)
spark.range(10).count()
jvm = psutil.Process(int(spark._jvm.java.lang.ProcessHandle.current().pid()))
print(json.dumps(sorted((c.laddr.ip, c.laddr.port) for c in jvm.net_connections("tcp") if c.status == "LISTEN")))
spark.stop()
"""


def test_the_spark_driver_listens_on_loopback_only(tmp_path):
    """spark.bind_address (127.0.0.1 unless the cluster overlay): the driver's RPC, block
    manager and UI sockets of a session the factory builds from the shipped local config, in
    a fresh process whose environment does not say SPARK_LOCAL_IP (this one's does)."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "SPARK_LOCAL_IP"}
    result = subprocess.run(
        [sys.executable, "-c", _LISTENING_SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sockets = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(sockets) >= 3 and {ip for ip, _ in sockets} <= _LOOPBACK, sockets  # RPC, block manager, UI


@pytest.mark.horovod
def test_local_ranks_listen_on_loopback_and_get_secrets_from_a_file_not_the_command_line(tmp_path):
    """What train-hybrid launches (shoprec.hybrid.loopback: horovodrun of the Horovod build,
    two Gloo ranks that all-reduce): the rendezvous servers listen on 127.0.0.1 only, no
    rank's command line holds a secret, and each rank still gets the secret, from the
    launcher's file."""
    import psutil

    from shoprec.hybrid import loopback

    ready, done = tmp_path / "ready", tmp_path / "done"
    script = tmp_path / "rank.py"
    script.write_text(
        "import os, pathlib, time\n"
        "import horovod.tensorflow as hvd\n"
        "import tensorflow as tf\n"
        "from shoprec.hybrid.loopback import load_secrets\n"
        "load_secrets()\n"
        "hvd.init()\n"
        f"pathlib.Path('{ready}' + str(hvd.rank())).write_text(os.environ.get('SHOPREC_TEST_TOKEN', 'none'))\n"
        f"deadline = time.time() + 120\n"
        f"while not pathlib.Path('{done}').exists() and time.time() < deadline:\n"
        "    time.sleep(0.2)\n"
        "total = hvd.allreduce(tf.constant([float(hvd.rank() + 1)]), op=hvd.Sum)\n"
        "print(f'RANK {hvd.rank()} OF {hvd.size()} SUM {float(total[0])}', flush=True)\n"
    )
    secret = "tok-5ecr3t-in-env"
    parent_env = dict(_env(), SHOPREC_TEST_TOKEN=secret, MLFLOW_TRACKING_TOKEN=secret)
    env = loopback.rank_environment(parent_env)
    assert secret not in " ".join(env.values())
    env[loopback.SECRETS_ENV] = str(loopback.write_secrets(parent_env, str(tmp_path / "secrets.json")))
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0  # the user's alone
    cmd = loopback.horovodrun_command([sys.executable, str(script)], 2)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            deadline = time.monotonic() + 180
            while not all((tmp_path / f"ready{r}").exists() for r in (0, 1)):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
                time.sleep(0.2)
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            sockets = _listening(tree)
            command_lines = [" ".join(p.cmdline()) for p in tree if p.is_running()]
        finally:
            done.write_text("")
            out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    lines = sorted(line.split("]<stdout>:")[-1] for line in out.splitlines() if "RANK" in line)
    assert lines == ["RANK 0 OF 2 SUM 3.0", "RANK 1 OF 2 SUM 3.0"]
    assert sockets and {ip for _, ip, _ in sockets} <= _LOOPBACK, sockets  # the launcher's servers and Gloo
    assert len(command_lines) >= 3 and not any(secret in line for line in command_lines)
    assert [(tmp_path / f"ready{r}").read_text() for r in (0, 1)] == [secret, secret]


# The benches' smoke models (one ALS trial, a small hybrid, fixed fusion and context weights),
# with the Spark settings a local or a cluster run can both take.
_BENCH = load_bench("_common")
SUBMIT_AS_OF = _BENCH.SMOKE_AS_OF
SMALL = [
    *_BENCH.SMOKE_MODELS,
    "spark.settings.spark.sql.shuffle.partitions=2",
    "spark.launch_settings.spark.ui.enabled=false",
]
