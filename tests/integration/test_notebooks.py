"""Notebooks are executed top to bottom (as plain Python; widgets fall back to env vars)."""
from __future__ import annotations

import runpy

import pytest

from tests.integration.test_ingest_online_retail import LINES, write_csv


@pytest.mark.notebook
def test_ingest_notebook_runs_and_shows_quality(spark, repo, tmp_path, monkeypatch):
    source = write_csv(tmp_path / "invoices.csv.gz", LINES)
    monkeypatch.setenv("SHOPREC_NB_DATA_ROOT", str(tmp_path / "lakehouse"))
    monkeypatch.setenv("SHOPREC_NB_INPUTS", source)
    ns = runpy.run_path(str(repo / "notebooks" / "01_ingest_and_quality.py"), run_name="__main__")
    assert (ns["report"].rows_in, ns["report"].rows_kept) == (19, 7)
    reasons = dict(zip(ns["quarantine_by_reason"]["reason"], ns["quarantine_by_reason"]["count"]))
    assert reasons["SIGN_MISMATCH"] == 2 and sum(reasons.values()) == 12
    top = ns["top_items"]
    assert top.iloc[0]["item_id"] == "85123A" and top.iloc[0]["baskets"] == 3
    assert set(ns["top_countries"]["country"]) == {"United Kingdom", "EIRE"}  # France only bought postage
    assert len(ns["examples"]) == 12
