"""docker-compose.yml cannot run here (no Docker engine): check its structure against repo and Settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from twinstream.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]


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
    command = " ".join(SERVICES["kafka-init"]["command"])
    k = Settings().kafka
    for topic in (k.images_topic, k.results_topic, k.dlq_topic):
        assert topic in command
    assert f"--partitions {k.partitions}" in command


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
    used = {SERVICES["ingest"]["command"][0], SERVICES["trainer"]["command"][0]}
    used |= set(re.findall(r"twinstream (\w+)", " ".join(SERVICES["ray-head"]["command"])))
    missing = [c for c in used if c not in cli.commands]  # type: ignore[attr-defined]
    assert not missing, f"compose runs commands the CLI lacks: {missing}"


def test_compose_redis_bounds_its_memory_as_the_local_stack_does():
    command = SERVICES["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    defaults = Settings().redis
    assert flags["--maxmemory"] == defaults.maxmemory
    assert flags["--maxmemory-policy"] == defaults.maxmemory_policy == "volatile-ttl"
