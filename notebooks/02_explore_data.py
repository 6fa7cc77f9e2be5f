# Databricks notebook source
# MAGIC %md
# MAGIC # Explore the purchases: size, long tail, when people buy, seasonal items
# MAGIC
# MAGIC Reads `silver.interactions` (run notebook 01 or `shoprec ingest` first) and shows what a
# MAGIC recommender has to work with: how many lines, baskets, customers and items; how much of
# MAGIC the sales the best sellers hold (the long tail); sales per month, hour and weekday; and
# MAGIC the items whose sales concentrate in one season. Everything is computed by
# MAGIC `shoprec.reports.explore`; the charts go to `<data_root>/_reports/explore`.

# COMMAND ----------

from shoprec.notebook import overrides, parameter

dbutils_ = globals().get("dbutils")
data_root = parameter("data_root", "./lakehouse", dbutils_)
env = parameter("env", "local", dbutils_)
settings = overrides(parameter("settings", "", dbutils_))  # "key=value; ..." as --set takes them
before = parameter("before", "", dbutils_)  # YYYY-MM-DD: only purchases before it (empty: all)
min_lines = int(parameter("min_lines", "50", dbutils_))  # lines an item needs to count as seasonal

# COMMAND ----------

import os
from datetime import date

from shoprec import columns as C
from shoprec.notebook import open_context, output_dir
from shoprec.reports import explore

ctx = open_context(env, data_root, settings)
tables = ctx.tables
purchases = explore.product_purchases(
    tables.read(C.SILVER_INTERACTIONS), date.fromisoformat(before) if before else None
).persist()
names = tables.read(C.SILVER_ITEMS).select(C.ITEM_ID, C.DESCRIPTION)

# COMMAND ----------

# MAGIC %md ## How big is the shop?

# COMMAND ----------

summary = explore.overview(purchases)
summary

# COMMAND ----------

# MAGIC %md ## The long tail: how much the best sellers sell

# COMMAND ----------

tail = explore.long_tail(purchases)
head = {f"top {int(s * 100)}% of items": round(explore.head_share(tail, s), 3) for s in (0.01, 0.1, 0.2, 0.5)}
per_customer = explore.lines_per_customer(purchases)
print("share of all purchase lines sold by:", head)
per_customer

# COMMAND ----------

# MAGIC %md ## When people buy: months, hours, weekdays

# COMMAND ----------

months = explore.monthly(purchases)
hours, weekdays = explore.time_of_day(purchases)
months

# COMMAND ----------

# MAGIC %md ## Seasonal items (month index: the item's share of its sales in a month over the shop's)

# COMMAND ----------

seasonal = explore.seasonal_items(purchases, names, n=10, min_lines=min_lines)
seasonal[[C.ITEM_ID, C.DESCRIPTION, "peak_month", "seasonality", "n_lines"]]

# COMMAND ----------

chart = explore.plot_overview(
    tail, months, hours, seasonal, os.path.join(output_dir(data_root, "explore"), "overview.png")
)
print(f"charts: {chart}")
try:  # show it inline where there is a display (Databricks, Jupyter)
    from IPython.display import Image, display

    display(Image(filename=chart))
except ImportError:
    pass
purchases.unpersist()
