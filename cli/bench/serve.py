"""Serving figures (not a test): HTTP and handle throughput and latency beside the raw work per image.

Deploys a bench app (``<app>-serve`` at ``/serve``, its own collections) to the running stack, or measures
an app already running (``--app NAME --route /prefix``), enrols a gallery, then measures for ``--seconds``
each, in one run:

- the raw work of one image in this process on one core: decode and cut (for a face model, detection
  and 5-point alignment), and the tower's forward pass at batch 1 and 32;
- HTTP identify with 1 and 32 concurrent clients (one image per request), p50/p99, and the CPU time per
  image of the service (the machine's, less the bench's own clients);
- HTTP at half the 32-client throughput, paced: the latency a user sees when the service is not saturated;
- the pipeline handle with batches of 1 and 32 (as an ingest worker calls it).

Ratios against the raw work of the same images on all of this machine's cores at once
(`cli.bench.common.raw_image_work`). Every image is distinct (a trailer after its end), so the embedding
cache never answers. ``--model face`` measures the served face tower (`cli.bench.common.resolve_model`).
Writes ``serve-<tag>-<date>.json`` and ``.png`` into `cli.bench.results_dir`.

    python -m cli.bench.serve --model face --images att_faces --tag face
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported (the stack's head uses tokens)

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from cli.bench import results_dir
from cli.bench.common import (
    DEPLOY_DEADLINE_S,
    BenchError,
    bench_settings,
    deploy_with_deadline,
    existing_app,
    latency_stats,
    load_source,
    machine_busy_s,
    raw_image_work,
    resolve_model,
    unique,
)
from twinstream.config import Settings, load_settings
from twinstream.contracts import ImageRequest, Op

TENANT = "bench"
app = typer.Typer(add_completion=False)


class Messages:
    """Distinct image bytes forever, cycling over the source."""

    def __init__(self, source: list[bytes]) -> None:
        self._source, self._n = source, 0

    def next(self) -> bytes:
        self._n += 1
        return unique(self._source, 1, self._n)[0]


async def http_load(
    url: str, headers: dict[str, str], messages: Messages, concurrency: int, seconds: float, rate: float = 0.0
) -> dict[str, float]:
    """``concurrency`` clients posting identify requests for ``seconds`` (paced to ``rate``/s if given).

    The clients are aiohttp's (a third of httpx's CPU per request): they share the machine with the
    service, so their own CPU time is measured and reported apart from the machine's.
    """
    import aiohttp

    latencies: list[float] = []
    target = f"{url}/v1/identify"
    busy0, own0 = machine_busy_s(), time.process_time()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:
        start = time.perf_counter()
        end = start + seconds

        async def one(body: bytes) -> None:
            t0 = time.perf_counter()
            async with client.post(target, data=body, headers=headers) as answer:
                text = await answer.read()
            if answer.status != 200:
                raise BenchError(f"the app answered {answer.status}: {text[:200]!r}")
            latencies.append(time.perf_counter() - t0)

        async def worker() -> None:
            while time.perf_counter() < end:
                await one(messages.next())

        if rate > 0:  # paced: one request every 1/rate s, whatever the answers' latency
            tasks = []
            n = 0
            while (now := time.perf_counter()) < end:
                tasks.append(asyncio.create_task(one(messages.next())))
                n += 1
                await asyncio.sleep(max(0.0, start + n / rate - now))
            await asyncio.gather(*tasks)
        else:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    stats = latency_stats(latencies, len(latencies), elapsed)
    busy1, own1 = machine_busy_s(), time.process_time()
    if busy0 is not None and busy1 is not None and latencies:
        stats["cpu_ms_per_image"] = 1000 * (busy1 - busy0) / len(latencies)
        stats["clients_cpu_ms_per_image"] = 1000 * (own1 - own0) / len(latencies)
        stats["service_cpu_ms_per_image"] = stats["cpu_ms_per_image"] - stats["clients_cpu_ms_per_image"]
    return stats


def handle_load(handle: Any, messages: Messages, batch: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        requests = [
            ImageRequest(f"b{time.time_ns()}-{i}", Op.IDENTIFY, messages.next(), TENANT) for i in range(batch)
        ]
        t0 = time.perf_counter()
        handle.process.remote(requests).result()
        latencies.append(time.perf_counter() - t0)
    return latency_stats(latencies, batch * len(latencies), time.perf_counter() - start)


def _enrol(handle: Any, source: list[bytes], subjects: int) -> None:
    requests = [
        ImageRequest(f"e{i}", Op.ENROLL, body, TENANT, f"s{i}")
        for i, body in enumerate(unique(source, subjects))
    ]
    for start in range(0, len(requests), 64):
        handle.process.remote(requests[start : start + 64]).result()


@app.command()
def main(
    model: Annotated[
        str | None, typer.Option(help="artifact directory, or 'face' (default: a quick digits model)")
    ] = None,
    images: Annotated[
        str, typer.Option(help="digits | a folder of images | a zip of PNGs (relative: under the data sets)")
    ] = "digits",
    seconds: Annotated[float, typer.Option(help="measuring time per scenario")] = 8.0,
    subjects: Annotated[int, typer.Option(help="subjects enrolled in the bench gallery")] = 200,
    app_name: Annotated[str | None, typer.Option("--app", help="measure this running app instead")] = None,
    route: Annotated[str, typer.Option(help="with --app: its route prefix")] = "/",
    tag: Annotated[str, typer.Option(help="name of this run's files")] = "",
    deadline: Annotated[
        float, typer.Option(help="seconds the bench app may take to start before the bench says why not")
    ] = DEPLOY_DEADLINE_S,
) -> None:
    """Measure serving beside the raw work; write JSON + PNG; print the table and the ratios."""
    console = Console()
    try:
        stem = run(
            load_settings(), model, images, seconds=seconds, subjects=subjects, app_name=app_name,
            route=route, tag=tag, deadline_s=deadline, console=console,
        )  # fmt: skip
    except BenchError as exc:
        console.print(f"bench serve: {exc}", style="red", markup=False)
        raise typer.Exit(2) from None
    console.print(f"wrote {stem.with_suffix('.json')} and .png")


def run(
    base: Settings,
    model: str | None,
    images: str,
    *,
    seconds: float,
    subjects: int,
    app_name: str | None = None,
    route: str = "/",
    tag: str = "",
    deadline_s: float = DEPLOY_DEADLINE_S,
    console: Console | None = None,
) -> Path:
    """The bench (see the module docstring); returns the stem of the JSON and PNG it wrote.

    Raises:
        BenchError: The bench app did not start within ``deadline_s`` (the message says why), ``--app``
            names no running app or comes without ``--model``, or the images cannot be read.
    """
    from ray import serve

    from services.deployments import PIPELINE_DEPLOYMENT

    settings = bench_settings(base, "serve")
    if app_name and model is None:
        raise BenchError("with --app, name the app's model with --model: the raw figures need its tower")
    model_dir = resolve_model(model, base)
    source = load_source(images, limit=2000, datasets_dir=base.datasets_dir)
    if app_name:
        url, handle = existing_app(base, app_name, route)
    else:
        url = deploy_with_deadline(settings, model_dir, deadline_s)
        handle = serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=settings.serve.app_name)
    headers = {"X-Tenant": TENANT, **_auth_header(base)}
    try:
        _enrol(handle, source, subjects)
        messages = Messages(source)
        served = {
            "http_concurrency1": asyncio.run(http_load(url, headers, messages, 1, seconds)),
            "http_concurrency32": asyncio.run(http_load(url, headers, messages, 32, seconds)),
        }
        half = served["http_concurrency32"]["images_per_s"] / 2
        served["http_half_load"] = asyncio.run(http_load(url, headers, messages, 64, seconds, rate=half))
        served["handle_batch1"] = handle_load(handle, messages, 1, seconds)
        served["handle_batch32"] = handle_load(handle, messages, 32, seconds)
    finally:
        if not app_name:
            serve.delete(settings.serve.app_name)
    raw = raw_image_work(model_dir, settings, source, min(seconds, 5.0))
    result = {
        "machine": f"{platform.machine()} · {raw['cores']} CPUs", "at": time.strftime("%F %T"),
        "load_average_1m_5m_15m": os.getloadavg(), "model": str(model_dir), "images": images,
        "app": app_name or settings.serve.app_name, "gallery_subjects": subjects,
        "seconds_per_scenario": seconds, "served": served, "raw": raw,
        "ratios": {
            "http_concurrency32_to_raw": served["http_concurrency32"]["images_per_s"]
            / raw["images_per_s_all_cores"],
            "http_half_load_p99_to_raw_image_time": served["http_half_load"]["p99_ms"]
            / raw["image_ms_batch1"],
        },
    }  # fmt: skip
    stem = results_dir() / f"serve-{tag + '-' if tag else ''}{time.strftime('%Y-%m-%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    _png(result, stem.with_suffix(".png"))
    _print(result, console or Console())
    return stem


def _auth_header(settings: Settings) -> dict[str, str]:
    """A bearer key for the bench tenant when the app checks keys: ``TWINSTREAM_API_KEY``, else a
    configured key of the bench tenant or of every tenant (``*``)."""
    key = os.environ.get("TWINSTREAM_API_KEY")
    if key is None:
        key = next((k for k, t in settings.serve.api_keys.items() if t in (TENANT, "*")), None)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _print(result: dict[str, Any], console: Console) -> None:
    table = Table("scenario", "images/s", "p50 ms", "p99 ms", "CPU ms/image: service (+ clients)")
    for name, r in result["served"].items():
        cpu = (
            f"{r['service_cpu_ms_per_image']:.2f} (+{r['clients_cpu_ms_per_image']:.2f})"
            if "service_cpu_ms_per_image" in r
            else ""
        )
        table.add_row(name, f"{r['images_per_s']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", cpu)
    console.print(table)
    raw = result["raw"]
    console.print(
        f"raw, one core: cut {raw['cut_ms_per_image']:.2f} ms/image, "
        f"forward {raw['forward_batch1_ms_per_image']:.2f} "
        f"(batch 1) / {raw['forward_batch32_ms_per_image']:.2f} (batch 32) ms/image → "
        f"{raw['images_per_s_all_cores']:.0f} images/s measured on all {raw['cores']} cores at once"
    )
    for name, value in result["ratios"].items():
        console.print(f"{name}: {value:.3f}")


def _png(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    served = result["served"]
    names = list(served)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.barh(names, [served[n]["images_per_s"] for n in names], color="tab:blue")
    ax1.axvline(result["raw"]["images_per_s_all_cores"], color="grey", ls=":", label="raw, all cores")
    ax1.set_xlabel("images / s")
    ax1.legend()
    y = np.arange(len(names))
    ax2.barh(y - 0.2, [served[n]["p50_ms"] for n in names], 0.4, label="p50")
    ax2.barh(y + 0.2, [served[n]["p99_ms"] for n in names], 0.4, label="p99")
    ax2.set_yticks(y, names)
    ax2.set_xscale("log")
    ax2.set_xlabel("latency (ms)")
    ax2.legend()
    fig.suptitle(f"twinstream serving · {result['machine']} · {Path(result['model']).name}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    app()
