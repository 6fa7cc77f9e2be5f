"""POST /v1/events with stream.source=kafka, against a real Kafka broker (KRaft, one node, 127.0.0.1).

The real ``shoprec serve`` over test_serve's hand-written lakehouse produces the good events of
a request to the topic; a confluent_kafka Consumer reads the topic back (each event once, keyed
by its user id, its value the line a landed file would hold); the next GET shows the session;
then ``run_stream`` reads the topic as ``shoprec stream --source kafka`` does and lands exactly
those events in silver. The broker unreachable (503) is in test_serve: it needs no broker."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from shoprec import columns as C
from shoprec.stages.context import JobContext
from shoprec.stages.stream import run_stream
from tests import kafka_broker
from tests.conftest import make_config, shoprec_command
from tests.integration.test_serve import SETTINGS, _event, _items, write_lakehouse
from tests.serving import Server, call

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("broker_log")]

kafka_broker.require_or_skip()

TOPIC = "api.events"


def _kafka(broker) -> list[str]:
    return [
        "stream.source=kafka",
        f"stream.kafka_bootstrap_servers={broker.bootstrap_servers}",
        f"stream.kafka_topic={TOPIC}",
    ]


def _topic_messages(broker, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every message of the topic, (partition, key, value) in partition and offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: list[tuple[int, int, bytes | None, bytes]] = []
        deadline = time.monotonic() + 30
        while len(got) < total and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                got.append((message.partition(), message.offset(), message.key(), message.value()))
    finally:
        consumer.close()
    assert len(got) == total, (total, got)
    return [(p, k, v) for p, _, k, v in sorted(got)]


def _line(event: dict) -> bytes:
    """The bytes of the event's line in a landed .jsonl file."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def test_posted_events_are_produced_once_keyed_by_user_and_the_stream_lands_them(spark, broker, tmp_path):
    broker.create_topic(spark, TOPIC, 2)
    lakehouse = tmp_path / "lakehouse"
    write_lakehouse(lakehouse)
    cart = _event(user_id="u9", item_id="I5", event_type="cart")
    purchase = _event(user_id="u9", item_id="I8", event_type="purchase", price=2.5, quantity=3)
    anonymous = _event(user_id=None, session_id="s-anon", item_id="I1", event_type="view", country="Côte d'Ivoire")
    posted = [cart, purchase, _event(event_type="like"), anonymous]
    settings = (*SETTINGS, *_kafka(broker), "serve.kafka_timeout_s=20")
    with Server(shoprec_command(["serve"], lakehouse, *settings), tmp_path / "serve.log") as s:
        s.wait()
        t0 = time.perf_counter()
        status, body = call(s.url + "/v1/events", body=posted)
        print(f"POST of 4 events (3 produced, acks=all): {time.perf_counter() - t0:.3f} s")
        _, after = call(s.url + "/v1/users/u9/recommendations?k=5&country=Narnia")
        _, metrics = call(s.url + "/metrics")
    assert status == 422 and body["accepted"] == 3 and body["landed"] is True, body
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(2, "INVALID_EVENT_TYPE")]
    assert 'shoprec_kafka_events_total{outcome="delivered"} 3' in metrics

    # Each good event once: keyed by its user (null without one), u9's two on one partition in
    # the order posted, each value the line a landed file would hold.
    messages = _topic_messages(broker, TOPIC)
    expected = [(b"u9", _line(cart)), (b"u9", _line(purchase)), (None, _line(anonymous))]
    assert sorted(((k, v) for _, k, v in messages), key=lambda m: m[1]) == sorted(expected, key=lambda m: m[1])
    assert [v for _, k, v in messages if k == b"u9"] == [_line(cart), _line(purchase)]
    assert len({p for p, k, _ in messages if k == b"u9"}) == 1

    # The session, on the very next request: the carted item's partners lead, the bought one last.
    assert after["served_from"] == "cold_start" and _items(after) == ["I6", "I7", "I1", "I8"]
    assert after["items"][0]["reason"] == "goes with ITEM I5 (in your basket)"

    # shoprec stream --source kafka --available-now: exactly those three in silver.
    cfg = make_config(tmp_path / "streamed", *_kafka(broker), "stream.live_lists=false")
    ctx = JobContext.create(cfg)
    t0 = time.perf_counter()
    report = run_stream(ctx, available_now=True)
    print(f"stream run over the topic: {time.perf_counter() - t0:.1f} s")
    assert sum(b.rows_in for b in report.batches) == 3 and sum(b.rows_kept for b in report.batches) == 3
    silver = ctx.tables.read(C.SILVER_INTERACTIONS).select(C.USER_ID, C.ITEM_ID).collect()
    assert sorted((r[0] or "", r[1]) for r in silver) == [("", "I1"), ("u9", "I5"), ("u9", "I8")]
