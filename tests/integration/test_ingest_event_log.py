"""Ingest of generic event logs (the synthetic generator's output) in CSV, JSON lines and Parquet."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.errors import InputFormatError
from shoprec.ingest.generator import generate
from shoprec.stages.ingest import run_ingest
from tests.conftest import make_config


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_generated_event_log_lands_with_its_bad_rows_quarantined(spark, tables, data_root, tmp_path, fmt):
    gen = generate(
        str(tmp_path / "gen"),
        users=300,
        items=120,
        events=6000,
        seed=7,
        fmt=fmt,
        events_per_file=2500,
        bad_row_rate=0.03,
    )
    cfg = make_config(data_root, "ingest.source=event_log", f"ingest.catalog={gen.catalog_file}")
    report = run_ingest(spark, cfg, tables, inputs=[str(tmp_path / "gen" / "events")])
    assert len(report.files_ingested) == 3
    assert report.rows_in == gen.events == report.rows_kept + report.rows_quarantined
    assert report.rows_quarantined == gen.bad_rows > 0
    expected_reasons = {
        "DUPLICATE",
        "INVALID_EVENT_TYPE",
        "MISSING_KEY",
        "NON_POSITIVE_PRICE",
        "TIMESTAMP_OUT_OF_RANGE",
        "ZERO_QUANTITY",
    }
    if fmt != "parquet":
        expected_reasons.add("UNPARSABLE")  # text formats also get "abc" prices and "not-a-date" times
    assert set(report.quarantine_by_reason) == expected_reasons

    interactions = tables.read(C.SILVER_INTERACTIONS)
    types = {r[0] for r in interactions.select(C.EVENT_TYPE).distinct().collect()}
    assert types == {"view", "cart", "purchase"}
    assert interactions.filter(F.col(C.SESSION_ID).isNull() | F.col(C.DEVICE).isNull()).count() == 0
    assert interactions.filter(F.col(C.BASKET_ID) != F.col(C.SESSION_ID)).count() == 0
    # The catalog's text and categories reach silver.items for every item that sold or was seen.
    items = tables.read(C.SILVER_ITEMS)
    assert items.count() == interactions.select(C.ITEM_ID).distinct().count()
    assert items.filter(F.col(C.DESCRIPTION).isNull() | F.col(C.CATEGORY).isNull()).count() == 0
    assert report.catalog_rows == gen.items
    users = tables.read(C.SILVER_USERS)
    assert users.count() == interactions.select(C.USER_ID).distinct().count()

    again = run_ingest(spark, cfg, tables, inputs=[str(tmp_path / "gen" / "events")])
    assert again.rows_in == 0 and len(again.files_skipped) == 3


def test_column_mapping_epoch_times_and_anonymous_sessions(spark, tables, data_root, tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text(
        "visitorid,itemid,event,ts,sid\n"
        "u1,i1,view,1433221332117,s1\n"  # epoch millis (RetailRocket style)
        "u1,i1,addtocart,1433221400,s1\n"  # epoch seconds, alias event name
        ",i2,view,2015-06-02T05:02:12Z,s2\n"  # anonymous visitor with a session: kept
        ",i2,view,2015-06-02 05:03:00,\n"  # neither user nor session: MISSING_KEY
        "u2,i3,transaction,2015-06-02 05:04:00,s3\n"
    )
    cfg = make_config(
        data_root,
        "ingest.source=event_log",
        "ingest.event_log_columns.user_id=visitorid",
        "ingest.event_log_columns.item_id=itemid",
        "ingest.event_log_columns.event_type=event",
        "ingest.event_log_columns.timestamp=ts",
        "ingest.event_log_columns.session_id=sid",
    )
    report = run_ingest(spark, cfg, tables, inputs=[str(path)])
    assert (report.rows_kept, report.quarantine_by_reason) == (4, {"MISSING_KEY": 1})
    got = sorted(
        (r.line_number, r.user_id, r.event_type, r.event_ts.isoformat(), r.is_anonymous)
        for r in tables.read(C.SILVER_INTERACTIONS).collect()
    )
    assert got == [
        (2, "u1", "view", "2015-06-02T05:02:12.117000", False),
        (3, "u1", "cart", "2015-06-02T05:03:20", False),
        (4, None, "view", "2015-06-02T05:02:12", True),
        (6, "u2", "purchase", "2015-06-02T05:04:00", False),
    ]


def test_event_log_without_required_columns_is_refused(spark, tables, data_root, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("who,what\nu1,i1\n")
    cfg = make_config(data_root, "ingest.source=event_log")
    with pytest.raises(
        InputFormatError,
        match=r"events.csv is not an event log: it lacks the column\(s\) "
        r"item_id, event_type, event_time",
    ):
        run_ingest(spark, cfg, tables, inputs=[str(path)])
    notjson = tmp_path / "events.jsonl"
    notjson.write_text("this is not json\n")
    with pytest.raises(InputFormatError, match=r"events\.jsonl is not JSON lines"):
        run_ingest(spark, cfg, tables, inputs=[str(notjson)])


def test_catalog_rows_without_or_repeating_an_id_are_quarantined_once(spark, tables, data_root, tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event_type,event_time,session_id\nu1,A1,view,2024-01-01 10:00:00,s1\n")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "item_id,title,description,category,price\n"
        "A1,Red Mug,A red ceramic mug,kitchen,4.5\n"
        ",No Id,lost,kitchen,1.0\n"
        "A1,Red Mug again,second copy,kitchen,4.0\n"
    )
    cfg = make_config(data_root, "ingest.source=event_log", f"ingest.catalog={catalog}")
    report = run_ingest(spark, cfg, tables, inputs=[str(events)])
    assert (report.catalog_rows, report.catalog_quarantined) == (1, 2)
    bad = sorted((r.reason, r.reason_detail) for r in tables.read(C.quarantine_table("catalog")).collect())
    assert bad == [
        ("DUPLICATE", "item id repeated in the catalog (first row kept)"),
        ("MISSING_KEY", "item id is empty"),
    ]
    item = tables.read(C.SILVER_ITEMS).first()
    assert (item.item_id, item.description, item.category, item.last_price) == (
        "A1",
        "Red Mug. A red ceramic mug",
        "kitchen",
        4.5,
    )
    again = run_ingest(spark, cfg, tables, inputs=[str(events)])
    assert (again.catalog_rows, again.rows_in) == (0, 0)
    assert tables.read(C.quarantine_table("catalog")).count() == 2
