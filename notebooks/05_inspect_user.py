# Databricks notebook source
# MAGIC %md
# MAGIC # One customer: what they bought, what they got, and why
# MAGIC
# MAGIC For one user at one cutoff: their latest purchases before `as_of`, their list in
# MAGIC `gold.recommendations` with each item's source and reason, their basket completions from
# MAGIC `gold.bundle_recommendations`, and which recommended items they went on to buy in the 28
# MAGIC days after `as_of` (`bought_after`). Empty `user_id`: the busiest customers are offered.

# COMMAND ----------

from shoprec.notebook import overrides, parameter

dbutils_ = globals().get("dbutils")
data_root = parameter("data_root", "./lakehouse", dbutils_)
env = parameter("env", "local", dbutils_)
settings = overrides(parameter("settings", "", dbutils_))  # "key=value; ..." as --set takes them
as_of_text = parameter("as_of", "", dbutils_)  # empty: the latest as_of of gold.recommendations
user_id = parameter("user_id", "", dbutils_)

# COMMAND ----------

from shoprec import columns as C
from shoprec.notebook import as_of_or_latest, open_context
from shoprec.reports import browse

ctx = open_context(env, data_root, settings)
as_of = as_of_or_latest(as_of_text, browse.as_ofs(ctx.tables))
if as_of is None:
    raise SystemExit(f"no gold.recommendations under {data_root}: run shoprec pipeline first")
examples = browse.busiest_users(ctx.tables, as_of)
user_id = user_id or examples[0]
print(f"as_of {as_of}; user {user_id} (busy customers to try: {', '.join(examples)})")

# COMMAND ----------

# MAGIC %md ## What they bought before as_of

# COMMAND ----------

history = browse.user_history(ctx.tables, user_id, as_of)
history

# COMMAND ----------

# MAGIC %md ## Their recommendations, with reasons

# COMMAND ----------

recommendations = browse.user_recommendations(ctx.tables, user_id, as_of)
print(f"{int(recommendations['bought_after'].sum())} of {len(recommendations)} bought in the 28 days after {as_of}")
recommendations

# COMMAND ----------

# MAGIC %md ## Completing their recent baskets (bundles)

# COMMAND ----------

completions = None
if ctx.tables.exists(C.GOLD_BUNDLE_RECOMMENDATIONS):
    completions = browse.user_recommendations(ctx.tables, user_id, as_of, C.GOLD_BUNDLE_RECOMMENDATIONS)
completions
