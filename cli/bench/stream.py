"""Stream figures (not a test): Kafka → ingest worker → Serve → results, beside the raw forward pass.

Against the running stack (`twinstream stack up`), in one run:

- kafka-python's own produce and consume rates for the same image messages (crc32c extension checked);
- end-to-end throughput: a backlog of ``--images`` distinct identify requests drained by the ingest
  worker(s) through the Serve app (first image's Kafka timestamp → last result's Kafka timestamp);
- end-to-end latency p50/p99 (image record timestamp → result record timestamp), publishing at half the
  measured throughput so queueing does not dominate;
- the raw work of the same images in this process (`cli.bench.common.raw_image_work`: decode, cut —
  detection and alignment for a face tower — and the forward at batch 32, scaled to every core), and the
  ratio pipeline / raw.

Writes ``stream-<date>-<tag>.json`` and ``.png`` into `cli.bench.results_dir` and prints a table.

    python -m cli.bench.stream --model face --dataset att-faces   # or --model DIR; none: a quick model
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Annotated, Any

from cli.bench import results_dir

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported (the stack's head uses tokens)

import numpy as np
import typer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from cli.bench.common import BenchError, load_source, machine_busy_s, raw_image_work, resolve_model, unique
from twinstream.codec import decode_result
from twinstream.config import Settings, load_settings, write_settings_file
from twinstream.contracts import ImageRequest, Op

RESULTS = results_dir()
#: Images each data set is benchmarked on, under the settings' data sets directory.
DATASET_IMAGES = {"digits": "digits", "att-faces": "att_faces", "omniglot": "omniglot/images_evaluation.zip"}
TENANT = "sbench"
app = typer.Typer(add_completion=False)


def _stats(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def _producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap,
        acks="all",
        linger_ms=5,
        batch_size=settings.kafka.producer_batch_bytes,
        max_request_size=settings.kafka.max_message_bytes,
    )


def kafka_rates(settings: Settings, topic: str, payloads: list[bytes]) -> dict[str, Any]:
    """kafka-python alone: produce (acks=all) and consume the same messages; MB/s and messages/s."""
    from kafka.record import util

    producer = _producer(settings)
    headers = [("op", b"identify"), ("tenant", TENANT.encode())]
    t0 = time.perf_counter()
    for value in payloads:
        producer.send(topic, value, headers=headers)
    producer.flush()
    produce_s = time.perf_counter() - t0
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen, t0 = 0, time.perf_counter()
    while seen < len(payloads) and time.perf_counter() - t0 < 120:
        seen += sum(len(batch) for batch in consumer.poll(timeout_ms=500, max_records=1000).values())
    consume_s = time.perf_counter() - t0
    consumer.close()
    size = sum(map(len, payloads)) / 1e6
    return {
        "crc32c_extension": util.crc32c_c is not None,
        "messages": len(payloads),
        "mean_bytes": size * 1e6 / len(payloads),
        "produce_msgs_per_s": len(payloads) / produce_s,
        "produce_mb_per_s": size / produce_s,
        "consume_msgs_per_s": seen / consume_s,
        "consume_mb_per_s": size / consume_s,
    }


class ResultLog:
    """The results topic, read after the stream has drained: request id → (timestamp, value, headers).

    Nothing reads it while the stream runs: the bench shares the cores with the pipeline it measures,
    and every figure comes from the records' own Kafka timestamps, so it can be read afterwards.
    """

    def __init__(self, settings: Settings) -> None:
        self.arrived: dict[str, tuple[int, bytes, Any]] = {}
        topic = settings.kafka.results_topic
        self._consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
        tps = [TopicPartition(topic, p) for p in self._consumer.partitions_for_topic(topic) or ()]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)

    def collect(self, ids: list[str], timeout_s: float = 60.0) -> bool:
        """Read on until every id of ``ids`` has arrived (or ``timeout_s``); whether all did."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not all(i in self.arrived for i in ids):
            for batch in self._consumer.poll(timeout_ms=200, max_records=5000).values():
                for m in batch:  # the key is the request id (DESIGN's Kafka contract)
                    self.arrived[m.key.decode()] = (int(m.timestamp), m.value, m.headers)
        return all(i in self.arrived for i in ids)

    def seen(self, ids: list[str]) -> dict[str, tuple[int, int]]:
        """Request id → (result record timestamp, source image timestamp), in ms, for ids that arrived."""
        out = {}
        for rid in ids:
            if rid in self.arrived:
                ts, value, headers = self.arrived[rid]
                result = decode_result(value, headers)
                out[rid] = (ts, result.source.timestamp_ms if result.source else 0)
        return out

    def timings(self, ids: list[str]) -> list[tuple[float, float, float, float]]:
        """The pipeline's (decode, embed, gallery, total) seconds of each result of ``ids``."""
        out = []
        for rid in ids:
            t = decode_result(self.arrived[rid][1], self.arrived[rid][2]).timings
            out.append((t.decode_s, t.embed_s, t.gallery_s, t.total_s))
        return out

    def close(self) -> None:
        self._consumer.close()


def wait_drained(settings: Settings, ends: dict[int, int], timeout_s: float) -> None:
    """Wait until the ingest group has committed every images partition up to ``ends``.

    Workers commit only after the batch's results are acknowledged, so a drained group means every
    result is on the results topic. One offset fetch per 0.2 s: next to nothing on the shared cores.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    topic, deadline = settings.kafka.images_topic, time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            group = settings.ingest.group_id
            try:
                committed = admin.list_group_offsets(group).get(group) or {}
            except KafkaError as exc:  # a fresh broker has no group coordinator for the first seconds
                if not exc.retriable:
                    raise
                committed = {}
            done = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic}
            if all(done.get(p, -1) >= end for p, end in ends.items()):
                return
            time.sleep(0.2)
    finally:
        admin.close()
    raise RuntimeError(f"group {settings.ingest.group_id} did not drain {topic} within {timeout_s:.0f}s")


class Workers:
    """``workers`` ingest worker processes (``python -m services.ingest.main``, as in production)."""

    def __init__(self, settings: Settings, workers: int) -> None:
        from services.ingest.supervisor import worker_command

        self._settings = settings
        self._dir = tempfile.TemporaryDirectory(prefix="twinstream-sbench-")
        settings_file = write_settings_file(settings, Path(self._dir.name) / "settings.json")
        self._procs = [
            subprocess.Popen(
                worker_command(i, settings_file), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for i in range(workers)
        ]

    def stage_totals(self) -> dict[str, float]:
        """Sum of every worker's stage seconds, batches and records (from their /metrics endpoints)."""
        totals: dict[str, float] = {}
        targets = self._settings.paths.state_dir / "prometheus" / "targets"
        for i in range(len(self._procs)):
            entry = targets / f"twinstream-ingest-{self._settings.ingest.group_id}-{i}.json"
            url = f"http://{json.loads(entry.read_text())[0]['targets'][0]}/metrics"
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
            for family in text_string_to_metric_families(text):  # prometheus-client's own parser
                for sample in family.samples:
                    if sample.name == "twinstream_ingest_stage_seconds_total":
                        key = sample.labels["stage"]
                    elif sample.name == "twinstream_ingest_batch_size_count":
                        key = "batches"
                    elif sample.name == "twinstream_ingest_batch_size_sum":
                        key = "records"
                    else:
                        continue
                    totals[key] = totals.get(key, 0.0) + sample.value
        return totals

    def stop(self) -> None:
        for proc in self._procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._dir.cleanup()


def _publish(
    settings: Settings, payloads: list[bytes], prefix: str, rate: float | None = None
) -> tuple[list[str], dict[int, int], int]:
    """Publish ``payloads``; their request ids, the images topic's end offsets and the wall time (ms)
    at which the last one was acknowledged."""
    producer = _producer(settings)
    # Request ids unique to this run (the group id names it), as a producer's would be: the pipeline
    # reads the result store for each id first (replays are answered from it).
    ids = [f"{settings.ingest.group_id}-{prefix}-{i}" for i in range(len(payloads))]
    ends: dict[int, int] = {}
    futures = []
    t0 = time.perf_counter()
    for i, (rid, value) in enumerate(zip(ids, payloads, strict=True)):
        if rate:
            time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        headers = [("op", b"identify"), ("tenant", TENANT.encode()), ("request-id", rid.encode())]
        futures.append(producer.send(settings.kafka.images_topic, value, headers=headers))
    producer.flush()
    acked_ms = int(time.time() * 1000)
    for future in futures:
        meta = future.get(timeout=0)
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    producer.close()
    return ids, ends, acked_ms


def _embed_stage_rate(timings: list[tuple[float, float, float, float]]) -> float:
    """Images per second of the pipeline's embed stage (cache lookups + the embedder call), counting each
    pipeline call once: the results of one call share its (embed, total) seconds."""
    calls: dict[tuple[float, float], int] = {}
    for _, embed_s, _, total_s in timings:
        calls[(embed_s, total_s)] = calls.get((embed_s, total_s), 0) + 1
    seconds = sum(embed_s for embed_s, _ in calls)
    return sum(calls.values()) / seconds if seconds > 0 else 0.0


def end_to_end(settings: Settings, log: ResultLog, source: list[bytes], count: int) -> dict[str, Any]:
    """Drain a backlog (throughput), then publish at half that rate (latency).

    Throughput is the drain rate once the backlog is published: results stamped after the bench's
    producer finished, over the time from then to the last result (the bench's own producer shares
    the cores while it runs; a production producer does not). The rate over the whole run, from the
    first image's timestamp, is kept beside it.
    """
    backlog, ends, published_ms = _publish(settings, unique(source, count), "backlog")
    busy_before = machine_busy_s()
    wait_drained(settings, ends, 600)
    busy_after = machine_busy_s()
    if not log.collect(backlog):
        raise RuntimeError(f"only {sum(i in log.arrived for i in backlog)}/{count} results arrived")
    done = list(log.seen(backlog).values())
    first_in, last_out = min(src for _, src in done), max(out for out, _ in done)
    after = sum(1 for out, _ in done if out > published_ms)
    if last_out - published_ms < 1000 or after < count / 4:
        raise RuntimeError("the backlog drained while it was being published: raise --images")
    rate = after / ((last_out - published_ms) / 1000)
    drain_cpu_s = None if busy_before is None or busy_after is None else busy_after - busy_before
    paced, ends, _ = _publish(settings, unique(source, min(count, int(rate * 10)) or 1, 7), "paced", rate / 2)
    wait_drained(settings, ends, 300)
    log.collect(paced)
    latencies = [(out - src) / 1000 for out, src in log.seen(paced).values()]
    return {
        "images_per_s": rate,
        "images": count,
        "drained_after_publish": after,
        "drain_seconds": (last_out - published_ms) / 1000,
        "images_per_s_with_bench_producer": count / ((last_out - first_in) / 1000),
        # Every process's CPU from the end of publishing to the drain, per image drained meanwhile: what
        # an optimisation changes, steadier than images/s on a machine whose neighbours vary.
        "machine_cpu_ms_per_image": None if drain_cpu_s is None else 1000 * drain_cpu_s / after,
        "cores_busy_while_draining": None
        if drain_cpu_s is None
        else drain_cpu_s / ((last_out - published_ms) / 1000),
        "paced_rate_per_s": rate / 2,
        "latency": _stats(latencies),
        "backlog_latency": _stats([(o - s) / 1000 for o, s in done]),
        "embed_stage_images_per_s": _embed_stage_rate(log.timings(backlog)),
        "pipeline_timings_mean_s": dict(
            zip(
                ("decode", "embed", "gallery", "total"),
                np.mean(log.timings(backlog), axis=0).tolist(),
                strict=True,
            )
        ),
    }


def bench_settings(name: str, poll: int | None, replicas: int | None) -> Settings:
    """The stack's settings with the bench's own app, topics and group; ``replicas`` embedders if given.

    More replicas share the head's logical CPUs with the pipeline replica (Ray only schedules by them);
    each replica runs one torch thread.
    """
    base = load_settings()
    replicas = replicas or base.serve.replicas
    cpus = base.ray.num_cpus / replicas
    return base.model_copy(
        update={
            "serve": base.serve.model_copy(
                update={
                    "app_name": f"{base.serve.app_name}-sbench",
                    "route_prefix": "/sbench",
                    "replicas": replicas,
                    "cpus_per_replica": min(base.serve.cpus_per_replica, round(cpus, 2)),
                    "threads_per_replica": 1,
                }
            ),
            "milvus": base.milvus.model_copy(update={"collection_prefix": "sbench"}),
            "kafka": base.kafka.model_copy(
                update={
                    "images_topic": f"{name}.images",
                    "results_topic": f"{name}.results",
                    "dlq_topic": f"{name}.dlq",
                }
            ),
            "ingest": base.ingest.model_copy(
                update={
                    "group_id": f"{name}-ingest",
                    "max_poll_records": poll or base.ingest.max_poll_records,
                }
            ),
        }
    )


def deploy(settings: Settings, model_dir: Path, source: list[bytes], subjects: int) -> None:
    from ray import serve

    from services.app import deploy as deploy_app
    from services.deployments import PIPELINE_DEPLOYMENT

    deploy_app(settings, model_dir)
    handle = serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=settings.serve.app_name)
    enrol = [
        ImageRequest(f"e{i}", Op.ENROLL, img, TENANT, f"s{i}")
        for i, img in enumerate(unique(source, subjects))
    ]
    handle.process.remote(enrol).result()


def write(result: dict[str, Any], tag: str = "") -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"stream-{time.strftime('%Y-%m-%d')}{'-' + tag if tag else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    e2e, kafka = result["end_to_end"], result["kafka_python"]
    bars = {
        "stream end-to-end": e2e["images_per_s"],
        "raw (cut + forward), all cores": result["raw"]["images_per_s_all_cores"],
        "kafka-python consume": kafka["consume_msgs_per_s"],
        "kafka-python produce": kafka["produce_msgs_per_s"],
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.barh(list(bars), list(bars.values()), color="tab:blue")
    ax1.set_xscale("log")
    ax1.set_xlabel("images (messages) / s, log scale")
    ax1.set_title(f"pipeline / raw (all cores) = {result['ratio_pipeline_to_raw']:.2f}")
    lat = {
        "paced p50": e2e["latency"]["p50_ms"],
        "paced p99": e2e["latency"]["p99_ms"],
        "backlog p50": e2e["backlog_latency"]["p50_ms"],
        "backlog p99": e2e["backlog_latency"]["p99_ms"],
    }
    ax2.barh(list(lat), list(lat.values()), color="tab:orange")
    ax2.set_xlabel("Kafka timestamp → result (ms)")
    ax2.set_title(f"latency (paced at {e2e['paced_rate_per_s']:.0f}/s)")
    model = result["model"]
    fig.suptitle(
        f"twinstream stream · {result['machine']} · model {result['model_version']} "
        f"({model['dataset']}, {model['input']['height']}x{model['input']['width']}, "
        f"{model['test_time_views']} view(s)) · {result['workers']} workers"
    )
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    return stem.with_suffix(".json"), stem.with_suffix(".png")


def show(result: dict[str, Any], console: Console) -> None:
    e2e, kafka = result["end_to_end"], result["kafka_python"]
    table = Table("figure", "value")
    table.add_row("stream end-to-end (drain)", f"{e2e['images_per_s']:.1f} images/s")
    table.add_row(
        "  with the bench's producer running", f"{e2e['images_per_s_with_bench_producer']:.1f} images/s"
    )
    if e2e.get("machine_cpu_ms_per_image") is not None:
        table.add_row(
            "  machine CPU per image (drain)",
            f"{e2e['machine_cpu_ms_per_image']:.3f} ms ({e2e['cores_busy_while_draining']:.2f} cores busy)",
        )
    table.add_row(
        "latency p50 / p99 (paced)", f"{e2e['latency']['p50_ms']:.0f} / {e2e['latency']['p99_ms']:.0f} ms"
    )
    raw = result["raw"]
    table.add_row(
        "raw per image, one core",
        f"cut {raw['cut_ms_per_image']:.2f} ms + forward "
        f"{raw['forward_batch32_ms_per_image']:.2f} ms (batch 32)",
    )
    table.add_row("raw, all cores", f"{raw['images_per_s_all_cores']:.1f} images/s")
    table.add_row("pipeline / raw (all cores)", f"{result['ratio_pipeline_to_raw']:.3f} (goal 0.8)")
    table.add_row("served embed stage / raw", f"{result['ratio_served_embed_to_raw']:.3f}")
    table.add_row(
        "kafka-python produce",
        f"{kafka['produce_msgs_per_s']:.0f} msg/s ({kafka['produce_mb_per_s']:.1f} MB/s)",
    )
    table.add_row(
        "kafka-python consume",
        f"{kafka['consume_msgs_per_s']:.0f} msg/s ({kafka['consume_mb_per_s']:.1f} MB/s)",
    )
    table.add_row("crc32c extension", str(kafka["crc32c_extension"]))
    per = {
        k: f"{1000 * v / max(1, result['worker_batches']):.0f}"
        for k, v in result["worker_stage_seconds"].items()
    }
    table.add_row("worker ms per batch by stage", ", ".join(f"{k} {v}" for k, v in per.items()))
    console.print(table)


@app.command()
def main(
    model: Annotated[
        str | None, typer.Option(help="artifact directory or 'face' (default: a quick model of --dataset)")
    ] = None,
    dataset: Annotated[
        str, typer.Option(help="digits | att-faces | omniglot: quick model and images when not given")
    ] = "digits",
    count: Annotated[int, typer.Option("--images", help="images in the backlog")] = 6000,
    poll: Annotated[
        int | None, typer.Option(help="ingest max_poll_records (default: the settings', 512)")
    ] = None,
    subjects: Annotated[int, typer.Option(help="subjects enrolled in the bench gallery")] = 200,
    workers: Annotated[int, typer.Option(help="ingest worker processes in the group")] = 2,
    replicas: Annotated[
        int | None,
        typer.Option(help="embedder replicas, one torch thread each (default: the stack's, 1)"),
    ] = None,
    images_from: Annotated[
        str | None,
        typer.Option(help="digits, a root/<identity>/ folder or a zip of PNGs (default: --dataset's)"),
    ] = None,
    tag: Annotated[
        str | None, typer.Option(help="result files are stream-<date>-<tag>.json (default: --dataset)")
    ] = None,
) -> None:
    """Deploy a bench app, run the ingest workers, measure, write JSON + PNG, print the table."""
    if dataset not in DATASET_IMAGES:
        raise typer.BadParameter(f"--dataset must be one of {sorted(DATASET_IMAGES)}")
    tag = dataset if tag is None else tag
    from ray import serve

    from cli.stack.kafka_admin import ensure_topics

    name = f"sbench-{uuid.uuid4().hex[:6]}"
    settings = bench_settings(name, poll, replicas)
    poll = settings.ingest.max_poll_records
    k = settings.kafka
    ensure_topics(
        settings,
        {
            k.images_topic: k.partitions,
            k.results_topic: k.partitions,
            k.dlq_topic: 1,
            f"{name}.raw": k.partitions,
        },
    )
    if images_from is None:
        images_from = (
            "digits" if dataset == "digits" else str(settings.datasets_dir / DATASET_IMAGES[dataset])
        )
    try:
        model_dir = resolve_model(model, settings, dataset)
        source = load_source(images_from)
    except BenchError as exc:
        Console().print(f"bench stream: {exc}", style="red", markup=False)
        raise typer.Exit(2) from None
    kafka = kafka_rates(settings, f"{name}.raw", unique(source, count))
    deploy(settings, model_dir, source, subjects)
    log = ResultLog(settings)
    pool = Workers(settings, workers)
    try:
        warm, ends, _ = _publish(settings, unique(source, 4 * poll, 3), "warm")
        wait_drained(settings, ends, 180)
        if not log.collect(warm):
            raise RuntimeError("the ingest workers did not answer the warm-up images")
        e2e = end_to_end(settings, log, source, count)
        stages = pool.stage_totals()
    finally:
        pool.stop()
        log.close()
        serve.delete(settings.serve.app_name)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    # Raw: decode + cut (detection and alignment for faces) + forward at batch 32, on every core.
    raw = raw_image_work(model_dir, settings, source, 5.0)
    result = {
        "machine": f"{platform.machine()} · {os.cpu_count()} CPUs",
        "at": time.strftime("%F %T"),
        "load_average_1m_5m_15m": os.getloadavg(),
        "model_version": model_dir.name,
        "model": {k: manifest[k] for k in ("dataset", "architecture", "embedding_dim", "input")}
        | {"test_time_views": 9 if manifest.get("test_time_shifts") else 1},
        "images_from": images_from,
        "gallery_subjects": subjects,
        "max_poll_records": poll,
        "workers": workers,
        "serve": settings.serve.model_dump(exclude={"api_keys"}),
        "kafka_python": kafka,
        "end_to_end": e2e,
        "raw": raw,
        "ratio_pipeline_to_raw": e2e["images_per_s"] / raw["images_per_s_all_cores"],
        "worker_stage_seconds": {k: v for k, v in stages.items() if k not in ("batches", "records")},
        "worker_batches": int(stages.get("batches", 0)),
        "worker_images": int(stages.get("records", 0)),
        # The served embedding path alone (cache lookups + the embedder call, queueing included) vs raw.
        "ratio_served_embed_to_raw": e2e["embed_stage_images_per_s"] / raw["images_per_s_all_cores"],
    }
    paths = write(result, tag)
    console = Console()
    show(result, console)
    console.print(f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    app()
