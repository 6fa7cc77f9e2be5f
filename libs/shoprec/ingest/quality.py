"""Reason codes for quarantined rows, and the small helpers every adapter shares.

Each rule yields a reason code when it fails; a row's reason is the first failing rule
in the adapter's order, so every row gets exactly one reason (or none: kept).
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.errors import ConfigError

# Reason codes (stable: dashboards and tests use them).
INVALID_ENCODING = "INVALID_ENCODING"  # bytes that are not UTF-8 (raw_line holds "base64:" + the bytes)
EMPTY_LINE = "EMPTY_LINE"  # a blank line
MALFORMED = "MALFORMED"  # wrong number of fields, broken or unterminated quoting, not a JSON object
MISSING_KEY = "MISSING_KEY"  # a required key (user/item/time/invoice) is empty
UNPARSABLE = "UNPARSABLE"  # a value could not be read as its type (NaN and infinities included)
INVALID_ID = "INVALID_ID"  # an id that does not match its ingest.id_patterns rule
INVALID_EVENT_TYPE = "INVALID_EVENT_TYPE"  # not view/cart/purchase/return
TIMESTAMP_OUT_OF_RANGE = "TIMESTAMP_OUT_OF_RANGE"  # far in the future or before the shop could exist
ZERO_QUANTITY = "ZERO_QUANTITY"
SIGN_MISMATCH = "SIGN_MISMATCH"  # negative quantity outside a cancellation (stock adjustment) or vice versa
NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"  # zero or negative price on a purchase, negative anywhere
DUPLICATE = "DUPLICATE"  # the same event twice (in this batch, or already in silver)

REASONS = (
    INVALID_ENCODING,
    EMPTY_LINE,
    MALFORMED,
    MISSING_KEY,
    UNPARSABLE,
    INVALID_ID,
    INVALID_EVENT_TYPE,
    TIMESTAMP_OUT_OF_RANGE,
    ZERO_QUANTITY,
    SIGN_MISMATCH,
    NON_POSITIVE_PRICE,
    DUPLICATE,
)


INVALID_ENCODING_DETAIL = "not valid UTF-8; raw_line holds its exact bytes as base64:<bytes>"


def unterminated_detail() -> Column:
    """Detail of a CSV record whose quoted field is still open at the end of its file."""
    return F.concat(
        F.lit("unterminated quoted field: the quote opened on line "),
        F.col(C.META_LINE_NUMBER).cast("string"),
        F.lit(" is not closed before the end of the file"),
    )


def record_rules() -> list[tuple[Column, str, Column | str]]:
    """The rules every text record meets before its fields are looked at (an adapter's first):
    valid UTF-8, not blank, its quoted field closed (``lines.csv_records`` flags these)."""
    return [
        (F.col(C.META_RAW_INVALID).isNotNull(), INVALID_ENCODING, INVALID_ENCODING_DETAIL),
        (F.col(C.META_RAW) == "", EMPTY_LINE, "blank line"),
        (F.col(C.META_UNTERMINATED), MALFORMED, unterminated_detail()),
    ]


def raw_line() -> Column:
    """What the quarantine keeps of a record: its text, or ``base64:`` and its exact bytes
    when they were not UTF-8."""
    return F.coalesce(F.col(C.META_RAW_INVALID), F.col(C.META_RAW)).alias(C.META_RAW)


def not_finite(value: Column) -> Column:
    """True for NaN and +-Infinity (which ``try_cast`` to DOUBLE accepts)."""
    return F.isnan(value) | (F.abs(value) == F.lit(float("inf")))


def check_java_patterns(spark: SparkSession, patterns: Mapping[str, str]) -> None:
    """Compile ``ingest.id_patterns`` as the Java regular expressions Spark runs them as.

    Config load compiles them with Python's ``re``; the two dialects differ (``(?P<name>...)``
    is Python only), and an invalid one would otherwise fail mid-job as a Java stack trace.
    """
    jvm = getattr(spark.sparkContext, "_jvm", None)
    if jvm is None:  # Spark Connect: no driver JVM here; Spark itself will say
        return
    for key, pattern in patterns.items():
        try:
            jvm.java.util.regex.Pattern.compile(pattern)
        except Exception as exc:  # py4j's error; only its first line (the Java message) is kept
            java = str(getattr(exc, "java_exception", exc)).strip().splitlines()[0]
            raise ConfigError(
                f"'ingest.id_patterns.{key}' is not a Java regular expression: {java}",
                hint="Spark runs these rules as Java regexes: keep to the syntax Java and Python share",
            ) from None


def invalid_id(text: Column, pattern: str | None) -> Column:
    """True when a non-blank id does not match ``pattern`` (a Java regex; None: no rule)."""
    if pattern is None:
        return F.lit(False)
    return ~blank(text) & ~F.trim(text).rlike(pattern)


def first_failure(rules: list[tuple[Column, str, Column | str]]) -> tuple[Column, Column]:
    """(reason, detail) of the first rule whose condition is true; nulls when all pass.

    ``rules`` is a list of (failed condition, reason code, detail text or column).
    """
    reason = F.lit(None).cast("string")
    detail = F.lit(None).cast("string")
    for failed, code, text in reversed(rules):
        cond = F.coalesce(failed, F.lit(False))
        reason = F.when(cond, F.lit(code)).otherwise(reason)
        detail = F.when(cond, text if isinstance(text, Column) else F.lit(text)).otherwise(detail)
    return reason, detail


def blank(col: Column) -> Column:
    """True when a string column is null or only whitespace."""
    return col.isNull() | (F.trim(col) == "")


def clean_text(col: Column) -> Column:
    """Trim and collapse inner whitespace; empty becomes null."""
    cleaned = F.regexp_replace(F.trim(col), r"\s+", " ")
    return F.when(cleaned == "", F.lit(None)).otherwise(cleaned)


def try_cast(col_name: str, type_name: str) -> Column:
    """``try_cast`` (null instead of an error under ANSI mode)."""
    return F.expr(f"try_cast(trim(`{col_name}`) AS {type_name})")


def parse_timestamp(col: Column, formats: tuple[str, ...]) -> Column:
    """First format that parses; ISO 8601 (with zone) is always tried first."""
    text = F.trim(col)
    attempts = [F.try_to_timestamp(text)] + [F.try_to_timestamp(text, F.lit(fmt)) for fmt in formats]
    return F.coalesce(*attempts)
