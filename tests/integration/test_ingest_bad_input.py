"""Bad input: every record is kept or quarantined with a reason, or the job stops with one clear line.

Cases are grouped into few ingests (each costs tens of seconds): one Online Retail CSV with
several bad records plus a header-only file, one event-log batch (JSON lines and CSV) with
several bad records; the errors stop before anything is written.
"""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.errors import ConfigError, InputFormatError
from shoprec.stages.ingest import run_ingest
from tests.conftest import make_config
from tests.integration.test_ingest_online_retail import HEADER, write_csv

BAD_BYTES = b"536366,22633,HAND WARMER \xff\xfe UNION JACK,6,2010-12-01 08:28:00,1.85,17850,United Kingdom"
# The file's own line numbers (the header is line 1).
RETAIL = [
    b"536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom",  # 2 kept
    b'536365,85123A,"MULTI',  # 3 kept: one record of lines 3-4
    b'LINE ""QUOTED"" DESCRIPTION",6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom',  # 4 (continues 3)
    BAD_BYTES,  # 5 INVALID_ENCODING
    b"536367,84879,ASSORTED BIRD ORNAMENT,32,2010-12-01 08:34:00,1.69,not-a-customer,United Kingdom",  # 6 INVALID_ID
    b"536368,22960,JAM MAKING SET,6,2010-12-01 08:34:00,NaN,13047,United Kingdom",  # 7 UNPARSABLE
    b"536368,22913,RED COAT RACK,3,2010-12-01 08:34:00,-Infinity,13047,United Kingdom",  # 8 UNPARSABLE
    b'536369,21756,"BATH BUILDING BLOCK WORD,3,2010-12-01 08:35:00,5.95,13047,United Kingdom',  # 9 MALFORMED
    b"536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01 08:45:00,3.75,12583,France",  # 10 (inside 9's quote)
]


def _quarantine(tables, source):
    return {r.line_number: r for r in tables.read(C.quarantine_table(source)).collect()}


def test_online_retail_bad_records_are_quarantined_and_quoted_newlines_kept(spark, cfg, tables, tmp_path):
    path = tmp_path / "retail.csv"
    path.write_bytes(b"\n".join([HEADER.encode(), *RETAIL]) + b"\n")
    header_only = write_csv(tmp_path / "header_only.csv", [], gz=False)

    report = run_ingest(spark, cfg, tables, inputs=[str(path), header_only])

    # 9 physical data lines, 7 records: 3-4 are one, 9-10 one (its quote never closes).
    assert (report.rows_in, report.rows_kept, report.rows_quarantined) == (7, 2, 5)
    assert report.quarantine_by_reason == {"INVALID_ENCODING": 1, "INVALID_ID": 1, "MALFORMED": 1, "UNPARSABLE": 2}
    q = _quarantine(tables, "online_retail")
    assert {n: r.reason for n, r in q.items()} == {
        5: "INVALID_ENCODING",
        6: "INVALID_ID",
        7: "UNPARSABLE",
        8: "UNPARSABLE",
        9: "MALFORMED",
    }
    assert all(r.source_file == str(path) and r.reason_detail for r in q.values())
    assert q[5].raw_line == "base64:" + base64.b64encode(BAD_BYTES).decode()  # the exact bytes
    assert q[6].reason_detail == r"CustomerID 'not-a-customer' does not match ^\d+(\.0)?$"
    assert q[7].reason_detail == "UnitPrice 'NaN' is not a finite number"
    assert q[8].reason_detail == "UnitPrice '-Infinity' is not a finite number"
    assert q[9].reason_detail == (
        "unterminated quoted field: the quote opened on line 9 is not closed before the end of the file"
    )
    assert q[9].raw_line == "\n".join(line.decode() for line in RETAIL[7:])

    bronze = tables.read(C.bronze_table("online_retail"))
    assert bronze.count() == 7
    multi = bronze.filter(F.col(C.META_LINE_NUMBER) == 3).first()
    # One field holding the line break, its RFC 4180 "" unescaped and its outer quotes gone.
    assert multi.Description == 'MULTI\nLINE "QUOTED" DESCRIPTION'
    silver = tables.read(C.SILVER_INTERACTIONS)
    assert sorted(r.line_number for r in silver.collect()) == [2, 3]
    assert [r.description for r in silver.where(F.col(C.LINE_NUMBER) == 3).collect()] == [
        'MULTI LINE "QUOTED" DESCRIPTION'
    ]

    # delta-rs reads the quarantine (and bronze) after an invalid-UTF-8 row.
    from deltalake import DeltaTable

    arrow = DeltaTable(tables.path(C.quarantine_table("online_retail"))).to_pyarrow_table()
    assert arrow.num_rows == 5
    assert DeltaTable(tables.path(C.bronze_table("online_retail"))).to_pyarrow_table().num_rows == 7


def test_event_log_bad_records_json_lines_and_csv(spark, tables, data_root, tmp_path):
    good = {"user_id": "u1", "item_id": "i1", "event_type": "view", "event_time": "2023-03-01 10:00:00"}
    jsonl = tmp_path / "events.jsonl"
    lines = [
        json.dumps(good).encode(),  # 1 kept
        json.dumps({**good, "item_id": "i2", "price": "NaN"}).encode(),  # 2 UNPARSABLE
        json.dumps({**good, "item_id": "i3"})[:-1].encode() + b', "price": NaN}',  # 3 UNPARSABLE (bare NaN)
        json.dumps({**good, "item_id": "i4", "user_id": "u\u0001x"}).encode(),  # 4 INVALID_ID
        b'{"user_id": "u\xff", "item_id": "i5", "event_type": "view", "event_time": "2023-03-01 10:00:00"}',  # 5
        json.dumps({**good, "item_id": "i6", "event_time": None}).encode(),  # 6 MISSING_KEY
        json.dumps({**good, "item_id": "i9"})[:40].encode(),  # 7 MALFORMED (cut off: not an object of nulls)
    ]
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    csv = tmp_path / "events.csv"
    csv.write_text(
        "user_id,item_id,event_type,event_time,country,price\n"
        'u2,i7,view,2023-03-01 11:00:00,"United\nKingdom",\n'  # 2-3 kept, one record
        "u2,i8,purchase,2023-03-01 11:05:00,France,Infinity\n"  # 4 UNPARSABLE
    )
    cfg = make_config(data_root, "ingest.source=event_log")

    report = run_ingest(spark, cfg, tables, inputs=[str(jsonl), str(csv)])

    assert (report.rows_in, report.rows_kept, report.rows_quarantined) == (9, 2, 7)
    assert report.quarantine_by_reason == {
        "INVALID_ENCODING": 1,
        "INVALID_ID": 1,
        "MALFORMED": 1,
        "MISSING_KEY": 1,
        "UNPARSABLE": 3,
    }
    rows = tables.read(C.quarantine_table("event_log")).collect()
    got = {(r.source_file.rsplit("/", 1)[-1], r.line_number): r.reason for r in rows}
    assert got == {
        ("events.jsonl", 2): "UNPARSABLE",
        ("events.jsonl", 3): "UNPARSABLE",
        ("events.jsonl", 4): "INVALID_ID",
        ("events.jsonl", 5): "INVALID_ENCODING",
        ("events.jsonl", 6): "MISSING_KEY",
        ("events.jsonl", 7): "MALFORMED",
        ("events.csv", 4): "UNPARSABLE",
    }
    by_key = {(r.source_file.rsplit("/", 1)[-1], r.line_number): r for r in rows}
    assert by_key[("events.jsonl", 2)].reason_detail == "price 'NaN' is not a finite number"
    assert by_key[("events.jsonl", 4)].reason_detail.startswith("user_id 'u\u0001x' does not match ")
    assert by_key[("events.jsonl", 5)].raw_line == "base64:" + base64.b64encode(lines[4]).decode()
    assert by_key[("events.csv", 4)].reason_detail == "price 'Infinity' is not a finite number"
    assert by_key[("events.jsonl", 7)].reason_detail == "record does not have the expected fields"
    kept = tables.read(C.SILVER_INTERACTIONS).filter(F.col(C.ITEM_ID) == "i7").first()
    assert (kept.line_number, kept.country) == (2, "United Kingdom")

    from deltalake import DeltaTable

    assert DeltaTable(tables.path(C.quarantine_table("event_log"))).to_pyarrow_table().num_rows == 7


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Py4J" not in text and "at org." not in text
    return text


def test_wrong_json_keys_truncated_gzip_and_empty_files_stop_with_one_line(spark, cfg, tables, data_root, tmp_path):
    wrong = tmp_path / "clicks.jsonl"
    line = json.dumps({"visitor": "v", "sku": "s", "kind": "view", "ts": 1})
    wrong.write_text(f"{line}\n" * 3)
    ev_cfg = make_config(data_root, "ingest.source=event_log")
    with pytest.raises(InputFormatError) as exc:
        run_ingest(spark, ev_cfg, tables, inputs=[str(wrong)])
    assert _one_line(exc) == (
        f"{wrong} is not an event log: no line has all of the keys item_id, event_type, event_time "
        "(hint: map your key names with ingest.event_log_columns.<field>=<your name>)"
    )

    full = gzip.compress(("\n".join([HEADER, *[r.decode() for r in RETAIL[:1]] * 2000]) + "\n").encode())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputFormatError) as exc:
        run_ingest(spark, cfg, tables, inputs=[str(cut)])
    assert _one_line(exc).startswith(f"{cut}: gzip data is truncated or corrupt (EOFError: ")

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputFormatError) as exc:
        run_ingest(spark, cfg, tables, inputs=[str(empty)])
    assert _one_line(exc) == f"{empty} is empty or starts with a blank line, expected a CSV header row"

    # Valid for Python's re (so config load takes it), not for Java's, which Spark runs.
    named = make_config(data_root, r"ingest.id_patterns.customer_id=^(?P<n>\d+)$")
    good = write_csv(tmp_path / "good.csv", [RETAIL[0].decode()], gz=False)
    with pytest.raises(ConfigError) as exc:
        run_ingest(spark, named, tables, inputs=[good])
    assert _one_line(exc) == (
        "'ingest.id_patterns.customer_id' is not a Java regular expression: Unknown inline modifier near index 3 "
        "(hint: Spark runs these rules as Java regexes: keep to the syntax Java and Python share)"
    )
    for name in (C.SILVER_INTERACTIONS, C.quarantine_table("event_log"), C.quarantine_table("online_retail")):
        assert not tables.exists(name)
