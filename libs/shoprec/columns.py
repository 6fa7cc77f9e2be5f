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
META_RAW_INVALID = "_raw_invalid"  # "base64:<bytes>" of a record that is not valid UTF-8
META_UNTERMINATED = "_unterminated"  # a CSV record whose quoted field is never closed
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

# --- gold: features, factors, candidates -----------------------------------------------
AS_OF = "as_of"  # the training cutoff a gold row was computed for
CONFIDENCE = "confidence"  # time-decayed implicit feedback of (user, item)
USER_IDX = "user_idx"  # integer ids ALS needs, kept in gold.*_id_map
ITEM_IDX = "item_idx"
FACTORS = "factors"  # array<float> latent vector
TEXT_VECTOR = "text_vector"  # array<double> learned from the item description
SCORE = "score"
RANK = "rank"
CANDIDATE_SOURCE = "source"  # which path produced a candidate: als, popular, ...
SEGMENT = "segment"  # warm | cold users, new_items
VARIANT = "variant"  # evaluation truth: repeat (repeat purchases count) | new (new to the user)
METRIC = "metric"  # gold.evaluation: metric name (ndcg, recall, ...)
K = "k"  # gold.evaluation: cutoff, null for metrics without one (mrr, auc)
VALUE = "value"
N_USERS = "n_users"  # users a metric value is averaged over
HOUR = "hour"
WEEKDAY = "weekday"  # 1 = Monday .. 7 = Sunday (ISO)
MONTH = "month"
SEASON = "season"  # winter | spring | summer | autumn
DAYS_TO_HOLIDAY = "days_to_holiday"
PRICE_BAND = "price_band"

# --- tables: "<layer>.<name>" ----------------------------------------------------------
SILVER_INTERACTIONS = "silver.interactions"
SILVER_ITEMS = "silver.items"
SILVER_USERS = "silver.users"
BRONZE_INGEST_LOG = "bronze.ingest_log"
GOLD_USER_FEATURES = "gold.user_features"
GOLD_ITEM_FEATURES = "gold.item_features"
GOLD_CONTEXT = "gold.context"
GOLD_CONFIDENCE = "gold.confidence"
GOLD_ITEM_TIME_PROFILES = "gold.item_time_profiles"  # month index, seasonal lift, hour/weekday shares
GOLD_USER_TIME_PROFILES = "gold.user_time_profiles"  # hour/weekday shares
GOLD_USER_ID_MAP = "gold.user_id_map"
GOLD_ITEM_ID_MAP = "gold.item_id_map"
GOLD_ALS_USER_FACTORS = "gold.als_user_factors"
GOLD_ALS_ITEM_FACTORS = "gold.als_item_factors"
# ALS refit on the history before the validation window (same params): what the
# recommend stage scores the validation window with when it chooses the fusion weight.
GOLD_ALS_VALIDATION_USER_FACTORS = "gold.als_validation_user_factors"
GOLD_ALS_VALIDATION_ITEM_FACTORS = "gold.als_validation_item_factors"
GOLD_CANDIDATES = "gold.candidates"
GOLD_RECOMMENDATIONS = "gold.recommendations"
# gold.recommendations' schema + events_through, per user re-scored by the stream (issue 21)
GOLD_LIVE_RECOMMENDATIONS = "gold.live_recommendations"
GOLD_COLD_START_LISTS = "gold.cold_start_lists"  # per country: what a user not seen yet gets
GOLD_EVALUATION = "gold.evaluation"
GOLD_BUNDLES = "gold.bundles"  # association rules over baskets
GOLD_BUNDLE_PARTNERS = "gold.bundle_partners"  # per item: frequently bought together
GOLD_BUNDLE_RECOMMENDATIONS = "gold.bundle_recommendations"  # per user: complete the recent baskets

# --- candidate sources -----------------------------------------------------------------
SRC_ALS = "als"
SRC_POPULAR = "popular"  # global, recency-weighted
SRC_POPULAR_COUNTRY = "popular_country"
SRC_POPULAR_HOUR = "popular_hour"
SRC_COOCCURRENCE = "cooccurrence"  # bought together with the user's recent items
SRC_HYBRID = "hybrid"  # the deep model re-ranking a pool (train-hybrid)
SRC_CONTENT = "content"  # text-vector neighbours of the user's recent items
SRC_REPEAT = "repeat"  # the user's own earlier purchases (reorders)
SRC_POPULAR_CONTEXT = "popular_context"  # popular in the user's country, season and recent weeks
SRC_NEW_ITEM = "new_item"  # an item without sales before as_of, reached through content
SRC_BUNDLE = "bundle"  # completes the user's recent baskets (association rules)
SRC_POPULAR_BASKET = "popular_basket"  # bundle fallback: items most often in baskets with others
SRC_POPULAR_RANDOM = "popular_random"  # bundle baseline: random picks among the most popular items
SRC_RECOMMEND = "recommend"  # gold.recommendations as evaluated: fused, re-ranked, cold start
SRC_BUNDLES = "bundles"  # gold.bundle_recommendations as evaluated (basket completion)

# --- gold.bundles / gold.bundle_partners ------------------------------------------------
ANTECEDENT_ITEMS = "antecedent_items"  # array<string>: the rule's left side
CONSEQUENT_ITEM = "consequent_item"
SUPPORT = "support"  # share of baskets holding antecedent and consequent
RULE_CONFIDENCE = "confidence"  # P(consequent | antecedent) over baskets
LIFT = "lift"  # confidence / share of baskets holding the consequent
BASKET_COUNT = "basket_count"  # baskets holding antecedent and consequent
PARTNER_ITEM_ID = "partner_item_id"
ITEMS = "items"  # array<string>: a basket's distinct items
HIT_RATE = "hit_rate"

# --- gold.recommendations ----------------------------------------------------------------
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
GENERATED_AT = "generated_at"
EVENTS_THROUGH = "events_through"  # gold.live_recommendations: the newest event a list includes
LIST_KEY = "list_key"  # gold.cold_start_lists: the country a list is for ...
COLD_START_ANY_COUNTRY = "*"  # ... or this: the global list, for a user of any other country


def bronze_table(source: str) -> str:
    """Bronze table of one source adapter, e.g. ``bronze.online_retail``."""
    return f"bronze.{source}"


def quarantine_table(source: str) -> str:
    """Quarantine table of one source adapter, e.g. ``quarantine.online_retail``."""
    return f"quarantine.{source}"


# --- gold features (shoprec features) --------------------------------------------------
N_RETURNS = "n_returns"
LAST_EVENT_TS = "last_event_ts"  # latest weighted event of a (user, item) pair
RECENCY_DAYS = "recency_days"  # days from the last purchase to as_of
FREQUENCY = "frequency"  # distinct purchase baskets
MONETARY = "monetary"  # purchases minus returns, quantity x unit price
AVG_BASKET_SIZE = "avg_basket_size"  # mean distinct items per purchase basket
RETURN_RATE = "return_rate"  # return lines / purchase lines
N_ITEMS = "n_items"  # distinct items bought
CATEGORY_MIX = "category_mix"  # map<category, share of purchase lines>
PRICE_BAND_MIX = "price_band_mix"  # array<double>: share of purchase lines in band 1..B
PREFERRED_HOUR = "preferred_hour"
PREFERRED_WEEKDAY = "preferred_weekday"
N_BUYERS = "n_buyers"
POPULARITY = "popularity"  # recency-weighted purchase lines
TREND = "trend"  # (recent weeks + 1) / (weeks before + 1)
MEDIAN_PRICE = "median_price"  # median unit price of the item's purchases
TEXT_CLUSTER = "text_cluster"  # KMeans cluster of the description vector
FIRST_SOLD = "first_sold"
LAST_SOLD = "last_sold"

# --- working columns of the concern packages (named once, here) ----------------------
# candidates.sources
ANCHOR = "anchor_item"  # the user's item that led to a candidate (reason)
SOURCE_SCORE = "source_score"  # a candidate's score in its source
SOURCE_RANK = "source_rank"  # a candidate's rank in its source
IS_NEW = "is_new"  # no sales before as_of (only content similarity can reach it)
# ranking.fusion
CF_SCORE = "cf_score"  # ALS factor dot product of a candidate
DEEP_SCORE = "deep_score"  # the hybrid model's score of a candidate
FUSED_SCORE = "fused_score"  # w x norm(cf) + (1 - w) x norm(deep)
WEIGHT = "weight"  # a fusion weight of the search grid
# ranking.rerank
TIME_FIT = "time_fit"  # hour/weekday fit of (user, item)
SEASON_WEIGHT = "season_weight"  # a season weight of the search grid
TIME_WEIGHT = "time_weight"  # a time weight of the search grid
FINAL_SCORE = "final_score"  # fused + context terms + boosts
# bundles.complete
TIER = "tier"  # basket completion: 0 rules, 1 co-occurrence, 2 popular
# bundles.rules
RULE_ID = "rule_id"
ANTECEDENT_SIZE = "antecedent_size"
# bundles.baskets
BASKET_TS = "basket_ts"  # a basket's first event
BASKET_ORDER = "basket_order"  # 1 = the user's latest basket
# bundles.evaluate
NEXT_ITEMS = "next_items"  # array<string>: the items of the next basket
# evaluation.metrics
N_TRUTH = "n_truth"  # truth items of a user
N_PAIRS = "n_pairs"  # AUC: (positive, negative) pairs of a user
POSITIVE_ITEM = "positive_item"
NEGATIVE_ITEM = "negative_item"
DIVERSITY_USERS = "diversity_users"
# hybrid.features
PAIR_PURCHASES = "pair_purchases"  # hybrid input: the user's purchases of the item
PAIR_DAYS_SINCE = "pair_days_since"
USER_PURCHASES = "user_purchases"
USER_DAYS_SINCE = "user_days_since"
LABEL = "label"  # hybrid training: 1 bought, 0 sampled negative
EXAMPLE_ID = "example_id"  # groups a positive with its negatives (and a user's list for NDCG)
# ranker (the learned second-stage ranker: shoprec.ranker)
QID = "qid"  # the ranker's query group: an integer per user
IS_VALIDATION = "is_validation"  # a held-out user's row (early stopping, validation NDCG@10)
PREDICTION = "prediction"  # SparkXGBRankerModel's output column
RANKER_SCORE = "ranker_score"  # the ranker's score of a candidate
ORDER = "order"  # which ordering of a pool a metric row is for (ranker, als, pool, ...)
N_SOURCES = "n_sources"  # sources that proposed a candidate
BEST_SOURCE_RANK = "best_source_rank"  # its best rank over those sources
PAIR_BASKETS = "pair_baskets"  # distinct baskets of the user holding the item
PAIR_QUANTITY = "pair_quantity"  # units of the item the user bought
USER_BASKETS = "user_baskets"  # RFM frequency: the user's distinct purchase baskets
USER_LINES = "user_lines"  # the user's purchase lines
USER_TENURE_DAYS = "user_tenure_days"  # days from the user's first purchase to the cutoff
USER_MONETARY = "user_monetary"  # RFM monetary: quantity x unit price over the user's purchases
USER_REPEAT_RATE = "user_repeat_rate"  # share of the user's items bought in two or more baskets
USER_PRICE = "user_price"  # median unit price the user pays
ITEM_BUYERS = "item_buyers"  # distinct buyers of the item
ITEM_BASKETS = "item_baskets"
ITEM_RECENT_BUYERS = "item_recent_buyers"  # buyers in the last trend_days before the cutoff
ITEM_TREND = "item_trend"  # (recent buyers + 1) / (buyers of the trend_days before + 1)
ITEM_DAYS_ON_SALE = "item_days_on_sale"  # days from the item's first sale to the cutoff (0: new)
ITEM_PRICE = "item_price"  # median unit price of the item's purchases
ITEM_REPEAT_RATE = "item_repeat_rate"  # share of the item's buyers who bought it in 2+ baskets
PRICE_RATIO = "price_ratio"  # item price / the user's usual price
COUNTRY_SHARE = "country_share"  # share of the user's country's buyers who bought the item
# features.time_profiles
MONTH_INDEX = "month_index"  # array<double>[12], null where the month has no sales
HOUR_SHARE = "hour_share"  # array<double>[24]
WEEKDAY_SHARE = "weekday_share"  # array<double>[7], Monday first
PEAK_MONTH = "peak_month"  # 1..12, the month of the highest index
SEASONALITY = "seasonality"  # the highest month index (1: no season)
SEASONAL_LIFT = "seasonal_lift"  # an item's month index in the weeks after as_of
N_LINES = "n_lines"  # purchase lines a profile is built from
# stages.ingest
SILVER_CATALOG = "silver.catalog"  # the catalog adapter's items

# --- gold.evaluation: segments and truth variants -------------------------------------
SEGMENT_WARM = "warm"  # bought something before as_of
SEGMENT_COLD = "cold"  # first purchase inside the evaluation window
SEGMENT_ALL = "all"  # every evaluated user
SEGMENT_NEW_ITEMS = "new_items"  # truth: items first sold in the window
VARIANT_REPEAT = "repeat"  # truth: all purchases of the window, repeats included
VARIANT_NEW = "new"  # truth and lists without the items bought before as_of
