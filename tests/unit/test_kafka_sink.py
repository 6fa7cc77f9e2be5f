"""The API's Kafka producer settings: what comes over from stream.kafka_options (the Java
client's names) to librdkafka, what serve.kafka_producer_options may not weaken, and the
scrubbing of secrets out of any text the producer reports. The producing itself is tested
against a real broker (tests/integration/test_serve_kafka.py, test_serve.py)."""

from __future__ import annotations

from shoprec.serving.kafka_sink import KafkaSink, carried_options, first_topic, producer_settings
from tests.conftest import make_config


def test_only_settings_librdkafka_reads_by_the_same_name_come_over():
    java = {
        "kafka.security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'ScramLoginModule required username="a" password="p";',
        "ssl.truststore.location": "/etc/kafka/truststore.jks",
        "ssl.truststore.password": "tp",
        "ssl.keystore.location": "/etc/kafka/client.jks",
        "ssl.endpoint.identification.algorithm": "",
        "fetch.max.bytes": "1048576",
    }
    assert carried_options(java) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "ssl.endpoint.identification.algorithm": "none",  # Java's "" turns the check off
    }
    pkcs12 = {"ssl.keystore.type": "PKCS12", "ssl.keystore.location": "/k.p12", "ssl.keystore.password": "kp"}
    assert carried_options(pkcs12) == {"ssl.keystore.location": "/k.p12", "ssl.keystore.password": "kp"}


def test_producer_options_win_over_carried_ones_but_not_over_the_guarantee(tmp_path):
    cfg = make_config(
        tmp_path,
        "stream.kafka_topic=events.a, events.b",
        "stream.kafka_bootstrap_servers=k1:9093,k2:9093",
        "stream.kafka_options.security.protocol=SASL_PLAINTEXT",
        "serve.kafka_producer_options.security.protocol=SASL_SSL",
        "serve.kafka_producer_options.acks=1",
        "serve.kafka_producer_options.enable.idempotence=false",
        "serve.kafka_timeout_s=2.5",
    )
    settings = producer_settings(cfg)
    assert first_topic(cfg) == "events.a"
    assert settings["bootstrap.servers"] == "k1:9093,k2:9093" and settings["security.protocol"] == "SASL_SSL"
    assert (settings["acks"], settings["enable.idempotence"], settings["message.timeout.ms"]) == ("all", True, 2500)


def test_reported_texts_have_the_secret_values_masked(tmp_path):
    cfg = make_config(
        tmp_path,
        "serve.kafka_producer_options.sasl.username=api",
        "serve.kafka_producer_options.sasl.password=s3cr3t-pw",
        "stream.kafka_bootstrap_servers=https://u:tok@k1:9093",
    )
    sink = KafkaSink(cfg)
    assert sink.scrub("auth failed for api with s3cr3t-pw at https://u:tok@k1:9093") == (
        "auth failed for api with *** at https://u:***@k1:9093"
    )
