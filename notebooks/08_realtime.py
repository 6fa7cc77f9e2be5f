# Databricks notebook source
# MAGIC %md
# MAGIC # Real time: post events for a user, watch the list change
# MAGIC
# MAGIC Talks HTTP to `shoprec serve` (started here on a free loopback port unless `api_url`
# MAGIC names a running one): one user's list, a cart event posted for them, the very next list
# MAGIC (the cart's bought-together partners lead), then `shoprec stream` taking the posted event
# MAGIC into silver. Run the pipeline (or `shoprec recommend` and `shoprec bundles`) first.

# COMMAND ----------

from shoprec.notebook import overrides, parameter

dbutils_ = globals().get("dbutils")
data_root = parameter("data_root", "./lakehouse", dbutils_)
env = parameter("env", "local", dbutils_)
settings = overrides(parameter("settings", "", dbutils_))  # "key=value; ..." as --set takes them
api_url = parameter("api_url", "", dbutils_)  # empty: start shoprec serve here for this notebook
user_id = parameter("user_id", "", dbutils_)  # empty: a user with a batch list
item_id = parameter("item_id", "", dbutils_)  # empty: the item with the strongest bought-together partner

# COMMAND ----------

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pandas as pd

from shoprec import columns as C
from shoprec.notebook import open_context
from shoprec.reports import browse

ctx = open_context(env, data_root, settings)


def call(url: str, body: object = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:  # 422 answers carry per-event reasons
        return json.load(err)


server = None
if not api_url:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [os.path.join(os.path.dirname(sys.executable), "shoprec"), "serve", "--data-root", data_root]
    command += ["--port", str(port), "--env", env] + [arg for o in settings for arg in ("--set", o)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api_url = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 120
while True:
    try:
        health = call(api_url + "/health")
        if health.get("status") == "ready":
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit(f"shoprec serve at {api_url} is not ready: run the pipeline on {data_root} first")
    time.sleep(0.2)
print(f"API at {api_url}: snapshot {health['snapshot']}, {health['users']:,} users' lists, as of {health['as_of']}")

# COMMAND ----------

# MAGIC %md ## The user's list now

# COMMAND ----------

as_of = browse.as_ofs(ctx.tables, C.GOLD_BUNDLE_PARTNERS)[-1]
partners = ctx.tables.read_as_of(C.GOLD_BUNDLE_PARTNERS, as_of)
if not item_id:
    best = partners.orderBy(partners[C.RULE_CONFIDENCE].desc(), partners[C.ITEM_ID]).first()
    item_id = best[C.ITEM_ID]
if not user_id:
    user_id = ctx.tables.read(C.GOLD_RECOMMENDATIONS).orderBy(C.USER_ID).first()[C.USER_ID]


def as_table(body: dict) -> pd.DataFrame:
    return pd.DataFrame(body["items"])[["rank", "item_id", "source", "score", "reason", "description"]]


before = call(f"{api_url}/v1/users/{user_id}/recommendations?k=10")
print(f"user {user_id}: served from {before['served_from']}, events through {before['events_through']}")
before_table = as_table(before)
before_table

# COMMAND ----------

# MAGIC %md ## Post a cart event, ask again

# COMMAND ----------

event = {
    "user_id": user_id,
    "item_id": item_id,
    "event_type": "cart",
    "event_time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
    "session_id": f"notebook-{int(time.time())}",
}
posted = call(api_url + "/v1/events", [event, {"user_id": user_id, "event_type": "cart"}])  # the 2nd lacks an item
print(f"accepted {posted['accepted']}, rejected {posted['rejected']}")
after = call(f"{api_url}/v1/users/{user_id}/recommendations?k=10")
after_table = as_table(after)
bundles = call(f"{api_url}/v1/items/{item_id}/bundles?k=3")["bundles"]
print(f"carted {item_id}; its partners: {[b['item_id'] for b in bundles]}")
after_table

# COMMAND ----------

# MAGIC %md ## The stream takes the posted event into silver

# COMMAND ----------

from shoprec.stages.stream import run_stream

silver_before = ctx.tables.read(C.SILVER_INTERACTIONS).count()
streamed = run_stream(ctx, available_now=True)
silver_after = ctx.tables.read(C.SILVER_INTERACTIONS).count()
print("\n".join(streamed.summary_lines()))
print(f"silver.interactions: {silver_before:,} -> {silver_after:,} rows")

# COMMAND ----------

if server is not None:
    server.terminate()
    server.wait(timeout=30)
