"""A real Apache Kafka 4.x broker in KRaft mode, from jars Maven resolves once into a cache.

With ``kafka.security = sasl-scram`` the broker takes SCRAM-SHA-512 logins and enforces ACLs; the stack's
own principal (``kafka.sasl_username``) is its admin, added to the KRaft metadata when the storage is
formatted. The storage remembers which mode it was formatted for (``<home>/security``).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from cli.stack.component import DEPLOY_DIR, Component, render_template
from cli.stack.process import StackError
from twinstream.config import KafkaSecurity, KafkaSettings, Settings

HEALTH_TOPIC = "twinstream.healthcheck"
#: The admin's name and password go verbatim into JAAS options and `--add-scram`: keep them unambiguous.
_ADMIN_USER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ADMIN_PASSWORD_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{12,256}$")


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


def admin_credentials(kafka: KafkaSettings) -> tuple[str, str]:
    """The local broker's admin (the stack's own principal), checked for use in its config files."""
    user, password = kafka.sasl_username, kafka.sasl_password.get_secret_value()
    if not _ADMIN_USER_RE.match(user):
        raise StackError(
            f"TWINSTREAM_KAFKA__SASL_USERNAME for the stack's broker must match {_ADMIN_USER_RE.pattern}"
        )
    if not _ADMIN_PASSWORD_RE.match(password):
        raise StackError(
            "TWINSTREAM_KAFKA__SASL_PASSWORD for the stack's broker must be 12-256 characters of "
            "A-Z a-z 0-9 . _ ~ + / = - (e.g. `openssl rand -hex 32`)"
        )
    return user, password


def storage_mode(kafka: KafkaSettings) -> str:
    """What the broker's storage is formatted for: ``plaintext`` or ``sasl-scram admin=<user>``."""
    if kafka.security is KafkaSecurity.PLAINTEXT:
        return KafkaSecurity.PLAINTEXT.value
    return f"{KafkaSecurity.SASL_SCRAM.value} admin={kafka.sasl_username}"


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker(Component):
    """Single-node KRaft broker + controller; creates the topics of docs/architecture.md on start."""

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

    @property
    def mode_file(self) -> Path:
        return self.home / "security"

    def prepare(self) -> None:
        resolve_kafka_jars(self.settings)
        data = self.home / "data"
        self.write_config(data)
        mode = storage_mode(self.settings.kafka)
        if (data / "meta.properties").exists():
            formatted = self.mode_file.read_text().strip() if self.mode_file.exists() else "plaintext"
            if formatted != mode:
                raise StackError(
                    f"the Kafka storage in {data} was formatted for {formatted!r}, the settings ask for "
                    f"{mode!r}: restore those settings, or `twinstream stack down -p kafka` and remove "
                    f"{self.home} (its topics are lost)"
                )
            return
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", new_cluster_id())
        cmd += ["-c", str(self.config_file)]
        if self.settings.kafka.security is KafkaSecurity.SASL_SCRAM:
            user, password = admin_credentials(self.settings.kafka)
            cmd += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            (self.home / "format.log").write_text(done.stdout + done.stderr)
            raise StackError(f"formatting Kafka storage failed; read {self.home / 'format.log'}")
        self.mode_file.write_text(mode + "\n")

    def write_config(self, data: Path) -> Path:
        """Render server.properties (plus the SASL/ACL part in sasl-scram), readable by this user only."""
        k = self.settings.kafka
        sasl = k.security is KafkaSecurity.SASL_SCRAM
        values: dict[str, object] = {
            "port": k.port,
            "controller_port": k.controller_port,
            "log_dirs": data,
            "partitions": k.partitions,
            "max_message_bytes": k.max_message_bytes,
            "socket_request_max_bytes": max(k.max_message_bytes + 1024 * 1024, 104857600),
            "listener": "SASL" if sasl else "PLAINTEXT",
            "protocol": "SASL_PLAINTEXT" if sasl else "PLAINTEXT",
        }
        _private(self.config_file)
        render_template(DEPLOY_DIR / "kafka" / "server.properties", self.config_file, values)
        if sasl:
            user, password = admin_credentials(k)
            overlay = _private(self.home / "sasl-scram.properties")
            values |= {"admin_user": user, "admin_password": password}
            render_template(DEPLOY_DIR / "kafka" / "sasl-scram.properties", overlay, values)
            with self.config_file.open("a") as out:
                out.write("\n" + overlay.read_text())
        return self.config_file

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file))

    def env(self) -> dict[str, str]:
        return {"LOG_DIR": str(self.home / "logs"), "KAFKA_HEAP_OPTS": os.environ.get("KAFKA_HEAP_OPTS", "")}

    def ready(self) -> bool:
        from cli.stack.kafka_admin import ensure_topics, round_trip

        ensure_topics(self.settings, {HEALTH_TOPIC: 1})
        return round_trip(self.settings.kafka.model_copy(update={"bootstrap": self.endpoint}), HEALTH_TOPIC)

    def after_ready(self) -> None:
        """Create the shared topics; tenant topics come with each tenant (`twinstream tenants add`)."""
        from cli.stack.kafka_admin import ensure_topics
        from twinstream.tenant_topics import shared_topics

        k = self.settings.kafka
        topics = (*shared_topics(k), k.enrolments_topic)
        ensure_topics(self.settings, dict.fromkeys(topics, k.partitions))


def _private(path: Path) -> Path:
    """Create ``path`` empty and readable by its owner only (it will hold the admin's password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    return path
