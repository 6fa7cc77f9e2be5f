"""Typed config: base + overlays + --set, and errors that name the key and the file."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from shoprec.config import load_config
from shoprec.errors import ConfigError


@pytest.fixture
def conf(tmp_path, repo):
    dest = tmp_path / "conf"
    shutil.copytree(repo / "conf", dest)
    return dest


def test_local_defaults_are_the_embedded_default(repo, tmp_path):
    cfg = load_config("local", conf_dir=repo / "conf", data_root=str(tmp_path / "lh"))
    assert cfg.env == "local"
    assert cfg.spark.master == "local[*]"
    assert cfg.spark.settings["spark.sql.shuffle.partitions"] == "8"
    assert cfg.spark.launch_settings["spark.driver.memory"] == "8g"
    assert cfg.storage.delta_backend == "auto"
    assert cfg.storage.data_root == str(tmp_path / "lh")
    assert cfg.mlflow.tracking_uri is None and cfg.mlflow.experiment == "shoprec"
    assert cfg.ingest.source == "online_retail"
    assert cfg.ingest.inputs == ("data/online-retail/online_retail.csv.gz",)
    assert cfg.ingest.non_product_codes["POST"] == "postage"
    assert cfg.ingest.event_log_columns.timestamp == "event_time"


def test_cluster_overlay_drops_local_master_and_uses_sparks_delta(repo, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.setenv("SHOPREC_DATA_ROOT", "s3a://bucket/lakehouse")
    cfg = load_config("cluster", conf_dir=repo / "conf")
    assert cfg.spark.master is None
    assert cfg.storage.delta_backend == "spark"
    assert cfg.storage.data_root == "s3a://bucket/lakehouse"
    assert cfg.mlflow.tracking_uri == "http://mlflow.internal:5000"
    # No Maven resolution at session start: the JARs come from the fetched JVM set (jvm_jars).
    assert "spark.jars.packages" not in cfg.spark.launch_settings and cfg.spark.jvm_jars == "auto"
    assert cfg.spark.settings["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    # Overlays merge mappings: base settings are still there.
    assert cfg.spark.settings["spark.sql.session.timeZone"] == "UTC"


def test_config_is_frozen(repo):
    cfg = load_config("local", conf_dir=repo / "conf")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.spark.master = "yarn"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.spark.settings["x"] = "y"  # type: ignore[index]


def test_set_overrides_are_typed(repo):
    cfg = load_config(
        "local",
        [
            "spark.master=local[2]",
            "generate.events=5000",
            "generate.bad_row_rate=0.01",
            "spark.settings.spark.sql.shuffle.partitions=4",
            "ingest.inputs=[a.csv, b.csv]",
            "mlflow.tracking_uri=null",
        ],
        conf_dir=repo / "conf",
    )
    assert cfg.spark.master == "local[2]"
    assert cfg.generate.events == 5000 and cfg.generate.bad_row_rate == 0.01
    assert cfg.spark.settings["spark.sql.shuffle.partitions"] == "4"
    assert cfg.ingest.inputs == ("a.csv", "b.csv")
    # A bare on/off is a YAML boolean; the on/off/auto choices still read it as meant.
    switched = load_config("local", ["spark.delta_extensions=off"], conf_dir=repo / "conf")
    assert switched.spark.delta_extensions == "off"
    assert load_config("local", ["spark.delta_extensions=on"], conf_dir=repo / "conf").spark.delta_extensions == "on"
    # ... and so do the auto/off choices (no "on" among them), while "on" there stays an error.
    assert load_config("local", ["spark.jvm_jars=off"], conf_dir=repo / "conf").spark.jvm_jars == "off"
    with pytest.raises(ConfigError, match="jvm_jars"):
        load_config("local", ["spark.jvm_jars=on"], conf_dir=repo / "conf")


def test_unknown_key_names_the_key_and_the_file(conf):
    (conf / "local" / "spark.yml").write_text("master: local[2]\nmastr: oops\n")
    with pytest.raises(ConfigError) as err:
        load_config("local", conf_dir=conf)
    assert str(conf / "local" / "spark.yml") in err.value.message
    assert "unknown config key 'spark.mastr'" in err.value.message
    assert "master" in err.value.hint


def test_mistyped_value_names_the_key_and_the_file(conf):
    (conf / "local" / "generate.yml").write_text("events: lots\n")
    with pytest.raises(ConfigError, match=r"generate.yml: 'generate.events' must be an integer, got 'lots'"):
        load_config("local", conf_dir=conf)
    (conf / "local" / "generate.yml").write_text("format: avro\n")
    with pytest.raises(ConfigError, match=r"'generate.format' must be one of parquet, csv, jsonl"):
        load_config("local", conf_dir=conf)


def test_unknown_section_and_bad_overrides(conf):
    (conf / "local" / "sparkk.yml").write_text("master: x\n")
    with pytest.raises(ConfigError, match="unknown config section 'sparkk'"):
        load_config("local", conf_dir=conf)
    (conf / "local" / "sparkk.yml").unlink()
    with pytest.raises(ConfigError, match=r"--set: unknown config key 'spark.nope'"):
        load_config("local", ["spark.nope=1"], conf_dir=conf)
    with pytest.raises(ConfigError, match="is not key=value"):
        load_config("local", ["spark.master"], conf_dir=conf)
    with pytest.raises(ConfigError, match="unknown environment 'prod'"):
        load_config("prod", conf_dir=conf)


def test_missing_environment_variable_is_named(conf, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (conf / "cluster" / "mlflow.yml").write_text("tracking_uri: ${MLFLOW_TRACKING_URI}\n")
    with pytest.raises(ConfigError, match="needs environment variable MLFLOW_TRACKING_URI"):
        load_config("cluster", conf_dir=conf)


def test_data_root_precedence(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPREC_DATA_ROOT", str(tmp_path / "from-env"))
    assert load_config("local", conf_dir=repo / "conf").data_root == str(tmp_path / "from-env")
    cfg = load_config("local", conf_dir=repo / "conf", data_root=str(tmp_path / "from-flag"))
    assert cfg.data_root == str(tmp_path / "from-flag")


def test_relative_paths_resolve_against_the_project(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("local", conf_dir=repo / "conf")
    assert cfg.resolve_path(cfg.ingest.inputs[0]) == str(repo / "data/online-retail/online_retail.csv.gz")
    assert cfg.resolve_path("s3a://b/x.csv") == "s3a://b/x.csv"
