"""bench/delta_layer.py at smoke size, so the benchmark cannot rot: both backends against
Parquet, its table printed and its JSON written."""

from __future__ import annotations

import importlib.util
import json

import pytest


def _bench_module(repo):
    spec = importlib.util.spec_from_file_location("bench_delta_layer", repo / "bench" / "delta_layer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_delta_layer_bench_smoke_measures_both_backends(spark, tmp_path, capsys, repo):
    out_json = tmp_path / "delta_layer.json"
    bench = _bench_module(repo)
    assert bench.main(["--smoke", "--json", str(out_json), "--root", str(tmp_path / "scratch")]) == 0
    printed = capsys.readouterr().out
    assert "spark/parquet" in printed and "local/parquet" in printed and "5. merge 1%" in printed
    report = json.loads(out_json.read_text())
    assert report["args"]["smoke"] and report["args"]["backends"] == ["spark", "local"]
    assert report["counts"]["rows"] == bench.SMOKE_ROWS
    ops = {op["operation"]: op for op in report["operations"]}
    assert set(ops) == {key for key, _, _ in bench.OPERATIONS}
    for backend in ("spark", "local"):
        assert all(op[f"{backend}_s"] > 0 for op in ops.values())
        checks = report["runs"][0]["checks"][backend]
        assert checks["aggregates_match"] and checks["merge_inserted"] == report["counts"]["inserts"]
    assert ops["write"]["spark_vs_local"] > 0 and ops["write"]["parquet_s"] > 0
    small = report["small_table"]
    assert small["rows"] == 200 and small["repeat"] == 1 and "tiny table (200 rows)" in printed
    assert set(small["spark_vs_local"]) == set(bench.SMALL_OPS)
    assert all(t > 0 for b in ("spark", "local") for t in small["median_s"][b].values())
