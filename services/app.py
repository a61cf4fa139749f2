"""Composition of the Serve application and deploying it to Ray.

The app is one deployment, `PIPELINE_DEPLOYMENT`: a FastAPI ingress whose ``process`` and
``process_prepared`` methods are the stream's entry, holding the towers of the model versions it is
deployed with (in process, so one image's answer costs its forward pass and a gallery lookup, not a
second Ray hop), the Milvus galleries and the Redis clients. Replicas, CPUs, threads, GPUs, HTTP batching
and autoscaling come from `ServeSettings`. Ingest workers get the pipeline with
``serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=settings.serve.app_name)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve.deployment import Application

from services.api.deployment import PipelineDeployment
from services.api.served import live_key
from services.deployments import PIPELINE_DEPLOYMENT
from services.results.redis_client import redis_client
from twinstream.config import Settings
from twinstream.memory import MALLOC_ENV
from twinstream.model.artifact import MANIFEST_FILE, Manifest, load_artifact

__all__ = ["PIPELINE_DEPLOYMENT", "base_url", "build_app", "deploy", "deploy_versions"]


def _options(settings: Settings) -> dict[str, Any]:
    s = settings.serve
    env = {**MALLOC_ENV, "OMP_NUM_THREADS": str(s.threads_per_replica)}
    actor: dict[str, Any] = {"num_cpus": s.cpus_per_replica, "runtime_env": {"env_vars": env}}
    if s.gpus_per_replica:
        actor["num_gpus"] = s.gpus_per_replica
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": s.max_ongoing_requests,
        "user_config": {"max_batch_size": s.max_batch_size, "batch_wait_timeout_s": s.batch_wait_timeout_s},
    }
    if s.autoscaling:
        options["autoscaling_config"] = dict(s.autoscaling)
    else:
        options["num_replicas"] = s.replicas
    return options


def _dirs(model_dirs: Path | str | Sequence[Path | str]) -> list[str]:
    dirs = [model_dirs] if isinstance(model_dirs, str | Path) else list(model_dirs)
    if not dirs:
        raise ValueError("deploy at least one model artifact")
    return [str(Path(d).resolve()) for d in dirs]


def build_app(settings: Settings, model_dirs: Path | str | Sequence[Path | str]) -> Application:
    """The Serve application for one or more model artifacts (each validated here, before deploying).

    Raises:
        twinstream.model.artifact.ArtifactError: If an artifact is missing, malformed or tampered with.
    """
    dirs = _dirs(model_dirs)
    for root in dirs:
        load_artifact(root)  # fail in the caller, not in a replica restart loop
    return PipelineDeployment.options(**_options(settings)).bind(settings, dirs)  # type: ignore[attr-defined]


def base_url(settings: Settings) -> str:
    """The HTTP API's base URL (no trailing slash)."""
    s = settings.serve
    return f"http://{s.http_host}:{s.http_port}{s.route_prefix.rstrip('/')}"


def deploy(
    settings: Settings, model_dirs: Path | str | Sequence[Path | str], *, live: str | None = None
) -> str:
    """Deploy (or update in place) the app on the Ray cluster and return the HTTP API's URL.

    Connects to ``settings.ray.address`` (or the local stack's head) unless Ray is already initialised;
    against a token-auth head, ``RAY_AUTH_MODE=token`` must be set before ``ray`` is first imported.
    Serve's HTTP host and port apply when this call starts Serve on the cluster. Once every replica of
    the new deployment runs (`serve.run` returns then), the live pointer moves to ``live``, by default
    the first artifact's version: each batch is answered by the version the pointer names when it starts.
    """
    app = build_app(settings, model_dirs)
    if not ray.is_initialized():
        address = settings.ray.address or f"127.0.0.1:{settings.ray.gcs_port}"
        ray.init(address=address, log_to_driver=False)
    serve.start(
        http_options={"host": settings.serve.http_host, "port": settings.serve.http_port},
        logging_config={"enable_access_log": False},
    )
    serve.run(
        app,
        name=settings.serve.app_name,
        route_prefix=settings.serve.route_prefix,
        logging_config={"enable_access_log": False},
    )
    version = live or Manifest.from_json((Path(_dirs(model_dirs)[0]) / MANIFEST_FILE).read_text()).version
    with redis_client(settings.redis) as rds:
        rds.set(live_key(settings.serve.app_name), version)
    return base_url(settings)


def deploy_versions(settings: Settings, model_dirs: Sequence[Path | str], live: str) -> str:
    """Deploy the app with several versions loaded, then point the live pointer at ``live``.

    `serve.run` returns once every replica of the new deployment is running (each has loaded every
    version), so the switch that follows is atomic: the next batch of every replica uses ``live``.
    """
    return deploy(settings, model_dirs, live=live)
