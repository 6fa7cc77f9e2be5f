"""Typed config: base + overlays + --set, and errors that name the key and the file."""

from __future__ import annotations

import dataclasses
import shutil
import typing

import pytest

from shoprec.config import Config, load_config
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


# ------------------------------------------------------------------- validated at load
# (where the bad value is: "--set", a new file of conf/local or a base/ file it is appended to,
#  the value, a part of the message expected)
BAD_VALUES = [
    (
        "--set",
        "ingest.source_timezone=Europe/Lodnon",
        "'ingest.source_timezone' must be an IANA time zone name, got 'Europe/Lodnon'",
    ),
    ("ingest.yml", "source_timezone: Europe/Lodnon", "'ingest.source_timezone' must be an IANA time zone name"),
    (
        "spark.yml",
        "settings: {spark.sql.session.timeZone: Mars/Olympus}",
        "'spark.settings.spark.sql.session.timeZone' must be",
    ),
    ("--set", "ingest.min_date=2011-13-01", "'ingest.min_date' must be a date YYYY-MM-DD, got '2011-13-01'"),
    # Unquoted in YAML: PyYAML's own date constructor would crash on month 13.
    ("ingest.yml", "min_date: 2011-13-01", "'ingest.min_date' must be a date YYYY-MM-DD, got '2011-13-01'"),
    ("generate.yml", "start_date: '2023-02-30'", "'generate.start_date' must be a date YYYY-MM-DD, got '2023-02-30'"),
    ("--set", "split.as_of=11/01/2011", "'split.as_of' must be a date YYYY-MM-DD or auto, got '11/01/2011'"),
    ("--set", "als.rank=0", "'als.rank' must be a positive integer, got 0"),
    ("--set", "hybrid.num_proc=-1", "'hybrid.num_proc' must be a positive integer, got -1"),
    ("--set", "split.validation_days=-5", "'split.validation_days' must be a positive integer, got -5"),
    ("split.yml", "evaluation_days: 0", "'split.evaluation_days' must be a positive integer, got 0"),
    ("--set", "generate.bad_row_rate=1.5", "'generate.bad_row_rate' must be a share between 0 and 1, got 1.5"),
    (
        "recommend.yml",
        "cold_start: {new_item_share: 2}",
        "'recommend.cold_start.new_item_share' must be a share between 0 and 1, got 2.0",
    ),
    ("--set", "recommend.fusion.weight=-0.1", "'recommend.fusion.weight' must be a share between 0 and 1, got -0.1"),
    ("--set", "recommend.fusion.weights=[]", "'recommend.fusion.weights' must be a non-empty list, got []"),
    ("--set", "als.search.rank=[8, 0]", "'als.search.rank[1]' must be a positive integer, got 0"),
    ("--set", "recommend.pool.als=-1", "'recommend.pool.als' must be 0 or more, got -1"),
    ("--set", "candidates.hour_buckets=[0, 24]", "'candidates.hour_buckets[1]' must be an hour of the day"),
    ("--set", "hybrid.threads_per_rank=0", "'hybrid.threads_per_rank' must be a positive integer, got 0"),
    ("--set", "hybrid.model.dropout=1", "'hybrid.model.dropout' must be a rate from 0 up to"),
    ("--set", 'features.holidays=["12-25", "13-45"]', "'features.holidays[1]' must be a holiday: \"MM-DD\" or a"),
    ("features.yml", "holidays: [easter, xmas]", "'features.holidays[1]' must be a holiday"),
    ("--set", "generate.seed=-1", "'generate.seed' must be a seed of 0 or more, got -1"),
    ("--set", "mlflow.experiment=", "'mlflow.experiment' must be a non-empty string, got ''"),
    ("als.yml", "rank: 64\nmax_iter: 3\nrank: 8", "duplicate key 'als.rank' on line 3 (first on line 1)"),
    ("als.yml", "search:\n  rank: [8]\n  seed: 1\n  rank: [16]", "duplicate key 'als.search.rank' on line 4"),
    # A key repeated in the shipped base file (appended to the copy): base values are checked too.
    ("base/split.yml", "validation_days: 14", "duplicate key 'split.validation_days' on line"),
]


@pytest.mark.parametrize(("where", "value", "message"), BAD_VALUES, ids=[f"{w}:{v}" for w, v, _ in BAD_VALUES])
def test_bad_values_fail_at_load_naming_origin_key_and_value(conf, where, value, message):
    overrides = []
    if where == "--set":
        overrides = [value]
        origin = "--set"
    elif where.startswith("base/"):
        path = conf / where
        path.write_text(path.read_text() + value + "\n")
        origin = str(path)
    else:
        (conf / "local" / where).write_text(value + "\n")
        origin = str(conf / "local" / where)
    with pytest.raises(ConfigError) as err:
        load_config("local", overrides, conf_dir=conf)
    assert err.value.message.startswith(f"{origin}: "), err.value.message
    assert message in err.value.message
    assert "\n" not in err.value.message and err.value.hint


def test_optional_fields_stay_optional_and_edge_values_pass(repo):
    cfg = load_config(
        "local",
        [
            "recommend.fusion.weight=null",
            "hybrid.threads_per_rank=null",
            "recommend.pool.bundle=0",  # 0 turns a source off
            "recommend.rerank.time_prior_lines=0",
            "generate.bad_row_rate=1",
            "als.checkpoint_interval=-1",  # MLlib's "no checkpoints"
            "split.as_of=auto",
            "spark.settings.spark.sql.session.timeZone=+01:00",
            "ingest.source_timezone=America/New_York",
            "hybrid.model.mlp_layers=[]",
        ],
        conf_dir=repo / "conf",
    )
    assert cfg.recommend.fusion.weight is None and cfg.hybrid.threads_per_rank is None
    assert cfg.split.as_of == "auto" and cfg.hybrid.model.mlp_layers == ()


def test_shipped_conf_loads(repo, monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SHOPREC_DATA_ROOT"):
        monkeypatch.delenv(var, raising=False)
    assert load_config("local", conf_dir=repo / "conf").split.as_of == "2011-11-01"
    cluster = load_config("cluster", conf_dir=repo / "conf")
    assert cluster.mlflow.tracking_uri == "http://mlflow:5000"
    assert cluster.ingest.source_timezone == "Europe/London"


def test_code_defaults_pass_their_own_rules(tmp_path):
    (tmp_path / "base").mkdir()  # no files: every value is a dataclass default, and checked
    cfg = load_config("local", conf_dir=tmp_path)
    assert cfg.als == Config(env="local", conf_dir="").als and cfg.split.as_of == "auto"


def _fields(cls: type, prefix: str):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp, f


def test_every_numeric_field_declares_its_range():
    """A new int or float key must say what values it takes (field(metadata=checks(...)))."""
    undecided = []
    for name, tp, f in _fields(Config, ""):
        if name in ("env", "conf_dir"):
            continue
        types_in = {tp, *typing.get_args(tp)}
        for arg in typing.get_args(tp):
            types_in.update(typing.get_args(arg))
        if types_in & {int, float} and not f.metadata.get("checks"):
            undecided.append(name)
    assert undecided == []
