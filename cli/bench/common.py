"""What every benchmark shares: image sources, distinct messages, latency statistics, machine CPU time,
and deploying a bench app to the running stack with a deadline (never waiting silently)."""

from __future__ import annotations

import io
import os
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from twinstream.config import Settings

#: How long a bench waits for its app's replicas before it says why they do not come up.
DEPLOY_DEADLINE_S = 60.0


class BenchError(RuntimeError):
    """A benchmark cannot run here as asked; the message says why and what to do."""


def digit_pngs() -> list[bytes]:
    """scikit-learn's 1,797 digits as 8x8 PNGs (the quick digits model's data)."""
    from sklearn.datasets import load_digits

    out = []
    for digit in load_digits().images:
        buf = io.BytesIO()
        Image.fromarray((digit * 15).astype(np.uint8), mode="L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def load_source(spec: str, limit: int = 4000) -> list[bytes]:
    """Image files to send: ``digits``, a ``root/<identity>/<files>`` folder, or a zip of PNGs."""
    if spec == "digits":
        return digit_pngs()
    path = Path(spec).expanduser()
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist() if n.endswith(".png"))[:limit]
            return [zf.read(n) for n in names]
    suffixes = {".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp", ".webp"}
    files = sorted(f for f in path.rglob("*") if f.suffix.lower() in suffixes and not f.name.startswith("."))
    if not files:
        raise BenchError(f"no image files under {path}")
    return [f.read_bytes() for f in files[:limit]]


def unique(source: list[bytes], count: int, start: int = 0) -> list[bytes]:
    """``count`` distinct messages cycling over ``source``: a unique trailer after each image's end keeps the
    embedding cache from answering, so every message is decoded, cut and embedded."""
    return [source[i % len(source)] + f"#{uuid.uuid4().hex}".encode() for i in range(start, start + count)]


def latency_stats(latencies_s: list[float], images: int, seconds: float) -> dict[str, float]:
    """Throughput and p50/p99 latency of a scenario."""
    ms = np.asarray(latencies_s) * 1000 if latencies_s else np.zeros(1)
    return {
        "images_per_s": images / seconds if seconds > 0 else 0.0, "calls": len(latencies_s),
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
    }  # fmt: skip


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (not idle or waiting for I/O), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def bench_settings(base: Settings, name: str) -> Settings:
    """``base`` with a bench app of its own (app name, route prefix, collections)."""
    return base.model_copy(
        update={
            "serve": base.serve.model_copy(
                update={"app_name": f"{base.serve.app_name}-{name}", "route_prefix": f"/{name}"}
            ),
            "milvus": base.milvus.model_copy(update={"collection_prefix": name}),
        }
    )


def deploy_with_deadline(settings: Settings, model_dir: Path, deadline_s: float = DEPLOY_DEADLINE_S) -> str:
    """Deploy the bench app and return its URL, or raise `BenchError` naming why its replicas did not start
    within ``deadline_s`` (typically: the cluster's CPUs are held by another app; measure that app with
    ``--app`` or free the CPUs)."""
    import ray
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    from services.app import base_url, build_app

    if not ray.is_initialized():
        ray.init(address=settings.ray.address or f"127.0.0.1:{settings.ray.gcs_port}", log_to_driver=False)
    serve.start(http_options={"host": settings.serve.http_host, "port": settings.serve.http_port})
    app = build_app(settings, model_dir)
    target = serve.RunTarget(app, name=settings.serve.app_name, route_prefix=settings.serve.route_prefix)
    serve.run_many([target], wait_for_applications_running=False)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        status = serve.status().applications.get(settings.serve.app_name)
        if status is not None and status.status == ApplicationStatus.RUNNING:
            return base_url(settings)
        if status is not None and status.status == ApplicationStatus.DEPLOY_FAILED:
            break
        time.sleep(0.5)
    reason = _why_not_running(settings.serve.app_name, settings.serve.cpus_per_replica)
    serve.delete(settings.serve.app_name)
    raise BenchError(f"the bench app did not start within {deadline_s:.0f} s: {reason}")


def _why_not_running(app_name: str, cpus: float) -> str:
    import ray
    from ray import serve

    available = ray.available_resources().get("CPU", 0.0)
    status = serve.status()
    others = {name: a.status for name, a in status.applications.items() if name != app_name}
    mine = status.applications.get(app_name)
    detail = "; ".join(d.message for d in (mine.deployments.values() if mine else ()) if d.message)
    if available < cpus:
        return (
            f"it needs {cpus:g} CPU per replica and the cluster has {available:g} free; other apps hold "
            f"the rest ({', '.join(others) or 'none'}): measure one with --app NAME, or stop it"
        )
    return detail or "its replicas did not become healthy (read the replica logs in Ray's session dir)"


def existing_app(settings: Settings, app_name: str, route_prefix: str) -> tuple[str, Any]:
    """The URL and pipeline handle of an app already deployed (``--app``), or `BenchError`."""
    import ray
    from ray import serve

    from services.deployments import PIPELINE_DEPLOYMENT

    if not ray.is_initialized():
        ray.init(address=settings.ray.address or f"127.0.0.1:{settings.ray.gcs_port}", log_to_driver=False)
    applications = serve.status().applications
    if app_name not in applications:
        raise BenchError(
            f"no Serve app {app_name!r} runs here (running: {', '.join(applications) or 'none'})"
        )
    url = f"http://{settings.serve.http_host}:{settings.serve.http_port}{route_prefix.rstrip('/')}"
    return url, serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=app_name)
