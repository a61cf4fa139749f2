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


def load_source(spec: str, limit: int = 4000, datasets_dir: Path | None = None) -> list[bytes]:
    """Image files to send: ``digits``, a ``root/<identity>/<files>`` folder, or a zip of PNGs (a relative
    path that does not exist here is looked for under ``datasets_dir``)."""
    if spec == "digits":
        return digit_pngs()
    path = Path(spec).expanduser()
    if not path.exists() and datasets_dir is not None and not path.is_absolute():
        path = datasets_dir / path
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


#: ``--model face``: the served face tower (dlib's ResNet, calibrated on AT&T's non-test identities).
FACE_MODEL = "face"


def resolve_model(spec: str | None, settings: Settings, dataset: str = "digits") -> Path:
    """An artifact directory for ``--model``: a path; ``face`` (the newest face artifact in the models
    directory, exported from dlib's weights on first use); or none (a quick model of ``dataset``)."""
    import tempfile

    if spec is None:
        from training.quick import train_quick

        return train_quick(
            Path(tempfile.mkdtemp(prefix="twinstream-bench-")), dataset, data_dir=settings.datasets_dir
        )
    if spec != FACE_MODEL:
        path = Path(spec).expanduser()
        if not (path / "manifest.json").is_file():
            raise BenchError(f"{path} is not an artifact directory (no manifest.json)")
        return path
    import json

    from twinstream.model.artifact import FORMAT_VERSION, MANIFEST_FILE
    from twinstream.model.tower import FACE_RESNET

    models = settings.paths.models_dir
    for path in sorted(models.glob("v*/"), reverse=True):  # versions sort by time
        manifest = json.loads((path / MANIFEST_FILE).read_text()) if (path / MANIFEST_FILE).is_file() else {}
        if manifest.get("architecture") == FACE_RESNET and manifest.get("format_version") == FORMAT_VERSION:
            return path
    from training.pretrained import export_pretrained_face

    if not (settings.datasets_dir / "att_faces").is_dir():
        raise BenchError(f"--model face needs {settings.datasets_dir / 'att_faces'} to calibrate the tower")
    return export_pretrained_face(settings.datasets_dir, models, faces=settings.faces)


def raw_image_work(
    model_dir: Path, settings: Settings, source: list[bytes], seconds: float
) -> dict[str, Any]:
    """The work of the images alone, nothing else: on one core of this process, decode and cut (for a face
    tower, detection and 5-point alignment) and the forward pass at batch 1 and 32, in ms per image; and
    on every core at once (one process per core, each cutting batches of 32 and embedding them), the
    images/s the machine does — measured, not extrapolated: cores that share caches and memory bandwidth
    do less than ``cores ×`` one."""
    import torch

    from services.embedder.model import TowerEmbedder
    from twinstream.contracts import ImageRequest, Op
    from twinstream.images.face_finder import FaceFinders
    from twinstream.images.prepared import prepare
    from twinstream.images.preprocess import normalize

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        embedder = TowerEmbedder.from_dir(model_dir, threads=1)
        spec = embedder.manifest.input
        faces = FaceFinders(settings.faces).for_spec(spec)
        requests = [ImageRequest(f"r{i}", Op.IDENTIFY, body, "raw") for i, body in enumerate(source[:64])]
        prepare(requests[:2], spec, settings.limits, faces)  # warm-up: dlib's models load once
        cut: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for request in requests:
                t0 = time.perf_counter()
                prepare([request], spec, settings.limits, faces)
                cut.append(time.perf_counter() - t0)
        batch, _ = prepare(requests[:32], spec, settings.limits, faces)
        if len(batch.pixels) < 32:
            raise BenchError(f"only {len(batch.pixels)} of 32 images had a usable {spec.kind} input")
        x = normalize(batch.pixels, spec)
        out: dict[str, Any] = {"cut_ms_per_image": 1000 * float(np.mean(cut)), "kind": str(spec.kind)}
        for size in (1, 32):
            chunk = np.ascontiguousarray(x[:size])
            embedder.embed(chunk)
            forward: list[float] = []
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                t0 = time.perf_counter()
                embedder.embed(chunk)
                forward.append(time.perf_counter() - t0)
            out[f"forward_batch{size}_ms_per_image"] = 1000 * float(np.mean(forward)) / size
    finally:
        torch.set_num_threads(threads)
    cores = os.cpu_count() or 1
    out["cores"] = cores
    out["image_ms_batch1"] = out["cut_ms_per_image"] + out["forward_batch1_ms_per_image"]
    out["images_per_s_one_core"] = 1000 / (out["cut_ms_per_image"] + out["forward_batch32_ms_per_image"])
    out["images_per_s_all_cores"] = _on_every_core(model_dir, settings, source[:64], seconds)
    return out


def _on_every_core(model_dir: Path, settings: Settings, source: list[bytes], seconds: float) -> float:
    """Images/s of one process per core, all at once, each cutting and embedding batches of 32."""
    import multiprocessing

    cores = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    with context.Pool(cores) as pool:
        rates = pool.starmap(_cut_and_embed, [(model_dir, settings, source, seconds)] * cores)
    return float(sum(rates))


def _cut_and_embed(model_dir: Path, settings: Settings, source: list[bytes], seconds: float) -> float:
    """One process's images/s: decode, cut and embed batches of 32 of ``source`` for ``seconds``."""
    import torch

    from services.embedder.model import TowerEmbedder
    from twinstream.contracts import ImageRequest, Op
    from twinstream.images.face_finder import FaceFinders
    from twinstream.images.prepared import prepare
    from twinstream.images.preprocess import normalize

    torch.set_num_threads(1)
    embedder = TowerEmbedder.from_dir(model_dir, threads=1)
    spec = embedder.manifest.input
    faces = FaceFinders(settings.faces).for_spec(spec)
    requests = [ImageRequest(f"r{i}", Op.IDENTIFY, body, "raw") for i, body in enumerate(source)]
    batches = [requests[i : i + 32] for i in range(0, len(requests), 32)]
    embedder.embed(normalize(prepare(batches[0], spec, settings.limits, faces)[0].pixels, spec))  # warm
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for chunk in batches:
            batch, _ = prepare(chunk, spec, settings.limits, faces)
            embedder.embed(normalize(batch.pixels, spec))
            images += len(chunk)
    return images / (time.perf_counter() - start)
