# Databricks notebook source
# MAGIC %md
# MAGIC # Compare MLflow runs and promote a model
# MAGIC
# MAGIC What the MLflow UI shows, as tables you can sort and plot: the evaluation of every
# MAGIC source across `evaluate` runs (one row per run: as_of, git commit, NDCG@10 per source),
# MAGIC the training runs of the hybrid model, and the versions of each registered model with
# MAGIC their aliases. The last cell moves an alias by hand (roll back, or promote a challenger
# MAGIC after an A/B test): set `promote_version` to do it, and say why in `promote_note`.

# COMMAND ----------

from shoprec.notebook import overrides, parameter

dbutils_ = globals().get("dbutils")
data_root = parameter("data_root", "./lakehouse", dbutils_)
env = parameter("env", "local", dbutils_)
settings = overrides(parameter("settings", "", dbutils_))  # "key=value; ..." as --set takes them
segment = parameter("segment", "warm", dbutils_)  # all | warm | cold | new_items
metric = parameter("metric", "ndcg_at_10", dbutils_)  # e.g. recall_at_20, map_at_10, coverage_at_10
promote_model = parameter("promote_model", "shoprec-hybrid", dbutils_)
promote_version = parameter("promote_version", "", dbutils_)  # empty: change nothing
promote_note = parameter("promote_note", "", dbutils_)

# COMMAND ----------

import os

from shoprec.config import load_config
from shoprec.notebook import output_dir
from shoprec.reports import runs

cfg = load_config(env, settings, data_root=data_root)  # MLflow only: no Spark session needed

# COMMAND ----------

# MAGIC %md ## Every source, every evaluate run

# COMMAND ----------

evaluations = runs.evaluation_runs(cfg, segment=segment, metric=metric)
sources = [c for c in evaluations.columns if c not in ("run_id", "started", "as_of", "git_commit")]
chart = None
if not evaluations.empty:
    chart = runs.plot_runs(
        evaluations,
        sources,
        os.path.join(output_dir(data_root, "runs"), f"{metric}.png"),
        f"{metric}, {segment} users, by evaluate run",
    )
evaluations

# COMMAND ----------

# MAGIC %md ## Training runs of the hybrid model

# COMMAND ----------

training = runs.stage_runs(cfg, "train-hybrid", metrics=r"^(val_ndcg_at_10|val_auc|samples_per_second|fit_seconds)$")
training

# COMMAND ----------

# MAGIC %md ## Registered models, versions and aliases

# COMMAND ----------

versions = {name: runs.model_versions(cfg, name) for name in (cfg.als.registered_model, cfg.hybrid.registered_model)}
versions[cfg.hybrid.registered_model]

# COMMAND ----------

# MAGIC %md ## Promote by hand (only when `promote_version` is set)

# COMMAND ----------

from shoprec.registry import set_alias

promotion = None
if promote_version:
    promotion = set_alias(promote_model, promote_version, note=promote_note)
    print(promotion)
    versions[promote_model] = runs.model_versions(cfg, promote_model)
versions[promote_model]
