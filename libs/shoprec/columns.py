"""Column and table names, defined once.

Library functions take these as keyword defaults (``col_user=USER_ID``) the way
Microsoft Recommenders does, so a caller with other names can still use them.
"""
from __future__ import annotations

# --- silver.interactions -------------------------------------------------------------
INTERACTION_ID = "interaction_id"
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"
EVENT_TS = "event_ts"
BASKET_ID = "basket_id"
SESSION_ID = "session_id"
COUNTRY = "country"
DEVICE = "device"
IS_ANONYMOUS = "is_anonymous"
IS_PRODUCT = "is_product"
ITEM_KIND = "item_kind"
SOURCE = "source"
SOURCE_FILE = "source_file"
LINE_NUMBER = "line_number"
INGESTED_AT = "ingested_at"

# --- silver.items / silver.users -----------------------------------------------------
DESCRIPTION = "description"
CATEGORY = "category"
LAST_PRICE = "last_price"
FIRST_SEEN = "first_seen"
LAST_SEEN = "last_seen"
N_EVENTS = "n_events"
N_PURCHASES = "n_purchases"

# --- bronze metadata (prefixed so they never collide with source columns) --------------
META_SOURCE_FILE = "_source_file"
META_FILE_SHA256 = "_file_sha256"
META_LINE_NUMBER = "_line_number"
META_INGESTED_AT = "_ingested_at"
META_RAW = "_raw"
# The columns as received, kept together in one struct while rows are classified so
# they never clash with silver names (Spark matches names case-insensitively).
META_SOURCE_COLUMNS = "_src"

# --- quarantine ------------------------------------------------------------------------
REASON = "reason"
REASON_DETAIL = "reason_detail"
RAW_LINE = "raw_line"

# --- event types -----------------------------------------------------------------------
VIEW = "view"
CART = "cart"
PURCHASE = "purchase"
RETURN = "return"
EVENT_TYPES = (VIEW, CART, PURCHASE, RETURN)

# --- item kinds (Online Retail has non-product stock codes) ----------------------------
KIND_PRODUCT = "product"
ITEM_KINDS = ("product", "postage", "manual", "fee", "sample", "discount", "adjustment", "gift_voucher")

# --- tables: "<layer>.<name>" ----------------------------------------------------------
SILVER_INTERACTIONS = "silver.interactions"
SILVER_ITEMS = "silver.items"
SILVER_USERS = "silver.users"
BRONZE_INGEST_LOG = "bronze.ingest_log"


def bronze_table(source: str) -> str:
    """Bronze table of one source adapter, e.g. ``bronze.online_retail``."""
    return f"bronze.{source}"


def quarantine_table(source: str) -> str:
    """Quarantine table of one source adapter, e.g. ``quarantine.online_retail``."""
    return f"quarantine.{source}"
