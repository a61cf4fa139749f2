"""Serving figures (not a test): HTTP and handle throughput and latency beside the raw forward pass.

Deploys a separate bench app (``<app_name>-bench`` at ``/bench``, its own collections) to the running
stack's Ray cluster, enrols a gallery, then measures for ``--seconds`` each:

- HTTP identify at 1 and 32 concurrent clients (the API takes one image per request);
- handle ``process`` with batches of 1 and 32 images (one caller, as an ingest worker does);
- the raw batched forward pass of the same tower in this process, same thread count (batch 1 and 32);
- Milvus search latency for 1 query per call vs 32 queries per call.

Every image sent is distinct (trailing bytes after PNG's end chunk), so the embedding cache never
answers. Writes ``runs/bench/serve-<date>.json`` and ``.png`` and prints a table.

    python bench/serve.py --model models/v2026...   # or without --model: trains a quick digits model
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from cli.bench import results_dir

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported (the stack's head uses tokens)

import httpx
import numpy as np
import typer
from PIL import Image
from rich.console import Console
from rich.table import Table

from twinstream.config import Settings, load_settings
from twinstream.contracts import ImageRequest, Op

RESULTS = results_dir()
TENANT = "bench"
app = typer.Typer(add_completion=False)


def _images(count: int) -> list[bytes]:
    from sklearn.datasets import load_digits

    digits = load_digits().images
    out = []
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray((digits[i % len(digits)] * 15).astype(np.uint8), mode="L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


class Unique:
    """Distinct image bytes forever: a digit PNG plus a counter after its end chunk."""

    def __init__(self, images: list[bytes]) -> None:
        self._images, self._n = images, 0

    def next(self) -> bytes:
        self._n += 1
        return self._images[self._n % len(self._images)] + f"#{self._n}".encode()


def _stats(latencies: list[float], images: int, seconds: float) -> dict[str, float]:
    lat = np.asarray(latencies) * 1000
    return {
        "images_per_s": images / seconds, "calls": len(latencies),
        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
    }  # fmt: skip


async def _http(url: str, unique: Unique, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                response = await client.post(
                    "/v1/identify",
                    content=unique.next(),
                    headers={"Content-Type": "image/png", "X-Tenant": TENANT},
                )
                response.raise_for_status()
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _stats(latencies, len(latencies), elapsed)


def _handle(handle: Any, unique: Unique, batch: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        requests = [
            ImageRequest(f"b{time.time_ns()}-{i}", Op.IDENTIFY, unique.next(), TENANT) for i in range(batch)
        ]
        t0 = time.perf_counter()
        handle.process.remote(requests).result()
        latencies.append(time.perf_counter() - t0)
    return _stats(latencies, batch * len(latencies), time.perf_counter() - start)


def _forward(model_dir: Path, threads: int, batch: int, seconds: float) -> dict[str, float]:
    from services.embedder.model import TowerEmbedder
    from twinstream.images.decode import decode_image
    from twinstream.images.preprocess import preprocess_batch

    embedder = TowerEmbedder.from_dir(model_dir, threads=threads)
    spec = embedder.manifest.input
    imgs = [decode_image(b, Settings().limits) for b in _images(batch)]
    x = preprocess_batch(imgs, spec).numpy()
    embedder.embed(x)  # warm-up
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        embedder.embed(x)
        latencies.append(time.perf_counter() - t0)
    return _stats(latencies, batch * len(latencies), time.perf_counter() - start)


def _milvus(settings: Settings, collection: str, dim: int, calls: int = 20) -> dict[str, dict[str, float]]:
    from services.gallery.client import connect_with
    from services.gallery.milvus_gallery import MilvusGallery

    gallery = MilvusGallery(connect_with(settings.milvus), collection, settings.milvus.search_params)
    rng = np.random.default_rng(0)
    out = {}
    for batch in (1, 32):
        latencies = []
        for _ in range(calls):
            q = rng.normal(size=(batch, dim)).astype(np.float32)
            t0 = time.perf_counter()
            gallery.search(TENANT, q / np.linalg.norm(q, axis=1, keepdims=True), top_k=5)
            latencies.append(time.perf_counter() - t0)
        stats = _stats(latencies, batch * calls, sum(latencies))
        out[f"search_batch{batch}"] = {**stats, "ms_per_query": stats["p50_ms"] / batch}
    return out


def _deploy(settings: Settings, model_dir: Path, subjects: int) -> tuple[str, Any, str, int]:
    from ray import serve

    from services.app import PIPELINE_DEPLOYMENT, deploy
    from services.gallery.names import collection_name
    from twinstream.model.artifact import load_artifact

    url = deploy(settings, model_dir)
    handle = serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=settings.serve.app_name)
    manifest = load_artifact(model_dir).manifest
    images = _images(subjects)
    enrol = [ImageRequest(f"e{i}", Op.ENROLL, img, TENANT, f"s{i}") for i, img in enumerate(images)]
    handle.process.remote(enrol).result()
    collection = collection_name(settings.milvus.collection_prefix, manifest.version)
    return url, handle, collection, manifest.embedding_dim


def _bench_settings() -> Settings:
    base = load_settings()
    return base.model_copy(
        update={
            "serve": base.serve.model_copy(
                update={"app_name": f"{base.serve.app_name}-bench", "route_prefix": "/bench"}
            ),
            "milvus": base.milvus.model_copy(update={"collection_prefix": "bench"}),
        }
    )


def _write(result: dict[str, Any]) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"serve-{time.strftime('%Y-%m-%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    rows = result["served"] | result["raw_forward"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.barh(list(rows), [r["images_per_s"] for r in rows.values()], color="tab:blue")
    ax1.set_xlabel("images / s")
    ax1.set_title("throughput")
    served = result["served"]
    y = np.arange(len(served))
    ax2.barh(y - 0.2, [r["p50_ms"] for r in served.values()], 0.4, label="p50")
    ax2.barh(y + 0.2, [r["p99_ms"] for r in served.values()], 0.4, label="p99")
    ax2.set_yticks(y, list(served))
    ax2.set_xlabel("latency per call (ms)")
    ax2.legend()
    fig.suptitle(f"twinstream serving · {result['machine']} · model {result['model_version']}")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    return stem.with_suffix(".json"), stem.with_suffix(".png")


def _print(result: dict[str, Any], console: Console) -> None:
    table = Table("scenario", "images/s", "p50 ms", "p99 ms", "× raw forward (batch 32)")
    raw = result["raw_forward"]["forward_batch32"]["images_per_s"]
    for name, r in (result["served"] | result["raw_forward"] | result["milvus"]).items():
        ratio = f"{r['images_per_s'] / raw:.3f}" if name in result["served"] else ""
        table.add_row(name, f"{r['images_per_s']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", ratio)
    console.print(table)


@app.command()
def main(
    model: Annotated[
        Path | None, typer.Option(help="artifact directory (default: train a quick digits model)")
    ] = None,
    seconds: Annotated[float, typer.Option(help="measuring time per scenario")] = 8.0,
    subjects: Annotated[int, typer.Option(help="subjects enrolled in the bench gallery")] = 200,
) -> None:
    """Deploy a bench app, measure, write JSON + PNG, print the table."""
    from ray import serve

    settings = _bench_settings()
    if model is None:
        from training.quick import train_quick

        model = train_quick(Path(tempfile.mkdtemp(prefix="twinstream-bench-")))
    url, handle, collection, dim = _deploy(settings, model, subjects)
    unique = Unique(_images(512))
    try:
        served = {
            "http_concurrency1": asyncio.run(_http(url, unique, 1, seconds)),
            "http_concurrency32": asyncio.run(_http(url, unique, 32, seconds)),
            "handle_batch1": _handle(handle, unique, 1, seconds),
            "handle_batch32": _handle(handle, unique, 32, seconds),
        }
        milvus = _milvus(settings, collection, dim)
    finally:
        serve.delete(settings.serve.app_name)
    threads = settings.serve.threads_per_replica
    raw = {f"forward_batch{b}": _forward(model, threads, b, seconds) for b in (1, 32)}
    raw_batch32 = raw["forward_batch32"]["images_per_s"]
    result = {
        "machine": f"{platform.machine()} · {os.cpu_count()} CPUs", "at": time.strftime("%F %T"),
        "load_average_1m_5m_15m": os.getloadavg(),
        "model_version": model.name, "gallery_subjects": subjects, "seconds_per_scenario": seconds,
        "serve": settings.serve.model_dump(exclude={"api_keys"}), "served": served, "raw_forward": raw,
        "milvus": milvus,
        "ratio_served_to_raw": {k: v["images_per_s"] / raw_batch32 for k, v in served.items()},
    }  # fmt: skip
    paths = _write(result)
    console = Console()
    _print(result, console)
    console.print(f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    app()
