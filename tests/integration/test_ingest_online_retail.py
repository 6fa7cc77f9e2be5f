"""Ingest of Online Retail invoice files: validation, quarantine, silver tables, idempotency."""

from __future__ import annotations

import datetime as dt
import gzip

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from shoprec import columns as C
from shoprec.errors import InputFormatError
from shoprec.stages import ingest as ingest_job
from shoprec.stages.ingest import run_ingest

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
# Line numbers in the comments are the file's own (the header is line 1).
LINES = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",  # 2 kept
    "536365,71053, WHITE  METAL LANTERN ,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom",  # 3 kept
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",  # 4 dup of 2
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom",  # 5 kept: return of a discount
    "536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.0,12583.0,France",  # 6 kept: postage
    "536414,22139,,56,2010-12-01 11:52:00,0.0,,United Kingdom",  # 7 zero price
    "536589,21777,damages,-10,2010-12-01 16:50:00,0.0,,United Kingdom",  # 8 stock adjustment
    "536600,22633,HAND WARMER UNION JACK,abc,2010-12-01 10:00:00,2.1,17850.0,United Kingdom",  # 9 bad qty
    "536601,22633,HAND WARMER UNION JACK,1,not a date,2.1,17850.0,United Kingdom",  # 10 bad date
    "536602,,NO CODE,1,2010-12-01 10:00:00,2.1,17850.0,United Kingdom",  # 11 no stock code
    "536603,22633,HAND WARMER UNION JACK,1,2010-12-01 10:00:00",  # 12 too few fields
    "",  # 13 blank
    "536604,22633,HAND WARMER UNION JACK,1,2099-01-01 10:00:00,2.1,17850.0,United Kingdom",  # 14 future
    "536605,22633,HAND WARMER UNION JACK,0,2010-12-01 10:00:00,2.1,17850.0,United Kingdom",  # 15 zero qty
    "536606,22633,HAND WARMER UNION JACK,2,2010-12-01 10:00:00,2.1,,United Kingdom",  # 16 kept anonymous
    "C536607,22633,HAND WARMER UNION JACK,3,2010-12-01 10:00:00,2.1,17850.0,United Kingdom",  # 17 + on cancel
    "536608,B,Adjust bad debt,1,2011-08-12 14:51:00,-11062.06,,United Kingdom",  # 18 negative price
    '536609,85123a,"WHITE HANGING HEART T-LIGHT HOLDER",1,2011-06-01 12:00:00,2.95,13047.0,United Kingdom',  # 19 kept
    "536610,85123A,CREAM HANGING HEART,1,2011-06-02 12:00:00,2.65,13047.0,EIRE",  # 20 kept
]
EXPECTED_REASONS = {
    4: "DUPLICATE",
    7: "NON_POSITIVE_PRICE",
    8: "SIGN_MISMATCH",
    9: "UNPARSABLE",
    10: "UNPARSABLE",
    11: "MISSING_KEY",
    12: "MALFORMED",
    13: "EMPTY_LINE",
    14: "TIMESTAMP_OUT_OF_RANGE",
    15: "ZERO_QUANTITY",
    17: "SIGN_MISMATCH",
    18: "NON_POSITIVE_PRICE",
}


def write_csv(path, lines, header=HEADER, gz=True):
    text = "\n".join([header, *lines]) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def utc(*args):
    return dt.datetime(*args)


@pytest.fixture
def invoices(tmp_path):
    return write_csv(tmp_path / "invoices.csv.gz", LINES)


def test_every_row_is_kept_or_quarantined_with_its_reason(spark, cfg, tables, invoices):
    report = run_ingest(spark, cfg, tables, inputs=[invoices])
    assert (report.rows_in, report.rows_kept, report.rows_quarantined) == (19, 7, 12)
    assert report.quarantine_by_reason == {
        "DUPLICATE": 1,
        "EMPTY_LINE": 1,
        "MALFORMED": 1,
        "MISSING_KEY": 1,
        "NON_POSITIVE_PRICE": 2,
        "SIGN_MISMATCH": 2,
        "TIMESTAMP_OUT_OF_RANGE": 1,
        "UNPARSABLE": 2,
        "ZERO_QUANTITY": 1,
    }
    quarantine = tables.read(C.quarantine_table("online_retail"))
    got = {r.line_number: r.reason for r in quarantine.collect()}
    assert got == EXPECTED_REASONS
    dup = quarantine.filter(F.col(C.LINE_NUMBER) == 4).first()
    assert dup.reason_detail == f"same event as line 2 of {invoices}"
    assert dup.raw_line == LINES[2]
    assert quarantine.filter(F.col(C.LINE_NUMBER) == 9).first().reason_detail == "Quantity 'abc' is not an integer"

    bronze = tables.read(C.bronze_table("online_retail"))
    assert bronze.count() == 19
    line3 = bronze.filter(F.col(C.META_LINE_NUMBER) == 3).first()
    assert (line3.Description, line3.CustomerID) == (" WHITE  METAL LANTERN ", "17850.0")  # as received


def test_silver_interactions_hold_the_cleaned_rows(spark, cfg, tables, invoices):
    run_ingest(spark, cfg, tables, inputs=[invoices])
    cols = [
        C.LINE_NUMBER,
        C.USER_ID,
        C.ITEM_ID,
        C.EVENT_TYPE,
        C.QUANTITY,
        C.UNIT_PRICE,
        C.EVENT_TS,
        C.BASKET_ID,
        C.COUNTRY,
        C.DESCRIPTION,
        C.ITEM_KIND,
        C.IS_PRODUCT,
        C.IS_ANONYMOUS,
    ]
    expected = spark.createDataFrame(
        [
            (
                2,
                "17850",
                "85123A",
                "purchase",
                6,
                2.55,
                utc(2010, 12, 1, 8, 26),
                "536365",
                "United Kingdom",
                "WHITE HANGING HEART T-LIGHT HOLDER",
                "product",
                True,
                False,
            ),
            (
                3,
                "17850",
                "71053",
                "purchase",
                6,
                3.39,
                utc(2010, 12, 1, 8, 26),
                "536365",
                "United Kingdom",
                "WHITE METAL LANTERN",
                "product",
                True,
                False,
            ),
            (
                5,
                "14527",
                "D",
                "return",
                1,
                27.5,
                utc(2010, 12, 1, 9, 41),
                "C536379",
                "United Kingdom",
                "Discount",
                "discount",
                False,
                False,
            ),
            (
                6,
                "12583",
                "POST",
                "purchase",
                3,
                18.0,
                utc(2010, 12, 1, 8, 45),
                "536370",
                "France",
                "POSTAGE",
                "postage",
                False,
                False,
            ),
            (
                16,
                None,
                "22633",
                "purchase",
                2,
                2.1,
                utc(2010, 12, 1, 10, 0),
                "536606",
                "United Kingdom",
                "HAND WARMER UNION JACK",
                "product",
                True,
                True,
            ),
            # June is British Summer Time: 12:00 in London is 11:00 UTC.
            (
                19,
                "13047",
                "85123A",
                "purchase",
                1,
                2.95,
                utc(2011, 6, 1, 11, 0),
                "536609",
                "United Kingdom",
                "WHITE HANGING HEART T-LIGHT HOLDER",
                "product",
                True,
                False,
            ),
            (
                20,
                "13047",
                "85123A",
                "purchase",
                1,
                2.65,
                utc(2011, 6, 2, 11, 0),
                "536610",
                "EIRE",
                "CREAM HANGING HEART",
                "product",
                True,
                False,
            ),
        ],
        "line_number long, user_id string, item_id string, event_type string, quantity int, unit_price double, "
        "event_ts timestamp, basket_id string, country string, description string, item_kind string, "
        "is_product boolean, is_anonymous boolean",
    )
    assertDataFrameEqual(tables.read(C.SILVER_INTERACTIONS).select(*cols), expected)

    items = {r.item_id: r for r in tables.read(C.SILVER_ITEMS).collect()}
    assert set(items) == {"85123A", "71053", "D", "POST", "22633"}
    heart = items["85123A"]
    assert heart.description == "WHITE HANGING HEART T-LIGHT HOLDER"  # most frequent wins
    assert heart.last_price == 2.65  # price of the latest purchase
    assert (heart.first_seen, heart.last_seen, heart.n_purchases) == (
        utc(2010, 12, 1, 8, 26),
        utc(2011, 6, 2, 11, 0),
        3,
    )
    assert items["22633"].n_events == 1  # anonymous sales count for items

    users = {r.user_id: r for r in tables.read(C.SILVER_USERS).collect()}
    assert set(users) == {"17850", "14527", "12583", "13047"}  # anonymous rows make no user
    assert users["13047"].country == "EIRE"  # most recent country


def test_reingest_is_idempotent_and_new_files_add(spark, cfg, tables, invoices, tmp_path):
    run_ingest(spark, cfg, tables, inputs=[invoices])
    versions = {n: tables.version(n) for n in (C.SILVER_INTERACTIONS, C.quarantine_table("online_retail"))}
    again = run_ingest(spark, cfg, tables, inputs=[invoices])
    assert again.files_skipped == (invoices,) and again.rows_in == 0
    assert {n: tables.version(n) for n in versions} == versions
    assert tables.read(C.SILVER_INTERACTIONS).count() == 7

    newer = write_csv(
        tmp_path / "december.csv",
        [LINES[0], "536700,22633,HAND WARMER UNION JACK,4,2011-12-01 10:00:00,2.1,17850.0,United Kingdom"],
        gz=False,
    )
    report = run_ingest(spark, cfg, tables, inputs=[invoices, newer])
    assert report.files_skipped == (invoices,)
    assert (report.rows_in, report.rows_kept, report.quarantine_by_reason) == (2, 1, {"DUPLICATE": 1})
    q = tables.read(C.quarantine_table("online_retail")).filter(F.col(C.SOURCE_FILE) == newer).first()
    assert (q.line_number, q.reason_detail) == (2, "already in silver.interactions")
    assert tables.read(C.SILVER_INTERACTIONS).count() == 8
    log = tables.read(C.BRONZE_INGEST_LOG).orderBy("ingested_at", "path").collect()
    assert [(r.rows, r.rows_kept, r.rows_quarantined) for r in log] == [(19, 7, 12), (2, 1, 1)]


def test_a_failing_ingest_leaves_every_table_as_it_was(spark, cfg, tables, invoices, tmp_path, monkeypatch):
    run_ingest(spark, cfg, tables, inputs=[invoices])
    names = [
        C.SILVER_INTERACTIONS,
        C.SILVER_ITEMS,
        C.SILVER_USERS,
        C.BRONZE_INGEST_LOG,
        C.bronze_table("online_retail"),
        C.quarantine_table("online_retail"),
    ]
    before = {n: sorted(map(str, tables.read(n).collect())) for n in names}

    def broken_users(_interactions):
        raise RuntimeError("executor lost")

    monkeypatch.setattr(ingest_job, "build_users", broken_users)
    newer = write_csv(tmp_path / "more.csv.gz", ["536800,22633,HAND WARMER,1,2011-01-01 10:00:00,2.1,1.0,EIRE"])
    with pytest.raises(RuntimeError, match="executor lost"):
        run_ingest(spark, cfg, tables, inputs=[newer])
    after = {n: sorted(map(str, tables.read(n).collect())) for n in names}
    assert after == before
    monkeypatch.undo()
    assert run_ingest(spark, cfg, tables, inputs=[newer]).rows_kept == 1  # the rerun goes through


def test_files_in_the_wrong_format_stop_the_job_with_a_clear_error(spark, cfg, tables, tmp_path):
    wrong = write_csv(tmp_path / "orders.csv", ["1,2,3"], header="order,sku,qty", gz=False)
    with pytest.raises(
        InputFormatError,
        match=r"orders.csv is not an Online Retail invoice file: expected columns "
        r"InvoiceNo, StockCode",
    ):
        run_ingest(spark, cfg, tables, inputs=[wrong])
    binary = tmp_path / "x.csv.gz"
    binary.write_bytes(b"PK\x03\x04 not gzip at all")
    with pytest.raises(InputFormatError, match=r"x\.csv\.gz is named \.gz but is not gzip-compressed"):
        run_ingest(spark, cfg, tables, inputs=[str(binary)])
    with pytest.raises(InputFormatError, match="does not exist"):
        run_ingest(spark, cfg, tables, inputs=[str(tmp_path / "missing.csv")])
    assert not tables.exists(C.SILVER_INTERACTIONS)


def test_xlsx_export_with_online_retail_ii_column_names(spark, cfg, tables, tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"])
    sheet.append(
        [
            "489434",
            "85048",
            "15CM CHRISTMAS GLASS BALL 20 LIGHTS",
            12,
            dt.datetime(2009, 12, 1, 7, 45),
            6.95,
            13085.0,
            "United Kingdom",
        ]
    )
    sheet.append(
        [
            "C489449",
            "22087",
            "PAPER BUNTING WHITE LACE",
            -12,
            dt.datetime(2009, 12, 1, 10, 33),
            2.95,
            16321.0,
            "Australia",
        ]
    )
    sheet.append(["489435", "22350", "CAT BOWL", 12, dt.datetime(2009, 12, 1, 7, 46), 0, None, "United Kingdom"])
    path = tmp_path / "online_retail_II.xlsx"
    book.save(path)
    report = run_ingest(spark, cfg, tables, inputs=[str(path)])
    assert (report.rows_in, report.rows_kept, report.quarantine_by_reason) == (3, 2, {"NON_POSITIVE_PRICE": 1})
    got = {r.item_id: (r.user_id, r.event_type, r.quantity) for r in tables.read(C.SILVER_INTERACTIONS).collect()}
    assert got == {"85048": ("13085", "purchase", 12), "22087": ("16321", "return", 12)}
    q = tables.read(C.quarantine_table("online_retail")).first()
    assert (q.line_number, q.source_file) == (4, str(path))  # the spreadsheet's own row number


def test_line_numbers_are_exact_across_file_splits(spark, cfg, tables, tmp_path):
    # A plain CSV larger than one split (spark.sql.files.maxPartitionBytes) is read by
    # several tasks; line numbers must still be the file's own.
    many = [
        f"5{i:05d},{20000 + i % 500},ITEM {i % 500},{1 + i % 7},2011-0{1 + i % 9}-0{1 + i % 9} 10:00:00,1.25,"
        f"{12000 + i % 300}.0,France"
        for i in range(60000)
    ]
    path = write_csv(tmp_path / "big.csv", many, gz=False)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "512k")
    try:
        report = run_ingest(spark, cfg, tables, inputs=[path])
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", "64m")
    assert report.rows_in == 60000 and report.rows_kept == 60000
    bronze = tables.read(C.bronze_table("online_retail"))
    mismatched = bronze.filter(F.col("InvoiceNo") != F.format_string("5%05d", F.col(C.META_LINE_NUMBER) - 2)).count()
    assert mismatched == 0
    assert bronze.agg(F.min(C.META_LINE_NUMBER), F.max(C.META_LINE_NUMBER)).first() == (2, 60001)
