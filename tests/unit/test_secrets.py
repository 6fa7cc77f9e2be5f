"""Secrets never reach a log: what is logged or printed of the config is masked."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import yaml

from shoprec.cli import main
from shoprec.config import MaskingFilter, is_secret_name, load_config, mask_text, masked
from shoprec.tracking import _flatten, store_for

SECRET = "s3cr3t"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:s3cr3t@mlflow.example:5000", "http://alice:***@mlflow.example:5000"),
        ("https://ghp_s3cr3t@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
        ("mysql+pymysql://app:pa@ss@db/mlflow", "mysql+pymysql://app:***@db/mlflow"),
        ("jdbc:postgresql://app:s3cr3t@db/x", "jdbc:postgresql://app:***@db/x"),
        ("https://mlflow.example/api?token=s3cr3t&user=bob", "https://mlflow.example/api?token=***&user=bob"),
        (
            "https://acct.blob.core.windows.net/c/f?sv=2022&sig=s3cr3t",
            "https://acct.blob.core.windows.net/c/f?sv=2022&sig=***",
        ),
        # Nothing to hide: unchanged.
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("sqlite:////tmp/lh/mlflow.db", "sqlite:////tmp/lh/mlflow.db"),
        ("s3a://bucket/lakehouse", "s3a://bucket/lakehouse"),
        ("abfss://container@acct.dfs.core.windows.net/lh", "abfss://container@acct.dfs.core.windows.net/lh"),
        ("mailto bob@example.com", "mailto bob@example.com"),
        ("", ""),
    ],
)
def test_mask_text_hides_uri_credentials(text, shown):
    assert mask_text(text) == shown


@pytest.mark.parametrize(
    "name",
    [
        "spark.hadoop.fs.s3a.secret.key",
        "spark.hadoop.fs.s3a.access.key",
        "fs.azure.account.key.acct.dfs.core.windows.net",
        "api_key",
        "apiKey",
        "MLFLOW_TRACKING_TOKEN",
        "password",
        "spark.ssl.keyPassword",
        "credentials",
        "secretAccessKey",
        "sasl.jaas.config",  # a Kafka login: it holds the password
        "ssl.truststore.password",
    ],
)
def test_secret_looking_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "spark.sql.shuffle.partitions",
        "tracking_uri",
        "registered_model",
        "monkey",
        "spark.authenticate",
        "BANK CHARGES",
    ],
)
def test_ordinary_names(name):
    assert not is_secret_name(name)


def test_masked_walks_mappings_and_lists_and_keeps_empty_values():
    data = {
        "a": {"password": "hunter2", "token": None, "api_key": "", "n": 3},
        "uris": ["http://u:hunter2@h", "http://h"],
        "credentials": {"user": "u", "pass": "hunter2"},
    }
    assert masked(data) == {
        "a": {"password": "***", "token": None, "api_key": "", "n": 3},
        "uris": ["http://u:***@h", "http://h"],
        "credentials": "***",
    }
    assert data["a"]["password"] == "hunter2"  # a copy: the input is left alone


def test_cluster_config_with_a_tokenised_tracking_uri_logs_no_secret(repo, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@mlflow.example:5000")
    cfg = load_config(
        "cluster",
        [
            f"spark.settings.spark.hadoop.fs.s3a.secret.key={SECRET}",
            f"ingest.catalog=https://{SECRET}@files.example/c.csv",
        ],
        conf_dir=repo / "conf",
        data_root="s3a://bucket/lakehouse",
    )
    # The real values stay in the config: they are what connects.
    assert cfg.mlflow.tracking_uri == f"http://alice:{SECRET}@mlflow.example:5000"
    assert store_for(cfg).tracking_uri == cfg.mlflow.tracking_uri
    plain = masked(cfg.to_dict())
    dumped = yaml.safe_dump(plain)
    params = _flatten(plain)
    assert SECRET not in dumped and SECRET not in repr(params)
    assert plain["mlflow"]["tracking_uri"] == "http://alice:***@mlflow.example:5000"
    assert params["spark.settings.spark.hadoop.fs.s3a.secret.key"] == "***"
    assert params["ingest.catalog"] == "https://***@files.example/c.csv"
    assert SECRET not in repr(store_for(cfg))


def test_job_run_logs_masked_params_and_resolved_config(repo, tmp_path, monkeypatch, capsys):
    """A real MLflow run (SQLite store in tmp_path, no Spark): read back, no secret in it."""
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from shoprec.tracking import job_run

    # MLflow exports the URIs it is given to os.environ: set-then-delete makes monkeypatch restore them.
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SHOPREC_DATA_ROOT"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    cfg = load_config(
        "local",
        [
            f"spark.settings.spark.hadoop.fs.s3a.secret.key={SECRET}",
            f"spark.launch_settings.spark.hadoop.fs.s3a.session.token={SECRET}",
            f"ingest.catalog=https://bob:{SECRET}@files.example/catalog.csv",
        ],
        conf_dir=repo / "conf",
        data_root=str(tmp_path / "lh"),
    )
    try:
        with job_run(cfg, "ingest") as run:
            run_id = run.run_id
    finally:
        mlflow.set_tracking_uri(None)  # leave no store behind for later tests in this process
        mlflow.set_registry_uri(None)
    client = MlflowClient(tracking_uri=store_for(cfg).tracking_uri)
    params = client.get_run(run_id).data.params
    assert params["spark.settings.spark.hadoop.fs.s3a.secret.key"] == "***"
    assert params["spark.launch_settings.spark.hadoop.fs.s3a.session.token"] == "***"
    assert params["ingest.catalog"] == "https://bob:***@files.example/catalog.csv"
    assert not [k for k, v in params.items() if SECRET in v]
    resolved = client.download_artifacts(run_id, "config/resolved.yml", str(tmp_path / "dl"))
    text = Path(resolved).read_text()
    assert SECRET not in text and "***" in text
    assert yaml.safe_load(text)["spark"]["settings"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err


def test_cli_errors_and_log_lines_mask_the_credentials_they_quote(capsys, tmp_path):
    # An error echoes the value it rejects: typed into the wrong key, a tokenised URI.
    code = main(["features", "--data-root", str(tmp_path), "--set", f"als.rank=http://alice:{SECRET}@mlflow:5000"])
    err = capsys.readouterr().err
    assert code == 2 and "http://alice:***@mlflow:5000" in err and SECRET not in err
    # Every log line passes the same mask on its way out (the CLI puts it on the root handlers).
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("shoprec.test_secrets")
    logger.addHandler(handler)
    try:
        logger.warning("cannot reach %s", f"https://bob:{SECRET}@db.example/mlflow")
        logger.warning("plain line %d", 7)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["cannot reach https://bob:***@db.example/mlflow", "plain line 7"]
