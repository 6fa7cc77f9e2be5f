# Databricks notebook source
# MAGIC %md
# MAGIC # The pipeline, one stage per cell
# MAGIC
# MAGIC The same stages `shoprec pipeline` runs, here one cell each so you can rerun one, change a
# MAGIC setting and look at what it wrote: ingest, features, ALS, the hybrid model (Horovod),
# MAGIC bundles, recommendations, evaluation. Every stage opens its own MLflow run and prints the
# MAGIC summary the command line prints.
# MAGIC
# MAGIC Parameters (widgets on Databricks, `$SHOPREC_NB_*` elsewhere):
# MAGIC - `data_root`: the lakehouse; `env`: `local` or `cluster`
# MAGIC - `as_of`: the training cutoff (empty: `split.as_of` from conf)
# MAGIC - `inputs`: comma-separated files to ingest (empty: the shipped Online Retail data)
# MAGIC - `settings`: `;`-separated config overrides, as `--set` takes them, e.g.
# MAGIC   `ingest.source=event_log; ingest.catalog=/data/catalog.csv; hybrid.epochs=2`

# COMMAND ----------

from shoprec.notebook import overrides, parameter

dbutils_ = globals().get("dbutils")
data_root = parameter("data_root", "./lakehouse", dbutils_)
env = parameter("env", "local", dbutils_)
as_of_text = parameter("as_of", "", dbutils_)
inputs = [p for p in parameter("inputs", "", dbutils_).split(",") if p]
settings = overrides(parameter("settings", "", dbutils_))

# COMMAND ----------

from datetime import date

from shoprec.notebook import open_context
from shoprec.stages import bundles, context, evaluate, features, ingest, recommend, train_als, train_hybrid

ctx = open_context(env, data_root, settings)
reports = {}

# COMMAND ----------

# MAGIC %md ## 1. Ingest: source files -> bronze, quarantine, silver

# COMMAND ----------

reports["ingest"] = ingest.ingest_stage(ctx, inputs or None)
split = context.resolve_run_split(ctx, date.fromisoformat(as_of_text) if as_of_text else None)
print(f"history < {split.as_of}; validation from {split.validation_start}; evaluation until {split.evaluation_end}")

# COMMAND ----------

# MAGIC %md ## 2. Features: gold user / item / context features, confidence, time profiles

# COMMAND ----------

reports["features"] = features.features_stage(ctx, split=split)

# COMMAND ----------

# MAGIC %md ## 3. ALS: tuned on the validation window, registered, candidates written

# COMMAND ----------

reports["train-als"] = train_als.train_als_stage(ctx, split=split)

# COMMAND ----------

# MAGIC %md ## 4. The hybrid model, trained with Horovod (horovodrun locally, horovod.spark.run on a cluster)

# COMMAND ----------

reports["train-hybrid"] = train_hybrid.train_hybrid_stage(ctx, split=split)

# COMMAND ----------

# MAGIC %md ## 5. Bundles: association rules, partners per item, basket completion

# COMMAND ----------

reports["bundles"] = bundles.bundles_stage(ctx, split=split)

# COMMAND ----------

# MAGIC %md ## 6. Recommendations: candidates, deep scoring, fusion, context, re-ranking

# COMMAND ----------

reports["recommend"] = recommend.recommend_stage(ctx, split=split)

# COMMAND ----------

# MAGIC %md ## 7. Evaluation: every source on the evaluation window

# COMMAND ----------

reports["evaluate"] = evaluate.evaluate_stage(ctx, split=split)
print(f"MLflow UI:  shoprec ui --data-root {data_root}")
