"""Re-index figures (not a test): replaying the enrolment log into a new collection, beside the raw forward.

Against the running stack's Kafka, Redis and Milvus (`twinstream stack up -p kafka -p redis -p milvus`),
in one run:

- a log of ``--images`` enrolments on a topic of its own (digits, or AT&T faces cycled over tenants so
  every image id is distinct);
- `services.lifecycle.reindex.reindex` of a model into a collection of its own: images/s over the whole
  run (read the log, decode, resize, forward, upsert, flush, commit) and the forward's share of it;
- the raw batched forward of the same model on the same images in this process, same thread count and
  batch size (decoded once beforehand), and decode + resize alone; the ratio re-index / raw forward.

Writes ``runs/bench/reindex-<date>-<dataset>.json`` and prints a table.

    python -m cli.bench.reindex --dataset digits --images 5000     # trains a quick model when no --model
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.bench import results_dir
from twinstream.config import Settings, load_settings

DATA_DIR = Path(os.environ.get("TWINSTREAM_DATA_DIR", "../shared/datasets"))
app = typer.Typer(add_completion=False)


def _images(dataset: str, count: int) -> list[bytes]:
    """``count`` encoded images of the data set (cycled when it has fewer)."""
    if dataset == "digits":
        import io

        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits

        pngs = []
        for pixels in load_digits().images:
            buf = io.BytesIO()
            Image.fromarray((pixels * 16).clip(0, 255).astype(np.uint8)).save(buf, format="PNG")
            pngs.append(buf.getvalue())
    else:
        pngs = [p.read_bytes() for p in sorted((DATA_DIR / "att_faces").rglob("*.pgm"))]
    return [pngs[i % len(pngs)] for i in range(count)]


def _log(settings: Settings, images: list[bytes]) -> float:
    """Append one enrolment per image (tenant cycles so ids are distinct); returns seconds taken."""
    from services.lifecycle.enrolment_log import KafkaEnrolmentLog, build_log_producer
    from services.matching.ports import LoggedEnrolment
    from twinstream.images.decode import image_digest
    from twinstream.names import image_id

    writer = KafkaEnrolmentLog(build_log_producer(settings.kafka), settings.kafka.enrolments_topic)
    started = time.perf_counter()
    batch: list[LoggedEnrolment] = []
    for i, png in enumerate(images):
        tenant, subject = f"bench{i // 1000}", f"s{i % 1000}"
        batch.append(
            LoggedEnrolment(image_id(tenant, subject, image_digest(png)), tenant, subject, png, "", i)
        )
        if len(batch) == 500:
            writer.append(batch)
            batch = []
    writer.append(batch)
    writer.close()
    return time.perf_counter() - started


def _raw(model: Path, images: list[bytes], settings: Settings) -> dict[str, float]:
    """Decode and cut (detection and alignment for a face model) alone, and the forward alone, of the
    same images (best of 3 passes each)."""
    from services.embedder.model import TowerEmbedder
    from twinstream.contracts import ImageRequest, Op
    from twinstream.images.face_finder import FaceFinders
    from twinstream.images.prepared import prepare
    from twinstream.images.preprocess import normalize

    embedder = TowerEmbedder.from_dir(model, threads=settings.lifecycle.reindex_threads)
    spec, size = embedder.manifest.input, settings.lifecycle.reindex_batch
    faces = FaceFinders(settings.faces).for_spec(spec)  # None unless the model takes face chips
    requests = [ImageRequest(str(i), Op.ENROLL, png, "t", "s") for i, png in enumerate(images)]
    prepare_s = forward_s = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        chunks = [
            prepare(requests[i : i + size], spec, settings.limits, faces)[0]
            for i in range(0, len(requests), size)
        ]
        prepare_s = min(prepare_s, time.perf_counter() - t0)
        tensors = [normalize(c.pixels, spec) for c in chunks]
        t0 = time.perf_counter()
        for tensor in tensors:
            embedder.embed(tensor)
        forward_s = min(forward_s, time.perf_counter() - t0)
    return {"prepare_images_per_s": len(images) / prepare_s, "forward_images_per_s": len(images) / forward_s}


@app.command()
def main(
    dataset: Annotated[str, typer.Option(help="digits | att-faces")] = "digits",
    images: Annotated[int, typer.Option(min=1)] = 5000,
    model: Annotated[
        Path | None, typer.Option(help="artifact (default: a quick model of the data set)")
    ] = None,
) -> None:
    """Measure a re-index and the raw forward of the same model on the same images."""
    from cli.stack.kafka_admin import ensure_topics
    from services.lifecycle.reindex import reindex

    tag = "rb" + uuid.uuid4().hex[:8]
    settings = load_settings()
    settings.kafka = settings.kafka.model_copy(update={"enrolments_topic": f"{tag}.enrolments"})
    settings.milvus = settings.milvus.model_copy(update={"collection_prefix": tag})
    settings.lifecycle = settings.lifecycle.model_copy(update={"reindex_group_prefix": f"{tag}-reindex"})
    ensure_topics(settings, {settings.kafka.enrolments_topic: settings.kafka.partitions})
    if model is None:
        from training.quick import train_quick

        model = train_quick(Path("runs/bench/models"), dataset, epochs=3, data_dir=DATA_DIR)
    pictures = _images(dataset, images)
    log_s = _log(settings, pictures)
    report = reindex(settings, model)
    raw = _raw(model, pictures, settings)
    figures: dict[str, Any] = {
        "dataset": dataset, "images": report.images, "model": str(model), "log_append_s": log_s,
        "reindex_s": report.seconds, "reindex_images_per_s": report.images_per_s,
        "reindex_forward_s": report.embed_seconds, **raw,
        "ratio_reindex_to_raw_forward": report.images_per_s / raw["forward_images_per_s"],
        "threads": settings.lifecycle.reindex_threads, "batch": settings.lifecycle.reindex_batch,
        "load_average": os.getloadavg(),
    }  # fmt: skip
    out = results_dir() / f"reindex-{time.strftime('%Y-%m-%d')}-{dataset}.json"
    out.write_text(json.dumps(figures, indent=2, default=float))
    table = Table("figure", "value", title=f"re-index bench ({dataset}, {report.images} images) → {out}")
    for name, value in figures.items():
        table.add_row(name, f"{value:,.3f}" if isinstance(value, float) else str(value))
    Console().print(table)


if __name__ == "__main__":
    app()
