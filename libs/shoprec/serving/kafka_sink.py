"""stream.source=kafka: ``POST /v1/events`` produces each good event to the stream's topic.

One message per event, as the stream reads it (stages/stream.py): the value is the event's
JSON, byte for byte the line a landed .jsonl file would hold (``events.event_json``); the key
is the user id (null without one), so one user's events stay in order on one partition. The
first topic of ``stream.kafka_topic`` is written when it names several.

Durable before the answer: ``acks=all`` and idempotence, and a request waits for the delivery
report of every one of its events, at most ``serve.kafka_timeout_s`` (also the producer's
``message.timeout.ms``, so an event not acked by then is reported failed, not sent later
behind a 503). ``send`` returns what was delivered; the app answers 503 unless all were.

One producer per server process (librdkafka, thread-safe), created on the first POST so that
a server whose brokers are down still serves lists, flushed and closed at shutdown. Its
settings: the guarantee's own, the stream's TLS/SASL settings that librdkafka reads under the
same name, then ``serve.kafka_producer_options``. Secrets never reach a log line or an
answer: every text from librdkafka has the secret-named settings' values replaced by ***.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from shoprec.config import MASK, Config, is_secret_name, mask_text
from shoprec.serving import events as EV

log = logging.getLogger(__name__)

# stream.kafka_options (the Java client's names) that librdkafka reads with the same meaning.
# sasl.jaas.config and ssl.truststore.* have no librdkafka form: their equivalents
# (sasl.username, sasl.password, ssl.ca.location) go in serve.kafka_producer_options.
_SHARED = frozenset({"security.protocol", "sasl.mechanism", "sasl.kerberos.service.name"})
# Java's keystore is JKS unless ssl.keystore.type says PKCS12, the one librdkafka reads.
_PKCS12_KEYSTORE = frozenset({"ssl.keystore.location", "ssl.keystore.password"})
_HOSTNAME_CHECK = "ssl.endpoint.identification.algorithm"  # Java: "" turns it off, librdkafka: none
# librdkafka times messages out on a timer of about a second: a report can come that much
# after message.timeout.ms, so a request polls this much longer.
_REPORT_MARGIN_S = 2.0


def first_topic(cfg: Config) -> str:
    return cfg.stream.kafka_topic.split(",")[0].strip()


def carried_options(stream_options: Mapping[str, str]) -> dict[str, str]:
    """The stream's consumer settings the producer takes over, by librdkafka's names."""
    options = {name.removeprefix("kafka."): value for name, value in stream_options.items()}
    out = {name: value for name, value in options.items() if name in _SHARED}
    if options.get("ssl.keystore.type", "").upper() == "PKCS12":
        out.update({name: value for name, value in options.items() if name in _PKCS12_KEYSTORE})
    if _HOSTNAME_CHECK in options:
        out[_HOSTNAME_CHECK] = options[_HOSTNAME_CHECK] or "none"
    return out


def producer_settings(cfg: Config) -> dict[str, Any]:
    """librdkafka settings of the API's producer (callbacks and logger not included). The
    guarantee's settings come last: serve.kafka_producer_options cannot weaken them."""
    return {
        "bootstrap.servers": cfg.stream.kafka_bootstrap_servers,
        "client.id": "shoprec-serve",
        **carried_options(cfg.stream.kafka_options),
        **cfg.serve.kafka_producer_options,
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": max(1, round(cfg.serve.kafka_timeout_s * 1000)),
    }


def _secret_values(settings: Mapping[str, Any]) -> list[str]:
    values = [str(v) for k, v in settings.items() if is_secret_name(k) and v not in (None, "")]
    return sorted(values, key=len, reverse=True)  # a value inside another is masked with it


@dataclass(frozen=True)
class Delivery:
    """What the broker acked of one request's events."""

    sent: int
    delivered: int
    error: str | None  # the first failure (scrubbed), None when every event was acked

    @property
    def ok(self) -> bool:
        return self.delivered == self.sent

    @property
    def failed(self) -> int:
        return self.sent - self.delivered


class _Reports:
    """One request's delivery reports; librdkafka calls ``done`` from whichever thread polls."""

    def __init__(self, sent: int):
        self.sent, self.delivered, self.failed = sent, 0, 0
        self.error: str | None = None
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        with self._lock:
            return self.sent - self.delivered - self.failed

    def done(self, err: KafkaError | None, _message: object) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                self.error = self.error or err.str()

    def refused(self, n: int, reason: str) -> None:
        """``n`` events the producer would not queue (they will get no report)."""
        with self._lock:
            self.failed += n
            self.error = self.error or reason


class KafkaSink:
    """The process's producer to ``first_topic(cfg)`` (see the module's docstring)."""

    def __init__(self, cfg: Config):
        self.topic = first_topic(cfg)
        self.servers = cfg.stream.kafka_bootstrap_servers
        self.timeout_s = cfg.serve.kafka_timeout_s
        self._settings = producer_settings(cfg)
        self._secrets = _secret_values(self._settings)
        carried = carried_options(cfg.stream.kafka_options)
        self._uncarried = sorted(n for n in cfg.stream.kafka_options if n.removeprefix("kafka.") not in carried)
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._fatal = False
        # The newest connection or broker error (monotonic time, scrubbed text): the why of a timeout.
        self._broker_error: tuple[float, str] | None = None

    def scrub(self, text: str) -> str:
        """``text`` with the producer's secret values and any URI credentials masked."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return mask_text(text)

    def send(self, accepted: list[EV.Accepted]) -> Delivery:
        """Produce the events in order and wait for their reports (blocks: call it off the event loop)."""
        if not accepted:
            return Delivery(0, 0, None)
        started = time.monotonic()
        try:
            producer = self._get()
        except KafkaException as exc:  # a setting librdkafka refuses
            return Delivery(len(accepted), 0, self.scrub(f"the producer could not be created: {_reason(exc)}"))
        reports = _Reports(len(accepted))
        self._produce(producer, accepted, reports)
        deadline = started + self.timeout_s + _REPORT_MARGIN_S
        while reports.pending and (left := deadline - time.monotonic()) > 0:
            producer.poll(min(0.1, left))
        return Delivery(len(accepted), reports.delivered, self._why(reports, started))

    def _produce(self, producer: Producer, accepted: list[EV.Accepted], reports: _Reports) -> None:
        for n, a in enumerate(accepted):
            try:
                producer.produce(
                    self.topic,
                    value=EV.event_json(a).encode("utf-8"),
                    key=a.user_id.encode("utf-8") if a.user_id is not None else None,
                    on_delivery=reports.done,
                )
            except (BufferError, KafkaException) as exc:  # the local queue is full, or the producer failed
                reports.refused(len(accepted) - n, f"not queued: {_reason(exc)}")
                return

    def _why(self, reports: _Reports, started: float) -> str | None:
        """The one-line reason a request's events were not all acked, or None."""
        if not reports.pending and reports.error is None:
            return None
        why = reports.error or f"no delivery report within {self.timeout_s:g} s"
        recent = self._broker_error
        if recent is not None and recent[0] >= started:
            why = f"{why} (last error: {recent[1]})"
        return self.scrub(why)

    def _get(self) -> Producer:
        with self._lock:
            if self._producer is None or self._fatal:
                self._producer, self._fatal = self._create(), False
            return self._producer

    def _create(self) -> Producer:
        if self._uncarried:
            # A TLS or SASL setting left out can be why the producer cannot connect: say so louder.
            security = any(n.removeprefix("kafka.").startswith(("ssl.", "sasl.")) for n in self._uncarried)
            log.log(
                logging.WARNING if security else logging.INFO,
                "stream.kafka_options not given to the API's producer (no librdkafka setting of that name): %s; "
                "set what it needs in serve.kafka_producer_options (docs/serving.md)",
                ", ".join(self._uncarried),
            )
        producer = Producer({**self._settings, "error_cb": self._on_error, "logger": _LibrdkafkaLog(self)})
        log.info("Kafka producer for topic %r at %s (acks=all, idempotent)", self.topic, self.scrub(self.servers))
        return producer

    def _on_error(self, err: KafkaError) -> None:
        # librdkafka logs the error itself (through _LibrdkafkaLog): only remembered here.
        if err.code() != KafkaError._ALL_BROKERS_DOWN:  # the connect error before it says more
            self._broker_error = (time.monotonic(), self.scrub(err.str()))
        if err.fatal():  # unusable (its idempotence state is broken): the next request makes a new one
            self._fatal = True
            log.error("Kafka producer failed for good, a new one on the next request: %s", self.scrub(err.str()))

    def close(self) -> None:
        """Flush what is queued (at most the timeout) and close the producer: at shutdown."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is None:
            return
        left = producer.flush(self.timeout_s)
        if left:
            log.warning("Kafka producer closed with %d event(s) the broker has not acked", left)
        producer.close()


def _reason(exc: Exception) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


class _LibrdkafkaLog:
    """The producer's ``logger``: librdkafka's log lines, scrubbed, through this module's logger
    (it calls ``log(level, format, *args)``)."""

    def __init__(self, sink: KafkaSink):
        self._sink = sink

    def log(self, level: int, msg: str, *args: object) -> None:
        text = msg % args if args else msg
        log.log(level, "librdkafka: %s", self._sink.scrub(text))
