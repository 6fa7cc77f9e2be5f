# Databricks notebook source
# MAGIC %md
# MAGIC # Bundles browser: what is bought together
# MAGIC
# MAGIC The strongest association rules of `gold.bundles` with both sides named, a search over
# MAGIC item descriptions, and the "frequently bought together" partners of one item
# MAGIC (`gold.bundle_partners`). Run `shoprec bundles` (or the pipeline) first.

# COMMAND ----------

from shoprec.notebook import overrides, parameter

dbutils_ = globals().get("dbutils")
data_root = parameter("data_root", "./lakehouse", dbutils_)
env = parameter("env", "local", dbutils_)
settings = overrides(parameter("settings", "", dbutils_))  # "key=value; ..." as --set takes them
as_of_text = parameter("as_of", "", dbutils_)  # empty: the latest as_of of gold.bundles
order_by = parameter("order_by", "lift", dbutils_)  # lift | confidence | support | basket_count
min_baskets = int(parameter("min_baskets", "20", dbutils_))
search = parameter("search", "", dbutils_)  # words of a description, e.g. "heart"
item_id = parameter("item_id", "", dbutils_)  # empty: the first item found, else the strongest rule's

# COMMAND ----------

from shoprec import columns as C
from shoprec.notebook import as_of_or_latest, open_context
from shoprec.reports import browse

ctx = open_context(env, data_root, settings)
as_of = as_of_or_latest(as_of_text, browse.as_ofs(ctx.tables, C.GOLD_BUNDLES))
if as_of is None:
    raise SystemExit(
        f"gold.bundles under {data_root} holds no rules: run shoprec bundles (or the pipeline) "
        "first, or lower bundles.min_support for a shop with few multi-item baskets"
    )

# COMMAND ----------

# MAGIC %md ## The strongest rules

# COMMAND ----------

rules = browse.strongest_rules(ctx.tables, as_of, n=20, min_baskets=min_baskets, by=order_by)
rules[["antecedent_names", "consequent_name", "confidence", "lift", "basket_count"]]

# COMMAND ----------

# MAGIC %md ## Find an item

# COMMAND ----------

found = browse.find_items(ctx.tables, search) if search else None
if not item_id:
    if found is not None and len(found):
        item_id = found[C.ITEM_ID].iloc[0]
    elif len(rules):
        item_id = rules[C.ANTECEDENT_ITEMS].iloc[0][0]
found

# COMMAND ----------

# MAGIC %md ## Frequently bought together with the item

# COMMAND ----------

partners = browse.item_partners(ctx.tables, item_id, as_of) if item_id else None
print(f"partners of {item_id} as of {as_of}")
partners
