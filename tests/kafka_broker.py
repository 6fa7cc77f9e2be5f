"""A real single-node Kafka broker (KRaft: broker and controller in one JVM) on 127.0.0.1.

Started from the jars bootstrap fetched (jvm/kafka/pom.xml, ``$SHOPREC_KAFKA_JARS_DIR`` or the
pointer file bootstrap leaves in the venv): free loopback ports, a ``server.properties`` and
storage formatted under the test's folder, ``java -cp "<dir>/*" kafka.Kafka`` with a small heap,
ready once a topic can be created. Topics are created, and test messages written, through the
Spark session's JVM (Spark's Kafka connector and its kafka-clients): the client the stream
itself reads with.

``KafkaBroker.start(folder)`` returns a running broker; ``stop()`` terminates it (kills it
after 10 s); ``log_tail()`` is what a failing test shows.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

JARS_DIR_ENV = "SHOPREC_KAFKA_JARS_DIR"
_JARS_POINTER = "shoprec-kafka-jars"
# CI sets this: a missing broker set fails the Kafka tests instead of skipping them.
REQUIRE_ENV = "SHOPREC_REQUIRE_KAFKA"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
"""


def jars_dir() -> str | None:
    """The broker's jar folder, or None when bootstrap could not fetch it (no Maven)."""
    folder = os.environ.get(JARS_DIR_ENV)
    if not folder:
        pointer = os.path.join(sys.prefix, _JARS_POINTER)
        if os.path.isfile(pointer):
            with open(pointer, encoding="utf-8") as fh:
                folder = fh.read().strip()
    if folder and os.path.isfile(os.path.join(folder, ".shoprec-ready")):
        return folder
    return None


def missing_reason() -> str | None:
    """Why the Kafka tests cannot run here, or None."""
    from shoprec.spark import jvm_jars

    hint = "install Maven and run scripts/bootstrap.sh"
    if jars_dir() is None:
        return (
            "no Kafka broker jars (jvm/kafka/pom.xml): bootstrap fetches them with Maven into "
            f"~/.cache/shoprec/jvm-kafka-<key>; {hint}, or set {JARS_DIR_ENV}"
        )
    if not any(os.path.basename(j).startswith("spark-sql-kafka") for j in jvm_jars()):
        return f"Spark's Kafka connector is not in the JVM set (jvm/spark/pom.xml); {hint}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class KafkaBroker:
    folder: Path
    port: int
    process: subprocess.Popen
    started_s: float  # from launching the JVM to a topic created

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "broker.log"

    @classmethod
    def start(cls, folder: Path, spark, timeout_s: float = 60.0) -> KafkaBroker:
        """Format storage, launch the broker and wait until it creates a topic."""
        jars = jars_dir()
        assert jars is not None, missing_reason()
        folder.mkdir(parents=True, exist_ok=True)
        port, controller = free_port(), free_port()
        while controller == port:
            controller = free_port()
        props = folder / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={folder / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        log4j = folder / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log=folder / "broker.log"))
        java = ["java", "-Xmx512m", "-Xms128m", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{jars}/*"]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert fmt.returncode == 0, f"kafka-storage format failed:\n{fmt.stdout}\n{fmt.stderr}"
        t0 = time.monotonic()
        out = open(folder / "broker.out", "wb")  # noqa: SIM115 (the broker's for its lifetime)
        process = subprocess.Popen([*java, "kafka.Kafka", str(props)], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        broker = cls(folder, port, process, 0.0)
        try:
            broker._wait(spark, t0 + timeout_s)
        except BaseException:
            broker.stop()
            raise
        broker.started_s = time.monotonic() - t0
        return broker

    def _wait(self, spark, deadline: float) -> None:
        while not _answers(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the Kafka broker exited ({self.process.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Kafka broker did not open port {self.port}:\n{self.log_tail()}")
            time.sleep(0.1)
        while True:  # the port opens before the broker has joined its own quorum
            try:
                self.create_topic(spark, "_ready", 1)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def create_topic(self, spark, name: str, partitions: int) -> None:
        """Create ``name`` with one replica (Kafka's AdminClient in Spark's JVM)."""
        jvm = spark.sparkContext._jvm
        props = jvm.java.util.Properties()
        props.setProperty("bootstrap.servers", self.bootstrap_servers)
        props.setProperty("request.timeout.ms", "5000")
        props.setProperty("default.api.timeout.ms", "10000")
        admin = jvm.org.apache.kafka.clients.admin.Admin.create(props)
        try:
            topic = jvm.org.apache.kafka.clients.admin.NewTopic(name, partitions, 1)
            admin.createTopics([topic]).all().get()
        finally:
            admin.close()

    def produce(self, spark, topic: str, messages: Iterable[tuple[str | None, bytes | str | None, int]]) -> None:
        """Write (key, value, partition) messages in order, through Spark's Kafka sink."""
        rows = [
            (key, value.encode() if isinstance(value, str) else value, partition) for key, value, partition in messages
        ]
        df = spark.createDataFrame(rows, "key string, value binary, partition int")
        (
            df.coalesce(1)  # one producer, so the messages of a partition keep their order
            .write.format("kafka")
            .option("kafka.bootstrap.servers", self.bootstrap_servers)
            .option("topic", topic)
            .save()
        )

    def log_tail(self, chars: int = 6000) -> str:
        parts: Sequence[Path] = [self.folder / "broker.out", self.log]
        text = ""
        for path in parts:
            if path.exists():
                text += f"--- {path}\n" + path.read_text(errors="replace")[-chars:]
        return text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# ------------------------------------------------------------------------------ for test modules
def require_or_skip() -> None:
    """At a Kafka test module's top: skip it without a broker, fail when CI requires one."""
    import pytest

    missing = missing_reason()
    if missing and os.environ.get(REQUIRE_ENV):
        raise RuntimeError(f"{REQUIRE_ENV} is set but {missing}")
    if missing:
        pytest.skip(missing, allow_module_level=True)
