"""Composition of the Serve application (embedder + pipeline/HTTP ingress) and deploying it to Ray.

The app has two deployments: `EMBEDDER_DEPLOYMENT` (the batched tower; replicas, CPUs, threads,
batching and autoscaling from `ServeSettings`) and `PIPELINE_DEPLOYMENT` (the FastAPI ingress whose
``process`` method is the stream's entry; it holds the Milvus gallery and Redis clients). Ingest
workers get the pipeline with
``serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=settings.serve.app_name)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve.deployment import Application

from services.api.deployment import PipelineDeployment
from services.deployments import EMBEDDER_DEPLOYMENT, PIPELINE_DEPLOYMENT
from services.embedder.deployment import EmbedderDeployment
from twinstream.config import Settings
from twinstream.memory import MALLOC_ENV
from twinstream.model.artifact import load_artifact

__all__ = ["EMBEDDER_DEPLOYMENT", "PIPELINE_DEPLOYMENT", "base_url", "build_app", "deploy"]


def _embedder_options(settings: Settings) -> dict[str, Any]:
    s = settings.serve
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": s.cpus_per_replica, "runtime_env": {"env_vars": dict(MALLOC_ENV)}},
        "max_ongoing_requests": s.max_ongoing_requests,
        "user_config": {"max_batch_size": s.max_batch_size, "batch_wait_timeout_s": s.batch_wait_timeout_s},
    }
    if s.autoscaling:
        options["autoscaling_config"] = dict(s.autoscaling)
    else:
        options["num_replicas"] = s.replicas
    return options


def build_app(settings: Settings, model_dir: Path | str) -> Application:
    """The Serve application for one model artifact (validated here, before anything is deployed).

    Raises:
        twinstream.model.artifact.ArtifactError: If the artifact is missing, malformed or tampered with.
    """
    root = Path(model_dir).resolve()
    load_artifact(root)  # fail in the caller, not in a replica restart loop
    embedder = EmbedderDeployment.options(**_embedder_options(settings)).bind(  # type: ignore[attr-defined]
        str(root), settings.serve.threads_per_replica
    )
    return PipelineDeployment.options(  # type: ignore[attr-defined]
        num_replicas=settings.serve.ingress_replicas,
        # Its numpy work is small matrices (normalise, exact gallery search): BLAS threads would only
        # spin on the cores the embedder and the workers need (measured: twice the CPU per search).
        ray_actor_options={
            "num_cpus": settings.serve.ingress_cpus,
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}},
        },
        max_ongoing_requests=settings.serve.max_ongoing_requests,
    ).bind(settings, str(root), embedder)


def base_url(settings: Settings) -> str:
    """The HTTP API's base URL (no trailing slash)."""
    s = settings.serve
    return f"http://{s.http_host}:{s.http_port}{s.route_prefix.rstrip('/')}"


def deploy(settings: Settings, model_dir: Path | str) -> str:
    """Deploy (or update in place) the app on the Ray cluster and return the HTTP API's URL.

    Connects to ``settings.ray.address`` (or the local stack's head) unless Ray is already initialised;
    against a token-auth head, ``RAY_AUTH_MODE=token`` must be set before ``ray`` is first imported.
    Serve's HTTP host and port apply when this call starts Serve on the cluster.
    """
    app = build_app(settings, model_dir)
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
    return base_url(settings)
