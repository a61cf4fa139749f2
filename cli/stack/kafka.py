"""A real Apache Kafka 4.x broker in KRaft mode, from jars Maven resolves once into a cache."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from cli.stack.component import DEPLOY_DIR, Component, render_template
from cli.stack.process import StackError
from twinstream.config import Settings

HEALTH_TOPIC = "twinstream.healthcheck"


def kafka_libs(settings: Settings) -> Path:
    """Where the broker's jars live (beside the Maven cache, shared by every clone)."""
    return settings.paths.maven_repo.parent / f"kafka-{settings.kafka.version}" / "libs"


def resolve_kafka_jars(settings: Settings) -> Path:
    """Let Maven copy kafka_2.13 and its runtime dependencies into the cache (once; reused)."""
    libs = kafka_libs(settings)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not on PATH: it resolves the Kafka broker jars; install maven")
    log = libs.parent / "maven.log"
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-B", "-q", "-f", str(DEPLOY_DIR / "kafka" / "pom.xml"),
        f"-Dmaven.repo.local={settings.paths.maven_repo}",
        f"-Dkafka.version={settings.kafka.version}",
        f"-Dkafka.libdir={libs}",
        "dependency:copy-dependencies",
    ]  # fmt: skip
    with log.open("wb") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(f"Maven could not resolve the Kafka {settings.kafka.version} jars; read {log}")
    marker.write_text(settings.kafka.version + "\n")
    return libs


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker(Component):
    """Single-node KRaft broker + controller; creates the topics of DESIGN.md on start."""

    name = "kafka"
    start_timeout_s = 90.0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.settings.kafka.port}"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def missing(self) -> str:
        return "" if shutil.which("java") else "java (17+) is not on PATH: install a JDK"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.settings.kafka.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'kafka' / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            f"{kafka_libs(self.settings)}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        resolve_kafka_jars(self.settings)
        k = self.settings.kafka
        data = self.home / "data"
        render_template(
            DEPLOY_DIR / "kafka" / "server.properties",
            self.config_file,
            {
                "port": k.port,
                "controller_port": k.controller_port,
                "log_dirs": data,
                "partitions": k.partitions,
                "max_message_bytes": k.max_message_bytes,
                "socket_request_max_bytes": max(k.max_message_bytes + 1024 * 1024, 104857600),
            },
        )
        if not (data / "meta.properties").exists():
            cmd = self._java("kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c")
            done = subprocess.run([*cmd, str(self.config_file)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                (self.home / "format.log").write_text(done.stdout + done.stderr)
                raise StackError(f"formatting Kafka storage failed; read {self.home / 'format.log'}")

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file))

    def env(self) -> dict[str, str]:
        return {"LOG_DIR": str(self.home / "logs"), "KAFKA_HEAP_OPTS": os.environ.get("KAFKA_HEAP_OPTS", "")}

    def ready(self) -> bool:
        from cli.stack.kafka_admin import ensure_topics, round_trip

        ensure_topics(self.settings, {HEALTH_TOPIC: 1})
        return round_trip(self.endpoint, HEALTH_TOPIC)

    def after_ready(self) -> None:
        from cli.stack.kafka_admin import ensure_topics

        k = self.settings.kafka
        topics = (k.images_topic, k.results_topic, k.dlq_topic, k.enrolments_topic)
        ensure_topics(self.settings, dict.fromkeys(topics, k.partitions))
