# Databricks notebook source
# MAGIC %md
# MAGIC # Ingest shop data and check its quality
# MAGIC
# MAGIC Runs `shoprec ingest` on the shipped UCI Online Retail data (or your own files) and shows
# MAGIC what landed: rows kept versus quarantined by reason, the busiest items and countries, and
# MAGIC a few quarantined lines with their reasons. Everything here calls the `shoprec` library.
# MAGIC
# MAGIC Parameters are widgets on Databricks; elsewhere they come from environment variables
# MAGIC (`SHOPREC_NB_*`) or the defaults below.

# COMMAND ----------

from shoprec.notebook import parameter

dbutils_ = globals().get("dbutils")  # Databricks widgets when there, else $SHOPREC_NB_* / defaults
data_root = parameter("data_root", "./lakehouse", dbutils_)
env = parameter("env", "local", dbutils_)
inputs = [p for p in parameter("inputs", "", dbutils_).split(",") if p]  # empty: ingest.inputs from conf

# COMMAND ----------

from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import load_config
from shoprec.stages.context import JobContext
from shoprec.stages.ingest import run_ingest
from shoprec.tracking import job_run

cfg = load_config(env, data_root=data_root)
ctx = JobContext.create(cfg)  # reuses the notebook's Spark session when there is one
spark, tables = ctx.spark, ctx.tables

# COMMAND ----------

# MAGIC %md ## Ingest (skips files already ingested)

# COMMAND ----------

with job_run(cfg, "ingest", tags={"shoprec.origin": "notebook"}) as run:
    report = run_ingest(spark, cfg, tables, run, inputs or None)
print(f"rows in {report.rows_in:,} = kept {report.rows_kept:,} + quarantined {report.rows_quarantined:,}")

# COMMAND ----------

# MAGIC %md ## Quarantine by reason (all ingests so far)

# COMMAND ----------

quarantine_by_reason = (
    tables.read(C.quarantine_table(cfg.ingest.source))
    .groupBy(C.REASON)
    .count()
    .orderBy(F.col("count").desc())
    .toPandas()  # small: one row per reason code
)
quarantine_by_reason

# COMMAND ----------

# MAGIC %md ## Busiest items and countries among purchases

# COMMAND ----------

purchases = tables.read(C.SILVER_INTERACTIONS).filter((F.col(C.EVENT_TYPE) == C.PURCHASE) & F.col(C.IS_PRODUCT))
top_items = (
    purchases.groupBy(C.ITEM_ID)
    .agg(F.sum(C.QUANTITY).alias("units"), F.countDistinct(C.BASKET_ID).alias("baskets"))
    .join(tables.read(C.SILVER_ITEMS).select(C.ITEM_ID, C.DESCRIPTION), on=C.ITEM_ID, how="left")
    .orderBy(F.col("baskets").desc())
    .limit(10)
    .toPandas()  # small: 10 rows
)
top_countries = (
    purchases.groupBy(C.COUNTRY)
    .agg(F.countDistinct(C.BASKET_ID).alias("baskets"))
    .orderBy(F.col("baskets").desc())
    .limit(10)
    .toPandas()  # small: 10 rows
)
top_items

# COMMAND ----------

# MAGIC %md ## A few quarantined lines, as received

# COMMAND ----------

examples = (
    tables.read(C.quarantine_table(cfg.ingest.source))
    .select(C.REASON, C.LINE_NUMBER, C.REASON_DETAIL, C.RAW_LINE)
    .orderBy(C.REASON, C.LINE_NUMBER)
    .limit(20)
    .toPandas()  # small: 20 rows
)
examples
