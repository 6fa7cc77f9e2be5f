"""The one Spark session factory.

Reuses the active session when there is one (notebooks, Databricks, spark-submit after
the first call); otherwise builds one from ``SparkConfig``. Library code never calls
this: it receives ``spark`` or DataFrames from the job that did.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

from pyspark.sql import SparkSession

from shoprec.config import SparkConfig
from shoprec.errors import EnvironmentProblem

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
_MIN_JAVA = 17


def get_spark(cfg: SparkConfig) -> SparkSession:
    """Return the active session (with our runtime settings applied) or build one."""
    active = SparkSession.getActiveSession()
    if active is not None:
        _apply_runtime_settings(active, cfg)
        return active
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM
    if not under_submit:
        check_java()
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master and not under_submit:
        builder = builder.master(cfg.master)
    if not under_submit and cfg.bind_address:
        _bind(cfg.bind_address)
    if not under_submit and (cfg.master or "").startswith("local"):
        # Local Python workers must import shoprec like the driver does; PySpark's default
        # is whatever "python3" is first on PATH, which may be another interpreter.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = dict(cfg.settings)
    if not under_submit:
        settings.update(cfg.launch_settings)
        _add_jvm_set(settings, cfg)
        _console_progress(settings)
    if not _want_delta_extensions(cfg, {**settings, **(_submitted_jars() if under_submit else {})}):
        # Never point the catalog at classes that are not there: the session would fail.
        settings.pop("spark.sql.extensions", None)
        settings.pop("spark.sql.catalog.spark_catalog", None)
    elif cfg.delta_extensions != "off":
        settings.setdefault("spark.sql.extensions", DELTA_EXTENSION)
        settings.setdefault("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    _apply_runtime_settings(spark, cfg)
    _quiet_known_warnings(spark)
    log.info("Spark %s session on %s", spark.version, spark.sparkContext.master)
    return spark


LOCAL_IP_ENV = "SPARK_LOCAL_IP"


def _bind(address: str) -> None:
    """Bind the JVM about to start to ``address``: Spark reads SPARK_LOCAL_IP for the driver's
    RPC, block-manager and UI sockets (its UI otherwise listens on every interface). An
    address already exported is the user's own choice and wins."""
    chosen = os.environ.setdefault(LOCAL_IP_ENV, address)
    if chosen != address:
        log.info("%s=%s from the environment (spark.bind_address is %s)", LOCAL_IP_ENV, chosen, address)


_PROGRESS = "spark.ui.showConsoleProgress"


def _console_progress(settings: dict[str, str]) -> None:
    """``auto`` progress bars: on a terminal they redraw one line; anywhere else (a log file,
    CI, ``nohup``) every redraw is kept and a job's output drowns in them."""
    if settings.get(_PROGRESS) == "auto":
        settings[_PROGRESS] = "true" if sys.stderr.isatty() else "false"


# Loggers whose WARN lines are expected here and say nothing to a user: global windows
# over small, already-aggregated frames (a top-N list, one row per catalog item).
_QUIET_LOGGERS = ("org.apache.spark.sql.execution.window.WindowExec",)


def _quiet_known_warnings(spark: SparkSession) -> None:
    try:
        jvm = spark._jvm
        assert jvm is not None  # a classic session (the except covers the others)
        configurator = jvm.org.apache.logging.log4j.core.config.Configurator
        level = jvm.org.apache.logging.log4j.Level.ERROR
        for name in _QUIET_LOGGERS:
            configurator.setLevel(name, level)
    except Exception:  # no JVM access (Spark Connect) or another logging backend: keep the noise
        log.debug("could not quiet %s", _QUIET_LOGGERS)


JARS_DIR_ENV = "SHOPREC_SPARK_JARS_DIR"
# Written by scripts/bootstrap.sh into the virtual env: the folder of the fetched JVM set.
_JARS_POINTER = "shoprec-spark-jars"


def jvm_jars() -> list[str]:
    """Local paths of the JVM set bootstrap fetched (jvm/spark/pom.xml), or [] when none.

    Looked up in ``$SHOPREC_SPARK_JARS_DIR``, then in the pointer file bootstrap leaves in
    the environment (so notebooks and plain ``python`` in the env find it too). Only a
    complete set (its ``.shoprec-ready`` marker present) counts.
    """
    folder = os.environ.get(JARS_DIR_ENV)
    if not folder:
        pointer = os.path.join(sys.prefix, _JARS_POINTER)
        if os.path.exists(pointer):
            with open(pointer, encoding="utf-8") as fh:
                folder = fh.read().strip()
    if not folder or not os.path.exists(os.path.join(folder, ".shoprec-ready")):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jar"))


def _add_jvm_set(settings: dict[str, str], cfg: SparkConfig) -> None:
    """Put the cached JVM set on ``spark.jars`` (local files: nothing resolves at start)."""
    if cfg.jvm_jars == "off":
        return
    jars = jvm_jars()
    if not jars:
        log.info("no JVM set found (scripts/bootstrap.sh fetches it): tables use the delta-rs backend")
        return
    given = [j for j in settings.get("spark.jars", "").split(",") if j]
    names = {os.path.basename(j) for j in given}
    settings["spark.jars"] = ",".join(given + [j for j in jars if os.path.basename(j) not in names])


def has_delta_classes(spark: SparkSession) -> bool:
    """True when Spark's own Delta (delta-spark JARs) is on the driver's classpath."""
    try:
        jvm = spark._jvm
        assert jvm is not None  # a classic session (the except covers the others)
        return bool(jvm.org.apache.spark.util.Utils.classIsLoadable("io.delta.tables.DeltaTable"))
    except Exception:  # Spark Connect has no _jvm; Databricks always has Delta there
        return os.environ.get("DATABRICKS_RUNTIME_VERSION") is not None


def check_java() -> None:
    """Fail early, in one sentence, when Java 17+ is missing (Spark 4 needs it)."""
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not os.path.exists(java):
        raise EnvironmentProblem(
            "Java was not found", hint="install OpenJDK 17 and put java on PATH (or set JAVA_HOME)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    major = _java_major(out)
    if major is not None and major < _MIN_JAVA:
        raise EnvironmentProblem(
            f"Java {major} found at {java}, but Spark 4 needs Java {_MIN_JAVA} or newer",
            hint="install OpenJDK 17 and set JAVA_HOME to it",
        )


def _java_major(version_output: str) -> int | None:
    import re

    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not m:
        return None
    first = int(m.group(1))
    return int(m.group(2)) if first == 1 and m.group(2) else first


def _submitted_jars() -> dict[str, str]:
    """``spark.jars``/``spark.jars.packages`` that spark-submit was given (``--jars``, ``--packages``)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connects to spark-submit's JVM; creates no context
    conf = SparkConf()
    return {k: conf.get(k, "") or "" for k in ("spark.jars", "spark.jars.packages")}


def _want_delta_extensions(cfg: SparkConfig, settings: dict[str, str]) -> bool:
    if cfg.delta_extensions == "on":
        return True
    if cfg.delta_extensions == "off":
        return False
    jars = " ".join(settings.get(k, "") for k in ("spark.jars.packages", "spark.jars"))
    return "delta-spark" in jars or "delta-core" in jars


def _apply_runtime_settings(spark: SparkSession, cfg: SparkConfig) -> None:
    for key, value in cfg.settings.items():
        if (
            key.startswith("spark.sql.")
            and key not in ("spark.sql.extensions",)
            and not key.startswith("spark.sql.catalog.")
        ):
            try:
                spark.conf.set(key, value)
            except Exception:  # static confs cannot change on a running session
                log.debug("could not set %s on the running session", key)
