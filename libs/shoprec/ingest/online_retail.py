"""Adapter for Online Retail invoice lines (UCI Online Retail, its CSV and xlsx exports).

Columns: InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
Country (the Online Retail II spelling Invoice / Price / Customer ID is accepted too).
Invoices are baskets; an InvoiceNo starting with C is a cancellation, which becomes a
``return``; lines without a customer are kept for item statistics, marked anonymous.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import IngestConfig
from shoprec.errors import InputFormatError
from shoprec.ingest import quality as Q
from shoprec.ingest.base import Parsed, interaction_id, item_kind, out_of_range
from shoprec.ingest.files import SourceFile, read_csv_header
from shoprec.ingest.lines import CSV_OPTIONS, csv_records, read_lines

SOURCE = "online_retail"
COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
ALIASES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
# This repo's copy: 2010-12-01 08:26:00; the xlsx export as CSV: 12/1/2010 8:26.
TIME_FORMATS = ("yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "M/d/yyyy H:mm", "M/d/yyyy H:mm:ss", "M/d/yy H:mm")
_CORRUPT = "_corrupt"


class OnlineRetailAdapter:
    source = SOURCE

    def __init__(self, cfg: IngestConfig):
        self.cfg = cfg
        self._headers: dict[str, list[str]] = {}

    def check_files(self, files: list[SourceFile]) -> None:
        for f in files:
            if f.format not in ("csv", "xlsx"):
                raise InputFormatError(
                    f"{f.path} is {f.format}, but Online Retail invoices come as CSV, gzip CSV or xlsx",
                    hint="use ingest.source=event_log for event logs",
                )
            header = [ALIASES.get(h, h) for h in read_csv_header(f.spark_path)]
            if sorted(header) != sorted(COLUMNS):
                raise InputFormatError(
                    f"{f.path} is not an Online Retail invoice file: expected columns {', '.join(COLUMNS)}, "
                    f"found {', '.join(header) or 'none'}",
                    hint="check the file, or use ingest.source=event_log for event logs",
                )
            self._headers[f.path] = header

    def parse(self, spark: SparkSession, files: list[SourceFile], ingested_at: Column) -> Parsed:
        if not self._headers:
            self.check_files(files)
        lines, cache = read_lines(spark, files)
        # Rows in are records (a quoted field may span lines), numbered by their first line.
        data = csv_records(lines).filter(F.col(C.META_LINE_NUMBER) > 1)  # line 1 is the header
        frames = []
        for header in {tuple(h) for h in self._headers.values()}:
            paths = [p for p, h in self._headers.items() if tuple(h) == header]
            frames.append(_split_fields(data.filter(F.col(C.META_SOURCE_FILE).isin(paths)), list(header)))
        fields = frames[0]
        for frame in frames[1:]:
            fields = fields.unionByName(frame)
        record_count = data.count()
        return Parsed(_classify(fields, ingested_at, self.cfg), COLUMNS, record_count, [cache])


def _split_fields(lines: DataFrame, header: list[str]) -> DataFrame:
    schema = ", ".join(f"`{h}` string" for h in header) + f", {_CORRUPT} string"
    parsed = F.from_csv(F.col(C.META_RAW), schema, {**CSV_OPTIONS, "columnNameOfCorruptRecord": _CORRUPT})
    return lines.select("*", parsed.alias("_p")).select(
        C.META_SOURCE_FILE,
        C.META_LINE_NUMBER,
        C.META_RAW,
        C.META_RAW_INVALID,
        C.META_UNTERMINATED,
        *[F.col(f"_p.`{h}`").alias(h) for h in COLUMNS],
        F.col(f"_p.{_CORRUPT}").alias(_CORRUPT),
    )


def _classify(fields: DataFrame, ingested_at: Column, cfg: IngestConfig) -> DataFrame:
    # Parse every value once into its own column; the rules and outputs then refer to
    # those columns instead of re-deriving them inside nested CASE expressions.
    typed = fields.select(
        "*",
        F.upper(F.trim(F.col("InvoiceNo"))).alias("_invoice"),
        F.upper(F.trim(F.col("StockCode"))).alias("_stock"),
        Q.try_cast("Quantity", "INT").alias("_qty"),
        Q.try_cast("UnitPrice", "DOUBLE").alias("_price"),
        Q.parse_timestamp(F.col("InvoiceDate"), TIME_FORMATS).alias("_local_ts"),
        F.regexp_replace(F.trim(F.col("CustomerID")), r"\.0+$", "").alias("_customer_text"),
    )
    invoice, stock, qty, price = F.col("_invoice"), F.col("_stock"), F.col("_qty"), F.col("_price")
    local_ts = F.col("_local_ts")
    ts = F.to_utc_timestamp(local_ts, cfg.source_timezone)
    customer = F.when(F.col("_customer_text") == "", F.lit(None)).otherwise(F.col("_customer_text"))
    is_cancel = invoice.startswith("C")
    customer_rule = cfg.id_patterns.get("customer_id")
    rules: list[tuple[Column, str, Column | str]] = [
        *Q.record_rules(),
        (F.col(_CORRUPT).isNotNull(), Q.MALFORMED, f"expected {len(COLUMNS)} comma-separated fields"),
        (Q.blank(F.col("InvoiceNo")), Q.MISSING_KEY, "InvoiceNo is empty"),
        (Q.blank(F.col("StockCode")), Q.MISSING_KEY, "StockCode is empty"),
        (Q.blank(F.col("InvoiceDate")), Q.MISSING_KEY, "InvoiceDate is empty"),
        (qty.isNull(), Q.UNPARSABLE, F.concat(F.lit("Quantity '"), F.col("Quantity"), F.lit("' is not an integer"))),
        (
            price.isNull(),
            Q.UNPARSABLE,
            F.concat(F.lit("UnitPrice '"), F.coalesce(F.col("UnitPrice"), F.lit("")), F.lit("' is not a number")),
        ),
        (
            Q.not_finite(price),
            Q.UNPARSABLE,
            F.concat(F.lit("UnitPrice '"), F.trim(F.col("UnitPrice")), F.lit("' is not a finite number")),
        ),
        (
            local_ts.isNull(),
            Q.UNPARSABLE,
            F.concat(F.lit("InvoiceDate '"), F.col("InvoiceDate"), F.lit("' is not a date-time")),
        ),
        (
            Q.invalid_id(F.col("CustomerID"), customer_rule),
            Q.INVALID_ID,
            F.concat(F.lit("CustomerID '"), F.trim(F.col("CustomerID")), F.lit(f"' does not match {customer_rule}")),
        ),
        (
            out_of_range(ts, ingested_at, cfg),
            Q.TIMESTAMP_OUT_OF_RANGE,
            F.concat(F.lit("InvoiceDate "), F.col("InvoiceDate"), F.lit(" is outside the plausible range")),
        ),
        (qty == 0, Q.ZERO_QUANTITY, "Quantity is 0"),
        (
            ~is_cancel & (qty < 0),
            Q.SIGN_MISMATCH,
            "negative Quantity on an invoice that is not a cancellation (stock adjustment)",
        ),
        (is_cancel & (qty > 0), Q.SIGN_MISMATCH, "positive Quantity on a cancellation invoice"),
        (price < 0, Q.NON_POSITIVE_PRICE, "negative UnitPrice"),
        (~is_cancel & (price == 0), Q.NON_POSITIVE_PRICE, "zero UnitPrice on a purchase"),
    ]
    reason, detail = Q.first_failure(rules)
    return typed.select(
        F.struct(*[F.col(c) for c in COLUMNS]).alias(C.META_SOURCE_COLUMNS),
        C.META_SOURCE_FILE,
        C.META_LINE_NUMBER,
        Q.raw_line(),
        interaction_id(SOURCE, *[F.trim(F.col(c)) for c in COLUMNS]).alias(C.INTERACTION_ID),
        customer.alias(C.USER_ID),
        stock.alias(C.ITEM_ID),
        F.when(is_cancel, F.lit(C.RETURN)).otherwise(F.lit(C.PURCHASE)).alias(C.EVENT_TYPE),
        F.abs(qty).alias(C.QUANTITY),
        price.alias(C.UNIT_PRICE),
        ts.alias(C.EVENT_TS),
        invoice.alias(C.BASKET_ID),
        F.lit(None).cast("string").alias(C.SESSION_ID),
        Q.clean_text(F.col("Country")).alias(C.COUNTRY),
        F.lit(None).cast("string").alias(C.DEVICE),
        Q.clean_text(F.col("Description")).alias(C.DESCRIPTION),
        item_kind(stock, cfg).alias(C.ITEM_KIND),
        customer.isNull().alias(C.IS_ANONYMOUS),
        reason.alias(C.REASON),
        detail.alias(C.REASON_DETAIL),
    ).withColumn(C.IS_PRODUCT, F.col(C.ITEM_KIND) == C.KIND_PRODUCT)
