"""What every benchmark records beside its numbers: the machine, the load, where JSON goes."""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone

import psutil

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine_info(spark=None, load_before: tuple[float, ...] | None = None) -> dict:
    """CPU, memory, versions, Spark settings and the load average (a busy box skews every ratio)."""
    import pyspark

    info = {
        "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "platform": platform.platform(), "spark": pyspark.__version__,
        "load_average_after": list(os.getloadavg()),
    }
    if load_before is not None:
        info["load_average_before"] = list(load_before)
    if spark is not None:
        conf = spark.sparkContext.getConf()
        info.update({
            "spark_master": spark.sparkContext.master,
            "driver_memory": conf.get("spark.driver.memory", None),
            "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        })
    return info


def write_json(report: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2, default=str)
        fh.write("\n")
    print(f"results written to {path}")


def say(text: str) -> None:
    """Progress on stderr, so stdout holds only the result table."""
    print(text, file=sys.stderr, flush=True)
