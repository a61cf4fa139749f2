"""docker-compose.yml cannot run here (no Docker engine): check its structure against repo and Settings.

Also that it is secure as shipped (docs/security.md): only the API and Grafana published, a login on every
service with its secret from .env, and docker-compose.insecure.yml the only place that turns that off.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from twinstream.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict = COMPOSE["services"]
INSECURE_PATH = REPO / "docker-compose.insecure.yml"
INSECURE: dict = yaml.safe_load(INSECURE_PATH.read_text())["services"]
#: `${VAR:?message}`: compose refuses to start while VAR is unset or empty.
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")


def _env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def _setting_exists(name: str) -> bool:
    """TWINSTREAM_GROUP__FIELD (or a top-level TWINSTREAM_FIELD) names a real Settings field."""
    parts = name.removeprefix("TWINSTREAM_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def test_the_expected_services_are_defined():
    for name in ("kafka", "redis", "milvus", "etcd", "minio", "prometheus", "grafana", "ray-head", "ingest"):
        assert name in SERVICES, name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_or_build_and_valid_dependencies(name: str):
    service = SERVICES[name]
    assert "image" in service or "build" in service
    deps = service.get("depends_on") or []
    for dep in deps if isinstance(deps, list) else deps.keys():
        assert dep in SERVICES, f"{name} depends on unknown service {dep}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bind_mounts_point_at_files_in_the_repo(name: str):
    for volume in SERVICES[name].get("volumes") or []:
        source = volume.split(":")[0]
        if source.startswith("./") and source != "./models":  # ./models is written by training
            assert (REPO / source).exists(), f"{name} mounts missing {source}"
        elif not source.startswith("./"):
            assert source in (COMPOSE.get("volumes") or {}), f"{name} uses undeclared volume {source}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_twinstream_env_vars_are_real_settings(name: str):
    for key in _env_of(SERVICES[name]):
        if key.startswith("TWINSTREAM_"):
            assert _setting_exists(key), f"{name}: {key} is not a Settings field"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_ports_are_well_formed(name: str):
    for mapping in SERVICES[name].get("ports") or []:
        assert re.fullmatch(r"\d+(-\d+)?:\d+(-\d+)?", str(mapping)), mapping


def test_topics_created_by_compose_match_the_settings():
    # Secure: tenant topics come with each tenant; kafka-init creates the DLQ and the ingest login.
    assert "twinstream tenants ingest-user" in " ".join(SERVICES["kafka-init"]["command"])
    command = " ".join(INSECURE["kafka-init"]["command"])  # header binding: the shared topics
    k = Settings().kafka
    for topic in (k.images_topic, k.results_topic, k.dlq_topic):
        assert topic in command
    assert f"--partitions {k.partitions}" in command


def test_compose_creates_every_topic_with_the_configs_of_the_settings():
    # Secure: `twinstream` creates them, with KafkaSettings.configs_of(); the open override states them.
    secure = " ".join(SERVICES["kafka-init"]["command"])
    assert "twinstream tenants ingest-user" in secure and "twinstream models init-log" in secure
    command = " ".join(INSECURE["kafka-init"]["command"])
    for topic, configs in Settings().kafka.topic_configs().items():
        created = re.search(rf"topic {re.escape(topic)}(?: --config [^ &]+)*", command)
        assert created, f"compose does not create {topic}"
        stated = dict(c.split("=", 1) for c in re.findall(r"--config ([^ &]+)", created.group(0)))
        stated["max.message.bytes"] = re.search(r"max\.message\.bytes=(\d+)", command).group(1)  # type: ignore[union-attr]
        assert stated == configs, topic


def test_prometheus_scrapes_compose_services():
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    hosts = {
        target.split(":")[0]
        for job in prom["scrape_configs"]
        for sc in job.get("static_configs", [])
        for target in sc["targets"]
    }
    assert hosts - {"localhost"} <= set(SERVICES)


def test_the_cli_commands_compose_runs_exist():
    from typer.main import get_command

    from cli.main import app

    cli = get_command(app)
    used = {SERVICES[name]["command"][0] for name in ("trainer", "kafka-admin")}
    for name in ("ray-head", "kafka-init", "ingest"):
        used |= set(re.findall(r"twinstream (\w+)", " ".join(SERVICES[name]["command"])))
    missing = [c for c in used if c not in cli.commands]  # type: ignore[attr-defined]
    assert not missing, f"compose runs commands the CLI lacks: {missing}"


def test_the_ingest_container_joins_the_cluster_as_a_node_without_cpus_before_its_workers_start():
    command = " ".join(SERVICES["ingest"]["command"])
    joins = command.index("ray start --address ray-head:6379 --num-cpus 0")
    assert joins < command.index("twinstream ingest")


def test_only_the_api_and_grafana_are_published():
    published = {name: service["ports"] for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"ray-head": ["8000:8000"], "grafana": ["3000:3000"]}


def test_every_secret_is_required_from_dot_env_and_listed_in_the_example():
    wanted = set(REQUIRED.findall(COMPOSE_TEXT))
    assert {"RAY_AUTH_TOKEN", "REDIS_PASSWORD", "KAFKA_ADMIN_PASSWORD", "KAFKA_INGEST_PASSWORD"} <= wanted
    assert {"MILVUS_ROOT_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "TWINSTREAM_SERVE__API_KEYS"} <= wanted
    every_reference = set(re.findall(r"\$\{(\w+)", COMPOSE_TEXT))
    assert every_reference == wanted, f"secrets with a silent default: {every_reference - wanted}"
    example = (REPO / ".env.example").read_text()
    assert all(re.search(rf"^#? ?{name}=", example, re.MULTILINE) for name in wanted), example
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_ray_requires_its_token_and_keeps_the_job_api_inside():
    for name in ("ray-head", "ingest", "trainer"):
        env = _env_of(SERVICES[name])
        assert env["RAY_AUTH_MODE"] == "token", name
        assert REQUIRED.fullmatch(env["RAY_AUTH_TOKEN"]), name
    command = " ".join(SERVICES["ray-head"]["command"])
    assert "--dashboard-host 127.0.0.1" in command
    assert not any("8265" in str(port) for port in SERVICES["ray-head"]["ports"])


def test_the_head_serves_http_through_haproxy_as_the_local_stack_does():
    from cli.stack.parts import SERVE_FAST_INGRESS_ENV

    command = " ".join(SERVICES["ray-head"]["command"])
    head_start = command[: command.index("ray start")]
    for name, value in SERVE_FAST_INGRESS_ENV.items():
        assert f"{name}={value}" in head_start, name  # on the head only: ingest workers use sync handles
    for name in ("ingest", "trainer"):
        assert not set(SERVE_FAST_INGRESS_ENV) & set(_env_of(SERVICES[name])), name


def test_the_http_api_requires_keys():
    assert REQUIRED.fullmatch(_env_of(SERVICES["ray-head"])["TWINSTREAM_SERVE__API_KEYS"])


def test_redis_requires_a_password_that_the_url_carries():
    command = SERVICES["redis"]["command"]
    assert REQUIRED.fullmatch(command[command.index("--requirepass") + 1])
    assert _env_of(SERVICES["ingest"])["TWINSTREAM_REDIS__URL"].startswith("redis://:${REDIS_PASSWORD:?")


def test_kafka_takes_scram_logins_and_binds_tenants_to_topics():
    assert _env_of(SERVICES["kafka"])["KAFKA_SECURITY"] == "sasl-scram"
    assert REQUIRED.fullmatch(_env_of(SERVICES["kafka"])["KAFKA_ADMIN_PASSWORD"])
    for name, user in (("ingest", "twinstream-ingest"), ("kafka-init", "admin"), ("kafka-admin", "admin")):
        env = _env_of(SERVICES[name])
        assert env["TWINSTREAM_KAFKA__SECURITY"] == "sasl-scram", name
        assert env["TWINSTREAM_KAFKA__TENANT_BINDING"] == "topic", name
        assert env["TWINSTREAM_KAFKA__SASL_USERNAME"] == user, name
        assert REQUIRED.fullmatch(env["TWINSTREAM_KAFKA__SASL_PASSWORD"]), name


def test_milvus_requires_a_login_and_twinstream_sends_its_token():
    env = _env_of(SERVICES["milvus"])
    assert env["COMMON_SECURITY_AUTHORIZATIONENABLED"] == "true"
    assert REQUIRED.fullmatch(env["COMMON_SECURITY_DEFAULTROOTPASSWORD"])
    assert _env_of(SERVICES["ray-head"])["TWINSTREAM_MILVUS__TOKEN"].startswith(
        "root:${MILVUS_ROOT_PASSWORD:?"
    )
    assert "minioadmin" not in COMPOSE_TEXT


def test_prometheus_cannot_be_reloaded_or_shut_down_over_http():
    assert not any("lifecycle" in part for part in SERVICES["prometheus"]["command"])


def test_grafana_has_no_anonymous_users_and_its_admin_password_comes_from_env():
    env = _env_of(SERVICES["grafana"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert REQUIRED.fullmatch(env["GF_SECURITY_ADMIN_PASSWORD"])


#: What turns authentication off, as it would be written in a compose file.
AUTH_OFF = (
    re.compile(r"RAY_AUTH_MODE:\s*disabled"),
    re.compile(r"--web\.enable-lifecycle"),
    re.compile(r"GF_AUTH_ANONYMOUS_ENABLED:\s*\"?true"),
    re.compile(r"KAFKA_SECURITY:\s*plaintext"),
    re.compile(r"TWINSTREAM_KAFKA__SECURITY:\s*plaintext"),
    re.compile(r"COMMON_SECURITY_AUTHORIZATIONENABLED:\s*\"?false"),
    re.compile(r"TWINSTREAM_SERVE__API_KEYS:\s*\"\{\}\""),
    re.compile(r"--dashboard-host 0\.0\.0\.0"),
)


def test_the_insecure_override_is_the_only_place_authentication_is_turned_off():
    override = INSECURE_PATH.read_text()
    assert all(marker.search(override) for marker in AUTH_OFF)
    shipped = [
        REPO / "Dockerfile",
        REPO / ".env.example",
        *REPO.glob("*.yml"),
        *(REPO / "deploy").rglob("*.y*ml"),
    ]
    for path in shipped:
        if path != INSECURE_PATH:
            text = path.read_text()
            assert not [m.pattern for m in AUTH_OFF if m.search(text)], path
    assert INSECURE["ray-head"]["ports"] == ["8265:8265"]
    assert set(INSECURE) <= set(SERVICES), "the override only changes services the base defines"


def test_the_image_defaults_to_ray_token_auth_and_exposes_the_api_only():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ENV .*RAY_AUTH_MODE=token", dockerfile, re.MULTILINE)
    assert re.findall(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE) == ["8000"]


BROKER_SCRIPT = REPO / "deploy" / "kafka" / "compose-broker.sh"


def _run_broker_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run compose's broker script with stub Kafka tools that record what they are given."""
    home, conf = tmp_path / "kafka", tmp_path / "conf"
    (home / "bin").mkdir(parents=True)
    for tool in ("kafka-storage.sh", "kafka-server-start.sh"):
        stub = home / "bin" / tool
        record = f'echo "$@" >> {tmp_path}/{tool}.args'
        stub.write_text(f"#!/bin/bash\nif [[ $1 == random-uuid ]]; then echo id; else {record}; fi\n")
        stub.chmod(0o755)
    full_env = {"PATH": "/usr/bin:/bin", "KAFKA_HOME": str(home), "KAFKA_CONF_DIR": str(conf),
                "KAFKA_DATA_DIR": str(tmp_path / "data"), **env}  # fmt: skip
    done = subprocess.run(
        ["bash", str(BROKER_SCRIPT)], env=full_env, capture_output=True, text=True, check=False
    )
    return done, conf


def test_composes_broker_takes_scram_logins_enforces_acls_and_adds_its_admin(tmp_path: Path):
    done, conf = _run_broker_script(tmp_path, KAFKA_ADMIN_PASSWORD="0123456789abcdef")
    assert done.returncode == 0, done.stderr
    config = dict(line.split("=", 1) for line in (conf / "server.properties").read_text().splitlines())
    assert config["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,SASL:SASL_PLAINTEXT"
    assert config["listeners"] == "SASL://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093"
    assert config["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert config["super.users"] == "User:admin"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert oct((conf / "server.properties").stat().st_mode & 0o777) == "0o600"
    formatted = (tmp_path / "kafka-storage.sh.args").read_text()
    assert "--add-scram SCRAM-SHA-512=[name=admin,password=0123456789abcdef]" in formatted
    assert "admin.properties" in SERVICES["kafka"]["healthcheck"]["test"][1]


@pytest.mark.parametrize("password", ["", "short", "has,comma-and]bracket"])
def test_composes_broker_refuses_to_start_without_a_usable_admin_password(tmp_path: Path, password: str):
    done, _ = _run_broker_script(tmp_path, KAFKA_ADMIN_PASSWORD=password)
    assert done.returncode != 0
    assert "KAFKA_ADMIN_PASSWORD" in done.stderr
    assert not (tmp_path / "kafka-server-start.sh.args").exists()


def test_composes_broker_without_authentication_only_when_asked(tmp_path: Path):
    done, conf = _run_broker_script(
        tmp_path, KAFKA_SECURITY="plaintext", KAFKA_EXTERNAL_ADVERTISED="localhost:19092"
    )
    assert done.returncode == 0, done.stderr
    text = (conf / "server.properties").read_text()
    assert (
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT" in text
    )
    assert "authorizer.class.name" not in text


def test_compose_redis_bounds_its_memory_as_the_local_stack_does():
    command = SERVICES["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    defaults = Settings().redis
    assert flags["--maxmemory"] == defaults.maxmemory
    assert flags["--maxmemory-policy"] == defaults.maxmemory_policy == "volatile-ttl"
