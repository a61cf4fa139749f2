"""Re-index by replay: build one model version's gallery from the enrolment log, resumably.

Reads the log from where the version's consumer group left off (the beginning the first time),
pre-processes each image for the version's input spec exactly as the ingest workers do
(`twinstream.images.prepared.prepare`, then the pipeline's `normalize`), embeds a batch at a time
in-process (`services.embedder.model.TowerEmbedder`), upserts the vectors into the version's collection,
applies tombstones as deletes, flushes, bumps the mirror generation of every tenant it touched, and only
then commits the batch's offsets. A run killed at any point resumes from the last committed batch; the
batches it replays are upserts and deletes by image id, so the collection ends exactly as the log
(same ids, no duplicates). ``--follow`` keeps tailing the log for enrolments that arrive meanwhile.

Run it as ``python -m services.lifecycle.reindex --model DIR`` (a composition root: `ray job submit`-able),
or as ``twinstream models reindex --model DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pymilvus import MilvusClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.embedder.model import TowerEmbedder
from services.gallery.client import connect_with
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.mirror import RedisGenerations
from services.gallery.names import collection_name
from services.gallery.schema import ensure_collection
from services.lifecycle.enrolment_log import EnrolmentLogReader, build_log_consumer
from services.lifecycle.offsets import LogOffsets, build_admin, reindex_group
from services.lifecycle.registry import ModelRegistry, RegistryKeys
from services.lifecycle.replay import BatchDone, Reindexer, ReindexReport
from services.results.redis_client import redis_client
from twinstream.config import Settings, load_settings
from twinstream.images.face_finder import FaceFinders
from twinstream.images.prepared import FaceFinder

log = logging.getLogger(__name__)
__all__ = [
    "BatchDone",
    "ReindexReport",
    "Reindexer",
    "main",
    "reindex",
    "reindex_session",
    "run_with_progress",
]


@contextmanager
def reindex_session(
    settings: Settings,
    model_dir: Path | str,
    *,
    restart: bool = False,
    threads: int | None = None,
    faces: FaceFinder | None = None,
) -> Iterator[Reindexer]:
    """Build the clients of one re-index run (the composition), register the version, close on exit.

    A face model gets the face finder every other path uses (`FacesSettings`) unless ``faces`` is given.
    """
    embedder = TowerEmbedder.from_dir(model_dir, threads=threads or settings.lifecycle.reindex_threads)
    manifest = embedder.manifest
    if faces is None:
        faces = FaceFinders(settings.faces).for_spec(manifest.input)
    collection = collection_name(settings.milvus.collection_prefix, manifest.version)
    group = reindex_group(settings, manifest.version)
    rds = redis_client(settings.redis)
    milvus = connect_with(settings.milvus)
    registry = ModelRegistry(rds, RegistryKeys.for_settings(settings))
    consumer = build_log_consumer(settings.kafka, group_id=group, client_id=f"reindex-{manifest.version}")
    try:
        reader = EnrolmentLogReader(consumer, settings.kafka.enrolments_topic)
        if restart:
            _start_over(settings, reader, group, milvus, collection, registry, manifest.version)
        ensure_collection(milvus, collection, manifest.embedding_dim, settings.milvus)
        registry.register(
            manifest.version, str(Path(model_dir).resolve()), collection, manifest.embedding_dim
        )
        gallery = MilvusGallery(milvus, collection, settings.milvus.search_params, flush_every=10**9)
        yield Reindexer(
            manifest.version, reader, embedder, gallery, limits=settings.limits,
            generations=RedisGenerations(rds, collection), registry=registry, faces=faces,
        )  # fmt: skip
    finally:
        consumer.close(autocommit=False)
        milvus.close()
        rds.close()


def _start_over(
    settings: Settings,
    reader: EnrolmentLogReader,
    group: str,
    milvus: MilvusClient,
    collection: str,
    registry: ModelRegistry,
    version: str,
) -> None:
    """Drop the collection, the group's offsets and the recorded progress: the next run starts at 0."""
    admin = build_admin(settings.kafka)
    try:
        LogOffsets(admin, reader).forget(group)
    finally:
        admin.close()
    milvus.drop_collection(collection)
    registry.reset(version)


def reindex(
    settings: Settings,
    model_dir: Path | str,
    *,
    follow: bool = False,
    restart: bool = False,
    stop: threading.Event | None = None,
    on_batch: Callable[[BatchDone], None] = lambda _: None,
    threads: int | None = None,
    faces: FaceFinder | None = None,
) -> ReindexReport:
    """Re-index ``model_dir``'s version from the enrolment log (see the module docstring)."""
    with reindex_session(settings, model_dir, restart=restart, threads=threads, faces=faces) as reindexer:
        return reindexer.run(
            follow=follow, stop=stop, batch=settings.lifecycle.reindex_batch, on_batch=on_batch
        )


def run_with_progress(
    settings: Settings,
    model_dir: Path | str,
    console: Console,
    *,
    follow: bool = False,
    restart: bool = False,
    stop: threading.Event | None = None,
    threads: int | None = None,
) -> ReindexReport:
    """`reindex` with a rich progress bar (done/total records from the end offsets) and a summary line."""
    columns = (
        TextColumn("[bold]re-index[/bold]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[images]} images"), TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("reindex", total=None, images=0)

        def on_batch(done: BatchDone) -> None:
            progress.update(task, total=done.total, completed=done.done, images=done.images)
            if done.number:
                log.info("committed batch %d: %d/%d records, offsets %s", done.number, done.done, done.total,
                         json.dumps(done.positions))  # fmt: skip

        report = reindex(
            settings, model_dir, follow=follow, restart=restart, stop=stop, on_batch=on_batch, threads=threads
        )
    console.print(
        f"re-indexed {report.version} into {report.collection}: {report.images} images, {report.deleted} "
        f"deleted, {report.refused} refused, {report.records} records in {report.seconds:.1f} s — "
        f"{report.images_per_s:.1f} images/s (forward alone {report.embed_seconds:.1f} s)"
        + ("" if report.caught_up else " [yellow]stopped before the log's end[/yellow]")
    )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="artifact directory of the version to build"
    )
    parser.add_argument("--follow", action="store_true", help="keep tailing the log until SIGTERM/SIGINT")
    parser.add_argument("--restart", action="store_true", help="drop the collection and start from offset 0")
    parser.add_argument("--threads", type=int, help="torch threads (default: lifecycle.reindex_threads)")
    parser.add_argument("--settings-file", type=Path, help="JSON of a Settings object (else the environment)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    overrides = json.loads(args.settings_file.read_text()) if args.settings_file else {}
    settings = load_settings(**overrides)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    report = run_with_progress(
        settings, args.model, Console(stderr=True), follow=args.follow, restart=args.restart, stop=stop,
        threads=args.threads,
    )  # fmt: skip
    raise SystemExit(0 if report.caught_up or args.follow else 1)


if __name__ == "__main__":
    main()
