"""The promotion rule on a real MLflow registry (SQLite under a temp data root)."""

from __future__ import annotations

import mlflow
import pytest

from shoprec.registry import register_and_promote, should_promote, version_for
from shoprec.tracking import configure


@pytest.mark.parametrize(
    ("value", "champion", "higher", "expected"),
    [
        (0.2, None, True, True),
        (0.3, 0.2, True, True),
        (0.2, 0.2, True, False),
        (0.1, 0.2, True, False),
        (0.1, 0.2, False, True),
    ],
)
def test_should_promote(value, champion, higher, expected):
    assert should_promote(value, champion, higher) is expected


@pytest.mark.parametrize(
    ("as_of", "champion_as_of", "expected"),
    [
        ("2011-06-01", "2011-11-01", False),  # a backfill: better on its own window, still not promoted
        ("2011-11-01", "2011-11-01", True),
        ("2011-12-01", "2011-11-01", True),
        (None, "2011-11-01", True),
    ],
)
def test_a_model_trained_on_older_data_never_replaces_the_champion(as_of, champion_as_of, expected):
    assert should_promote(0.5, 0.2, True, as_of, champion_as_of) is expected


def test_serving_as_of_a_date_never_uses_a_model_of_later_data(cfg):
    configure(cfg)
    later = register_and_promote(log_constant_model(), "shoprec-test", "val_ndcg_at_10", 0.2, as_of="2011-11-01")
    backfill = register_and_promote(log_constant_model(), "shoprec-test", "val_ndcg_at_10", 0.5, as_of="2011-06-01")
    assert later.promoted and not backfill.promoted
    assert backfill.describe().endswith("stays challenger (trained as of 2011-06-01, before the champion's 2011-11-01)")
    served = {day: version_for("shoprec-test", "champion", day) for day in ("2011-12-01", "2011-07-01", "2011-01-01")}
    assert (str(served["2011-12-01"][0].version), served["2011-12-01"][1]) == ("1", "")
    assert str(served["2011-07-01"][0].version) == "2"
    assert "v2 (as of 2011-06-01) serves instead" in served["2011-07-01"][1]
    assert served["2011-01-01"][0] is None and "no version is older" in served["2011-01-01"][1]


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def log_constant_model():
    with mlflow.start_run():
        return mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=[]).model_uri


def test_first_model_is_champion_then_only_a_better_one_takes_over(cfg):
    configure(cfg)
    client = mlflow.MlflowClient()
    first = register_and_promote(log_constant_model(), "shoprec-test", "val_ndcg_at_10", 0.20)
    assert (first.version, first.promoted, first.champion_value) == ("1", True, None)

    worse = register_and_promote(log_constant_model(), "shoprec-test", "val_ndcg_at_10", 0.15)
    assert (worse.version, worse.promoted, worse.champion_value) == ("2", False, 0.20)
    assert str(client.get_model_version_by_alias("shoprec-test", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("shoprec-test", "challenger").version) == "2"

    better = register_and_promote(log_constant_model(), "shoprec-test", "val_ndcg_at_10", 0.25)
    assert better.promoted and better.champion_value == 0.20
    assert str(client.get_model_version_by_alias("shoprec-test", "champion").version) == "3"
    assert "stays challenger" in client.get_model_version("shoprec-test", "2").tags["shoprec.promotion"]


def test_version_one_of_two_registries_ships_under_different_names(tmp_path):
    # One Spark application can serve from two data roots (a notebook, this test suite);
    # executors refuse a second shipped folder under a name they already hold.
    from shoprec.stages.models import _folder_name
    from tests.conftest import make_config

    names = []
    for root in ("shop-a", "shop-b"):
        configure(make_config(tmp_path / root))
        register_and_promote(log_constant_model(), "shoprec-test", "val_ndcg_at_10", 0.2)
        version = mlflow.MlflowClient().get_model_version_by_alias("shoprec-test", "champion")
        names.append(_folder_name("shoprec-test", version))
    assert names[0] != names[1]
    assert all(n.startswith("shoprec-test-v1-") for n in names)
