"""Adapter for generic event logs (clickstreams): CSV, JSON lines or Parquet.

Each record is one event: user, item, event type (view / cart / purchase, plus return),
timestamp, and optionally session, device, country, price and quantity. Column names
are mapped with ``ingest.event_log_columns``. A missing user with a session is an
anonymous visitor (kept, marked anonymous); missing both is a missing key.

Also reads an optional item catalog (item_id, title/description, category, price).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import EventLogColumns, IngestConfig
from shoprec.errors import InputFormatError
from shoprec.ingest import quality as Q
from shoprec.ingest.base import Parsed, interaction_id, item_kind, out_of_range
from shoprec.ingest.files import SourceFile, check_jsonl, check_parquet, read_csv_header
from shoprec.ingest.lines import CSV_OPTIONS, checked_encoding, csv_records, read_lines, read_parquet_rows

SOURCE = "event_log"
# Our canonical names of the fields, in bronze order.
FIELDS = ("user_id", "item_id", "event_type", "timestamp", "session_id", "device", "country", "price", "quantity")
REQUIRED = ("item_id", "event_type", "timestamp")
IDS = ("user_id", "item_id", "session_id")  # checked against ingest.id_patterns
EVENT_ALIASES = {
    "view": C.VIEW,
    "pageview": C.VIEW,
    "page_view": C.VIEW,
    "detail": C.VIEW,
    "click": C.VIEW,
    "cart": C.CART,
    "addtocart": C.CART,
    "add_to_cart": C.CART,
    "add-to-cart": C.CART,
    "purchase": C.PURCHASE,
    "transaction": C.PURCHASE,
    "order": C.PURCHASE,
    "buy": C.PURCHASE,
    "return": C.RETURN,
    "refund": C.RETURN,
}
TIME_FORMATS = ("yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd HH:mm:ss.SSSSSS", "yyyy-MM-dd HH:mm")
_CORRUPT = "_corrupt"
_JSON_CORRUPT = "_shoprec_corrupt_record"  # from_json's corrupt-record column (no event key is named so)


def field_names(cols: EventLogColumns) -> dict[str, str]:
    """Canonical field -> the file's column name."""
    return {f: getattr(cols, f) for f in FIELDS}


class EventLogAdapter:
    source = SOURCE

    def __init__(self, cfg: IngestConfig):
        self.cfg = cfg
        self.names = field_names(cfg.event_log_columns)
        self._headers: dict[str, list[str]] = {}

    def check_files(self, files: list[SourceFile]) -> None:
        for f in files:
            if f.format == "csv":
                found = read_csv_header(f.spark_path)
                self._headers[f.path] = found
            elif f.format == "parquet":
                found = check_parquet(f.spark_path)
            elif f.format == "jsonl":
                if not f.framed:
                    check_jsonl(f.spark_path)
                continue  # keys may vary per line; missing ones become MISSING_KEY rows
            else:
                raise InputFormatError(f"{f.path} is {f.format}; event logs come as CSV, JSON lines or Parquet")
            missing = [self.names[r] for r in REQUIRED if self.names[r] not in found]
            if missing:
                raise InputFormatError(
                    f"{f.path} is not an event log: it lacks the column(s) {', '.join(missing)} "
                    f"(found {', '.join(found)})",
                    hint="map your column names with ingest.event_log_columns.<field>=<your name>",
                )

    def parse(self, spark: SparkSession, files: list[SourceFile], ingested_at: Column) -> Parsed:
        if not self._headers and any(f.format == "csv" for f in files):
            self.check_files(files)
        frames, cached, count = [], [], 0
        text = [f for f in files if f.format in ("csv", "jsonl")]
        if text:
            lines, cache = read_lines(spark, text)
            cached.append(cache)
            try:
                csv_paths = list(self._headers)
                if csv_paths:
                    # Rows in are records (a quoted field may span lines), numbered by their first line.
                    csv_rows = csv_records(lines.filter(F.col(C.META_SOURCE_FILE).isin(csv_paths)))
                for header in {tuple(h) for h in self._headers.values()}:
                    paths = [p for p, h in self._headers.items() if tuple(h) == header]
                    part = csv_rows.filter(F.col(C.META_SOURCE_FILE).isin(paths) & (F.col(C.META_LINE_NUMBER) > 1))
                    frames.append(self._csv_fields(part, list(header)))
                json_paths = [f.path for f in text if f.format == "jsonl"]
                if json_paths:
                    json_lines = checked_encoding(lines.filter(F.col(C.META_SOURCE_FILE).isin(json_paths)))
                    json_fields = self._json_fields(json_lines)
                    checked = [f.path for f in text if f.format == "jsonl" and not f.framed]
                    if checked:
                        self._check_json_keys(json_fields, checked)
                    frames.append(json_fields)
            except BaseException:
                cache.unpersist()
                raise
        parquet = [f for f in files if f.format == "parquet"]
        if parquet:
            frames.append(self._parquet_fields(read_parquet_rows(spark, parquet)))
        fields = frames[0]
        for frame in frames[1:]:
            fields = fields.unionByName(frame)
        count = sum(frame.count() for frame in frames)
        return Parsed(_classify(fields, ingested_at, self.cfg), list(FIELDS), count, cached)

    def _csv_fields(self, lines: DataFrame, header: list[str]) -> DataFrame:
        schema = ", ".join(f"`{h}` string" for h in header) + f", {_CORRUPT} string"
        parsed = F.from_csv(F.col(C.META_RAW), schema, {**CSV_OPTIONS, "columnNameOfCorruptRecord": _CORRUPT})
        p = lines.select("*", parsed.alias("_p"))
        return p.select(
            C.META_SOURCE_FILE,
            C.META_LINE_NUMBER,
            C.META_RAW,
            C.META_RAW_INVALID,
            C.META_UNTERMINATED,
            *[
                (F.col(f"_p.`{name}`") if name in header else F.lit(None).cast("string")).alias(field)
                for field, name in self.names.items()
            ],
            F.col(f"_p.{_CORRUPT}").alias(_CORRUPT),
        )

    def _json_fields(self, lines: DataFrame) -> DataFrame:
        # Every field read as a string (numbers too) so validation sees what was sent. A line
        # that is not whole JSON (``{"item_id": "A1", ...`` cut off) fills the corrupt-record
        # column: PERMISSIVE alone returns it as an object of nulls, a MISSING_KEY row.
        schema = ", ".join(f"`{name}` string" for name in self.names.values()) + f", `{_JSON_CORRUPT}` string"
        parsed = F.from_json(
            F.col(C.META_RAW), schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _JSON_CORRUPT}
        )
        p = lines.select("*", parsed.alias("_p"))
        is_object = (
            F.trim(F.col(C.META_RAW)).startswith("{")
            & F.col("_p").isNotNull()
            & F.col(f"_p.`{_JSON_CORRUPT}`").isNull()
        )
        return p.select(
            C.META_SOURCE_FILE,
            C.META_LINE_NUMBER,
            C.META_RAW,
            C.META_RAW_INVALID,
            F.lit(False).alias(C.META_UNTERMINATED),
            *[F.col(f"_p.`{name}`").alias(field) for field, name in self.names.items()],
            F.when(~is_object & (F.col(C.META_RAW) != ""), F.col(C.META_RAW)).alias(_CORRUPT),
        )

    def _check_json_keys(self, fields: DataFrame, paths: list[str]) -> None:
        """A JSON-lines file none of whose lines has the required keys is the wrong file: stop.

        (Lines of a right file that miss a key stay MISSING_KEY rows.)
        """
        has_keys = F.lit(True)
        for r in REQUIRED:
            has_keys = has_keys & F.col(r).isNotNull()
        rows = fields.groupBy(C.META_SOURCE_FILE).agg(F.max(has_keys).alias("ok")).collect()  # small: one per file
        ok = {r[C.META_SOURCE_FILE]: bool(r["ok"]) for r in rows}
        for path in paths:
            if not ok.get(path, False):
                expected = ", ".join(self.names[r] for r in REQUIRED)
                raise InputFormatError(
                    f"{path} is not an event log: no line has all of the keys {expected}",
                    hint="map your key names with ingest.event_log_columns.<field>=<your name>",
                )

    def _parquet_fields(self, rows: DataFrame) -> DataFrame:
        present = set(rows.columns)
        return rows.select(
            C.META_SOURCE_FILE,
            C.META_LINE_NUMBER,
            C.META_RAW,
            F.lit(None).cast("string").alias(C.META_RAW_INVALID),
            F.lit(False).alias(C.META_UNTERMINATED),
            *[
                (F.col(f"`{name}`") if name in present else F.lit(None).cast("string")).alias(field)
                for field, name in self.names.items()
            ],
            F.lit(None).cast("string").alias(_CORRUPT),
        )


def _parse_time(col: Column) -> Column:
    text = F.trim(col)
    numeric = text.rlike(r"^[0-9]{9,13}(\.[0-9]+)?$")
    epoch = F.when(
        numeric,
        F.when(F.length(F.split(text, r"\.")[0]) >= 12, F.timestamp_millis(text.cast("double").cast("long"))).otherwise(
            F.timestamp_seconds(text.cast("double").cast("long"))
        ),
    )
    return F.coalesce(epoch, Q.parse_timestamp(col, TIME_FORMATS))


def _classify(fields: DataFrame, ingested_at: Column, cfg: IngestConfig) -> DataFrame:
    aliases = F.create_map(*[x for k, v in EVENT_ALIASES.items() for x in (F.lit(k), F.lit(v))])
    # Parse every value once into its own column (see online_retail._classify).
    fields = fields.select(
        "*",
        Q.clean_text(F.col("user_id")).alias("_user"),
        Q.clean_text(F.col("session_id")).alias("_session"),
        F.trim(F.col("item_id")).alias("_item"),
        aliases[F.lower(F.trim(F.col("event_type")))].alias("_event_type"),
        _parse_time(F.col("timestamp")).alias("_ts"),
        Q.try_cast("price", "DOUBLE").alias("_price"),
        F.coalesce(Q.try_cast("quantity", "INT"), F.when(Q.blank(F.col("quantity")), F.lit(1))).alias("_qty"),
    )
    user, session, item = F.col("_user"), F.col("_session"), F.col("_item")
    event_type, ts, price, qty = F.col("_event_type"), F.col("_ts"), F.col("_price"), F.col("_qty")
    is_purchase = event_type == C.PURCHASE
    id_rules: list[tuple[Column, str, Column | str]] = [
        (
            Q.invalid_id(F.col(f), cfg.id_patterns.get(f)),
            Q.INVALID_ID,
            F.concat(F.lit(f"{f} '"), F.trim(F.col(f)), F.lit(f"' does not match {cfg.id_patterns.get(f)}")),
        )
        for f in IDS
    ]
    rules: list[tuple[Column, str, Column | str]] = [
        *Q.record_rules(),
        (F.col(_CORRUPT).isNotNull(), Q.MALFORMED, "record does not have the expected fields"),
        (Q.blank(F.col("item_id")), Q.MISSING_KEY, "item id is empty"),
        (user.isNull() & session.isNull(), Q.MISSING_KEY, "neither user id nor session id is given"),
        *id_rules,
        (Q.blank(F.col("event_type")), Q.MISSING_KEY, "event type is empty"),
        (Q.blank(F.col("timestamp")), Q.MISSING_KEY, "timestamp is empty"),
        (
            event_type.isNull(),
            Q.INVALID_EVENT_TYPE,
            F.concat(F.lit("event type '"), F.col("event_type"), F.lit("' is not view, cart, purchase or return")),
        ),
        (ts.isNull(), Q.UNPARSABLE, F.concat(F.lit("timestamp '"), F.col("timestamp"), F.lit("' is not a date-time"))),
        (
            ~Q.blank(F.col("price")) & price.isNull(),
            Q.UNPARSABLE,
            F.concat(F.lit("price '"), F.col("price"), F.lit("' is not a number")),
        ),
        (
            Q.not_finite(price),
            Q.UNPARSABLE,
            F.concat(F.lit("price '"), F.trim(F.col("price")), F.lit("' is not a finite number")),
        ),
        (qty.isNull(), Q.UNPARSABLE, F.concat(F.lit("quantity '"), F.col("quantity"), F.lit("' is not an integer"))),
        (
            out_of_range(ts, ingested_at, cfg),
            Q.TIMESTAMP_OUT_OF_RANGE,
            F.concat(F.lit("timestamp "), F.col("timestamp"), F.lit(" is outside the plausible range")),
        ),
        (qty == 0, Q.ZERO_QUANTITY, "quantity is 0"),
        (qty < 0, Q.SIGN_MISMATCH, "negative quantity (send returns as event type return)"),
        (price < 0, Q.NON_POSITIVE_PRICE, "negative price"),
        (is_purchase & (price == 0), Q.NON_POSITIVE_PRICE, "zero price on a purchase"),
    ]
    reason, detail = Q.first_failure(rules)
    item_upper = F.upper(item)
    return fields.select(
        F.struct(*[F.col(f) for f in FIELDS]).alias(C.META_SOURCE_COLUMNS),
        C.META_SOURCE_FILE,
        C.META_LINE_NUMBER,
        Q.raw_line(),
        interaction_id(SOURCE, *[F.trim(F.col(f)) for f in FIELDS]).alias(C.INTERACTION_ID),
        user.alias(C.USER_ID),
        item.alias(C.ITEM_ID),
        event_type.alias(C.EVENT_TYPE),
        qty.alias(C.QUANTITY),
        price.alias(C.UNIT_PRICE),
        ts.alias(C.EVENT_TS),
        session.alias(C.BASKET_ID),
        session.alias(C.SESSION_ID),
        Q.clean_text(F.col("country")).alias(C.COUNTRY),
        F.lower(Q.clean_text(F.col("device"))).alias(C.DEVICE),
        F.lit(None).cast("string").alias(C.DESCRIPTION),
        item_kind(item_upper, cfg).alias(C.ITEM_KIND),
        user.isNull().alias(C.IS_ANONYMOUS),
        reason.alias(C.REASON),
        detail.alias(C.REASON_DETAIL),
    ).withColumn(C.IS_PRODUCT, F.col(C.ITEM_KIND) == C.KIND_PRODUCT)


CATALOG_ALIASES = {
    C.ITEM_ID: ("item_id", "itemid", "product_id", "sku", "StockCode"),
    C.DESCRIPTION: ("description", "title", "name", "Description"),
    C.CATEGORY: ("category", "category_code", "category_id"),
    "price": ("price", "UnitPrice", "unit_price"),
}


def read_catalog(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """An item catalog as (item_id, description, category, price); title and description joined.

    Every row is returned; the caller quarantines rows without an item id.
    """
    if fmt == "csv":
        df = spark.read.options(header=True, **CSV_OPTIONS).csv(path)
    elif fmt == "jsonl":
        df = spark.read.json(path)
    elif fmt == "parquet":
        df = spark.read.parquet(path)
    else:
        raise InputFormatError(f"catalog {path} is {fmt}; catalogs come as CSV, JSON lines or Parquet")
    cols = set(df.columns)

    def pick(field: str) -> Column:
        names = [n for n in CATALOG_ALIASES[field] if n in cols]
        return F.col(f"`{names[0]}`") if names else F.lit(None)

    if not any(n in cols for n in CATALOG_ALIASES[C.ITEM_ID]):
        raise InputFormatError(f"catalog {path} has no item id column (expected one of item_id, sku, product_id)")
    text = pick(C.DESCRIPTION)
    if "title" in cols and "description" in cols:
        text = F.concat_ws(". ", F.col("title"), F.col("description"))
    return df.select(
        F.trim(pick(C.ITEM_ID).cast("string")).alias(C.ITEM_ID),
        Q.clean_text(text.cast("string")).alias(C.DESCRIPTION),
        Q.clean_text(pick(C.CATEGORY).cast("string")).alias(C.CATEGORY),
        pick("price").cast("string").alias("_price_text"),
    ).select(C.ITEM_ID, C.DESCRIPTION, C.CATEGORY, Q.try_cast("_price_text", "DOUBLE").alias("price"))
