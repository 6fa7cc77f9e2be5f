"""shoprec stream with stream.source=kafka, against a real Kafka broker (KRaft, one node, 127.0.0.1).

The broker runs from the jars bootstrap fetched (jvm/kafka/pom.xml, ``tests.kafka_broker``);
messages are written with Spark's Kafka sink, and read by the stream through Spark's Kafka
source, as in production. Each message is one event-log record (its JSON as the value, the
user id as the key). Checked: every message is a row (kept, or quarantined with its reason:
not JSON, blank, an invalid event, a resent duplicate), a second run adds only the new
messages, a batch resent byte for byte is ingested (its copies DUPLICATE), not skipped as a
file seen before; and a ``shoprec stream`` SIGKILLed right after its first batch's silver
commit, restarted, ends with every event exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from shoprec import columns as C
from shoprec.ingest import quality as Q
from shoprec.stages.context import JobContext
from shoprec.stages.stream import kafka_batches_dir, run_stream
from shoprec.tables import faults, open_tables
from tests import kafka_broker
from tests.conftest import make_config, shoprec_command

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("broker_log")]

kafka_broker.require_or_skip()

_AT = datetime.now(UTC).replace(microsecond=0, tzinfo=None) - timedelta(days=1)


def _event(user: str, item: str, minute: int, event_type: str = "purchase", **extra: object) -> str:
    """One event-log record as its producer would send it (keys of ingest.event_log_columns)."""
    record = {
        "user_id": user,
        "item_id": item,
        "event_type": event_type,
        "event_time": (_AT + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:%S"),
        "session_id": f"s-{user}",
        "device": "mobile",
        "country": "United Kingdom",
        "price": "2.50",
        "quantity": "1",
        **extra,
    }
    return json.dumps(record)


def _config(root, broker, topic: str, *overrides: str):
    return make_config(root, *_kafka_overrides(broker, topic), *overrides)


def _kafka_overrides(broker, topic: str) -> list[str]:
    return [
        "stream.source=kafka",
        f"stream.kafka_bootstrap_servers={broker.bootstrap_servers}",
        f"stream.kafka_topic={topic}",
    ]


def _reasons(tables) -> dict[str, int]:
    rows = tables.read(C.quarantine_table("event_log")).groupBy(C.REASON).count().collect()
    return {r[C.REASON]: r["count"] for r in rows}


def _silver(tables) -> list[tuple[str, str]]:
    return sorted((r[0], r[1]) for r in tables.read(C.SILVER_INTERACTIONS).select(C.USER_ID, C.ITEM_ID).collect())


def _ids(tables) -> list[str]:
    return [r[0] for r in tables.read(C.SILVER_INTERACTIONS).select(C.INTERACTION_ID).collect()]


def test_kafka_messages_are_validated_quarantined_and_appended_once(spark, tmp_path, broker):
    topic = "events.a"
    broker.create_topic(spark, topic, 2)
    pretty = json.dumps(json.loads(_event("u3", "A3", 3)), indent=2)  # a value over several lines
    first = [
        ("u4", "this is not JSON {", 0),  # the batch file's first line: no file-level check refuses it
        ("u1", _event("u1", "A1", 1), 1),
        ("u2", _event("u2", "A2", 2), 0),
        ("u3", pretty, 1),
        ("u5", _event("u5", "A5", 5, event_type="wishlist"), 0),
        ("u6", None, 1),  # a tombstone: no value at all
    ]
    broker.produce(spark, topic, first)
    cfg = _config(tmp_path / "lakehouse", broker, topic)
    ctx = JobContext.create(cfg)
    t0 = time.perf_counter()
    report = run_stream(ctx, available_now=True)
    print(f"first kafka stream run: {time.perf_counter() - t0:.1f} s, batches {report.summary_lines()}")

    [batch] = report.batches
    assert (batch.rows_in, batch.rows_kept, batch.rows_quarantined) == (6, 3, 3)
    assert batch.offsets == f"{topic}/0:0-2, {topic}/1:0-2"
    assert batch.latency_s >= 0
    assert not os.path.exists(batch.files[0])  # its ingest committed: the batch file is gone
    assert os.listdir(kafka_batches_dir(cfg)) == []
    tables = ctx.tables
    assert _silver(tables) == [("u1", "A1"), ("u2", "A2"), ("u3", "A3")]
    assert _reasons(tables) == {Q.MALFORMED: 1, Q.INVALID_EVENT_TYPE: 1, Q.EMPTY_LINE: 1}
    quarantined = {
        r[C.REASON]: (r[C.RAW_LINE], r[C.REASON_DETAIL])
        for r in tables.read(C.quarantine_table("event_log")).select(C.REASON, C.RAW_LINE, C.REASON_DETAIL).collect()
    }
    assert quarantined[Q.MALFORMED][0] == "this is not JSON {"
    assert "wishlist" in quarantined[Q.INVALID_EVENT_TYPE][1]
    assert tables.read(C.bronze_table("event_log")).count() == 6

    # New messages: one new event and one resent. Then both again: a batch byte for byte the
    # one before it, at other offsets, so ingested (two DUPLICATE rows), not skipped as seen.
    again = [("u7", _event("u7", "A7", 7), 0), ("u1", _event("u1", "A1", 1), 1)]
    broker.produce(spark, topic, again)
    second = run_stream(ctx, available_now=True)
    broker.produce(spark, topic, again)
    third = run_stream(ctx, available_now=True)
    assert [(b.rows_in, b.rows_kept, b.rows_quarantined) for b in second.batches + third.batches] == [
        (2, 1, 1),
        (2, 0, 2),
    ]
    assert [b.offsets for b in second.batches + third.batches] == [
        f"{topic}/0:3-3, {topic}/1:3-3",
        f"{topic}/0:4-4, {topic}/1:4-4",
    ]
    assert run_stream(ctx, available_now=True).batches == []  # nothing new: nothing done
    assert _silver(tables) == [("u1", "A1"), ("u2", "A2"), ("u3", "A3"), ("u7", "A7")]
    assert len(set(_ids(tables))) == 4
    assert _reasons(tables) == {Q.MALFORMED: 1, Q.INVALID_EVENT_TYPE: 1, Q.EMPTY_LINE: 1, Q.DUPLICATE: 3}
    assert tables.read(C.bronze_table("event_log")).count() == 10
    assert tables.read(C.BRONZE_INGEST_LOG).count() == 3


def test_kafka_stream_killed_mid_batch_resumes_with_every_event_once(spark, tmp_path, broker):
    topic = "events.b"
    broker.create_topic(spark, topic, 1)
    messages = [(f"u{n}", _event(f"u{n}", f"B{n}", n), 0) for n in range(5)]
    messages.insert(2, ("bad", "{broken", 0))
    broker.produce(spark, topic, messages)
    root = tmp_path / "lakehouse"
    three = "stream.kafka_max_offsets_per_trigger=3"
    command = shoprec_command(["stream", "--available-now"], root, *_kafka_overrides(broker, topic), three)
    env = dict(os.environ, **{faults.ENV: C.SILVER_INTERACTIONS})
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    tables = open_tables(spark, str(root), "local")
    assert tables.exists(C.SILVER_INTERACTIONS) and not tables.exists(C.BRONZE_INGEST_LOG)
    assert len(os.listdir(kafka_batches_dir(_config(root, broker, topic)))) == 1  # batch 0's file, left staged

    ctx = JobContext.create(_config(root, broker, topic, three))
    restarted = run_stream(ctx, available_now=True)
    # Batch 0 again (its offsets from the offset log: the same messages), then batch 1.
    assert [(b.batch_id, b.offsets) for b in restarted.batches] == [(0, f"{topic}/0:0-2"), (1, f"{topic}/0:3-5")]
    assert [(b.rows_in, b.rows_kept, b.rows_quarantined) for b in restarted.batches] == [(3, 2, 1), (3, 3, 0)]
    assert _silver(tables) == [(f"u{n}", f"B{n}") for n in range(5)]
    assert len(set(_ids(tables))) == 5
    assert _reasons(tables) == {Q.MALFORMED: 1}
    assert tables.read(C.bronze_table("event_log")).count() == 6
    assert tables.read(C.BRONZE_INGEST_LOG).count() == 2
