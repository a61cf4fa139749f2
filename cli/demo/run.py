"""`twinstream demo`: the whole system end to end on one machine, then a report.

Stack up → train with Ray Train (or reuse a matching artifact) → deploy on Ray Serve → start ingest
workers → publish enrolments, arrivals and poison to Kafka → read every answer back from the results
topic → report. This module is a composition root (like cli.py): it alone, with the CLI, imports
`services` and `training`, lazily, so the core package stays below them.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.demo.report import DemoCase, DemoFigures, Observed
from twinstream.config import Settings, TenantBinding, write_settings_file
from twinstream.contracts import Op

DEMO_DATASETS = ("digits", "omniglot", "att-faces")


@dataclass(frozen=True)
class DemoOptions:
    dataset: str = "digits"
    keep_running: bool = False
    epochs: int = 0  # 0: the data set's default
    workers: int = 2
    # Half a logical CPU per training worker: a Serve app left by --keep-running holds CPUs too, and
    # Ray would otherwise wait forever for two whole CPUs on a 2-CPU head.
    train_cpus_per_worker: float = 0.5
    max_per_identity: int = 60
    max_identities: int = 20
    results_timeout_s: float = 240.0
    out_dir: Path | None = None


@dataclass(frozen=True)
class DemoTraining:
    """Training options per data set that finish within minutes on 2 cores."""

    epochs: int
    miner: str
    time_budget_s: float
    target_far: float = 1e-3


TRAINING_DEFAULTS = {
    # Digits has 5 training and 3 unseen classes: FAR 1e-3 on its few validation pairs leaves almost
    # no true accepts, so the demo calibrates its digits model at 1e-2 (the product default stays 1e-3).
    "digits": DemoTraining(epochs=25, miner="none", time_budget_s=150.0, target_far=1e-2),
    "att-faces": DemoTraining(epochs=40, miner="semihard", time_budget_s=180.0),
    "omniglot": DemoTraining(epochs=6, miner="semihard", time_budget_s=300.0),
}


def find_or_train(settings: Settings, opts: DemoOptions, console: Console) -> Path:
    """Reuse the artifact a previous demo trained for this data set, else train one with Ray Train."""
    from training.config import LossKind, MinerKind, TrainConfig
    from training.driver import train_with_ray
    from training.loop import RayRun
    from twinstream.model.artifact import ArtifactError, load_artifact

    models_dir = settings.paths.models_dir.resolve()
    pointer = models_dir / f"demo-{opts.dataset.replace(':', '_').replace('/', '_')}.json"
    defaults = TRAINING_DEFAULTS.get(opts.dataset, TRAINING_DEFAULTS["att-faces"])
    cfg = TrainConfig(
        dataset=opts.dataset, data_dir=str(settings.datasets_dir.resolve()), loss=LossKind.TRIPLET,
        miner=MinerKind(defaults.miner), epochs=opts.epochs or defaults.epochs,
        time_budget_s=defaults.time_budget_s,
    )  # fmt: skip
    recipe = {**cfg.to_dict(), "target_far": defaults.target_far, "workers": opts.workers}
    recipe.pop("data_dir", None)
    if pointer.exists():
        saved = json.loads(pointer.read_text())
        path = Path(saved["artifact"])
        try:
            load_artifact(path)
            if saved.get("recipe") == recipe:
                console.print(f"reusing the model an earlier demo trained with the same recipe: {path}")
                return path
        except ArtifactError as exc:
            console.print(f"[yellow]not reusing {path}: {exc}[/yellow]")
    console.rule(f"training on {opts.dataset} with Ray Train ({opts.workers} workers)")
    run = RayRun(workers=opts.workers, cpus_per_worker=opts.train_cpus_per_worker)
    path = train_with_ray(cfg, run, models_dir, target_far=defaults.target_far)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"artifact": str(path), "recipe": recipe}, default=str))
    return path


def start_ingest(settings: Settings, state_dir: Path, workers: int) -> list[Any]:
    """Ingest workers as processes of their own (as `twinstream ingest --workers N` runs them), by pid.

    The workers get this run's settings as a file, so a demo against a non-default stack (the system test's)
    reaches the same broker, gallery and Serve app. The file holds the secrets in clear and is readable by
    its owner only.
    """
    from cli.stack.process import ManagedProcess

    run_dir = state_dir / "demo"
    run_dir.mkdir(parents=True, exist_ok=True)
    settings_file = write_settings_file(settings, run_dir / "settings.json")
    procs = []
    for index in range(workers):
        proc = ManagedProcess(f"ingest-{index}", run_dir)
        if not proc.alive():
            argv = [sys.executable, "-m", "services.ingest.main", "--index", str(index)]
            proc.start([*argv, "--settings-file", str(settings_file)], env={"RAY_AUTH_MODE": "token"})
        procs.append(proc)
    return procs


def wait_for_workers(settings: Settings, workers: int, timeout_s: float = 180.0) -> None:
    """Block until the ingest group has ``workers`` members holding every partition."""
    from services.ingest.clients import build_admin
    from services.ingest.status import group_status
    from services.kafka_clients import new_consumer

    admin = build_admin(settings.kafka)
    consumer = new_consumer(settings.kafka, client_id="twinstream-demo")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            status = group_status(admin, consumer, settings.ingest.group_id, settings.kafka.images_topic)
            owned = sum(len(m.partitions) for m in status.members)
            if len(status.members) >= workers and owned >= settings.kafka.partitions:
                return
            time.sleep(1.0)
    finally:
        admin.close()
        consumer.close()
    raise TimeoutError(f"ingest workers did not join group {settings.ingest.group_id} in {timeout_s:.0f}s")


def publish_cases(
    settings: Settings, cases: list[DemoCase], tenant: str, poison: list, run_id: str = "demo"
) -> list[DemoCase]:
    """Publish with a plain KafkaProducer and the header contract, as any client would."""
    from services.kafka_clients import new_producer

    producer = new_producer(
        settings.kafka,
        client_id="twinstream-demo",
        max_request_size=settings.kafka.max_message_bytes,
        linger_ms=5,
    )
    futures = []
    for case in cases:
        headers = [
            ("op", case.op.value.encode()),
            ("tenant", tenant.encode()),
            ("request-id", case.request_id.encode()),
        ]
        if case.claimed_subject:
            headers.append(("subject", case.claimed_subject.encode()))
        assert case.image_path is not None
        futures.append(
            producer.send(settings.kafka.images_topic, value=case.image_path.read_bytes(), headers=headers)
        )
    poison_cases = []
    for n, (payload, extra, reason) in enumerate(poison):
        rid = f"{run_id}-poison-{n}"
        headers = [("tenant", tenant.encode()), ("request-id", rid.encode())]
        headers += [(k, v.encode()) for k, v in extra.items()]
        futures.append(producer.send(settings.kafka.images_topic, value=payload, headers=headers))
        op = Op(extra["op"]) if extra["op"] in {o.value for o in Op} else Op.IDENTIFY
        poison_cases.append(DemoCase(rid, op, None, "", poison=str(reason)))
    for future in futures:
        future.get(timeout=60)
    producer.close()
    return poison_cases


def collect(settings: Settings, wanted: set[str], timeout_s: float) -> dict[str, Observed]:
    """Read the results topic until every request id has an answer (or the timeout passes)."""
    import threading

    from services.ingest.results_reader import build_reader, read_results

    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    seen: dict[str, Observed] = {}
    consumer = build_reader(settings.kafka)
    try:
        for record in read_results(
            consumer, settings.kafka.results_topic, follow=True, request_ids=wanted, stop=stop
        ):
            r = record.result
            produced = r.source.timestamp_ms if r.source else record.timestamp_ms
            seen.setdefault(r.request_id, Observed(r, produced, record.timestamp_ms))
            if len(seen) >= len(wanted):
                break
    finally:
        timer.cancel()
        consumer.close()
    return seen


def run_demo(settings: Settings, opts: DemoOptions, console: Console) -> DemoFigures:
    """The whole demo; returns the figures it reported (the system test checks them against the topic)."""
    from cli.stack import Stack, StackError

    if settings.kafka.tenant_binding is TenantBinding.TOPIC:  # it plays every producer on the shared topic
        raise StackError("the demo needs TWINSTREAM_KAFKA__TENANT_BINDING=header (the shared images topic)")
    started = time.perf_counter()
    stack = Stack(settings)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    out_dir = (
        opts.out_dir or Path("runs")
    ) / f"demo-{opts.dataset.replace(':', '_').replace('/', '_')}-{run_id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    ingest: list[Any] = []
    try:
        with console.status("starting the stack…"):
            statuses = stack.up()
        from cli.console import print_parts

        print_parts("stack", statuses)
        from cli.stack.raytools import use_token_auth

        use_token_auth()
        import ray

        if not ray.is_initialized():
            ray.init(address=stack.part("ray").endpoint, log_to_driver=False)
        model = find_or_train(settings, opts, console)
        from services.app import deploy

        with console.status("deploying the model on Ray Serve…"):
            url = deploy(settings, model)
        console.print(f"HTTP API: {url}  (docs: {url}/docs)")
        ingest = start_ingest(settings, stack.state_dir, opts.workers)
        with console.status(f"waiting for {opts.workers} ingest workers to join the consumer group…"):
            wait_for_workers(settings, opts.workers)
        figures = stream_and_report(
            settings,
            opts,
            model,
            out_dir,
            run_id=run_id,
            console=console,
            setup_s=time.perf_counter() - started,
        )
        if opts.keep_running:
            print_try_it(settings, url, console)
        return figures
    finally:
        if not opts.keep_running:
            for proc in ingest:
                proc.stop()
            import ray

            if ray.is_initialized():
                ray.shutdown()
            stack.down()
            console.print("stack stopped (use --keep-running to keep it)")


def stream_and_report(
    settings: Settings,
    opts: DemoOptions,
    model: Path,
    out_dir: Path,
    *,
    run_id: str,
    console: Console,
    setup_s: float,
) -> DemoFigures:
    from cli.demo.pictures import confusion_png, latency_png, roc_png, samples_png, write_markdown
    from cli.demo.plan import build_cases, png_bytes, poison_payloads
    from cli.demo.report import compute_figures
    from training.datasets import load_dataset
    from twinstream.model.artifact import load_artifact

    manifest = load_artifact(model).manifest
    test = load_dataset(opts.dataset, settings.datasets_dir, seed=0).test
    keep = [
        i
        for i, lab in enumerate(test.labels)
        if int(lab) in sorted(set(map(int, test.labels)))[: opts.max_identities]
    ]
    cases, enrolled = build_cases(
        [test.images[i] for i in keep], [int(test.labels[i]) for i in keep], test.class_names, out_dir,
        run_id=run_id, max_per_identity=opts.max_per_identity,
    )  # fmt: skip
    tenant = f"demo-{run_id}"
    enrol = [c for c in cases if c.op is Op.ENROLL]
    arrivals = [c for c in cases if c.op is not Op.ENROLL]
    console.rule(f"streaming {len(cases)} images through Kafka (tenant {tenant})")
    publish_cases(settings, enrol, tenant, [])
    observed = collect(settings, {c.request_id for c in enrol}, opts.results_timeout_s)
    poison = poison_payloads(png_bytes(test.images[keep[0]]))
    poison_cases = publish_cases(settings, arrivals, tenant, poison, run_id)
    all_cases = cases + poison_cases
    observed |= collect(settings, {c.request_id for c in arrivals + poison_cases}, opts.results_timeout_s)
    figures = compute_figures(all_cases, observed, timed=[c.request_id for c in arrivals + poison_cases])
    answered = {k: v for k, v in observed.items() if v.result.op is not Op.ENROLL}
    pictures = [
        roc_png(all_cases, observed, 0.5, out_dir / "roc.png"),
        confusion_png(all_cases, observed, out_dir / "identify_confusion.png"),
        latency_png(answered, out_dir / "latency.png"),
        samples_png(all_cases, observed, enrolled, out_dir / "sample_matches.png"),
    ]
    context = {
        "data set": f"{opts.dataset} (unseen identities: {len(enrolled)})",
        "model": f"{manifest.version} (threshold {manifest.threshold:.3f} at FAR {manifest.target_far:g})",
        "artifact's own test AUC": f"{manifest.metrics.get('auc', float('nan')):.4f}",
        "setup time (stack, training or reuse, deploy)": f"{setup_s:.0f} s",
    }
    report = write_markdown(figures, context, pictures, out_dir / "report.md")
    (out_dir / "figures.json").write_text(
        json.dumps(figures.__dict__ | {"run_id": run_id, "tenant": tenant}, default=str, indent=2)
    )
    print_summary(figures, report, console)
    return figures


def print_summary(figs: DemoFigures, report: Path, console: Console) -> None:
    from rich.table import Table

    table = Table(title="twinstream demo")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("requests answered", f"{figs.answered}/{figs.requests}")
    table.add_row("one-shot identification, nearest subject", f"{figs.identify_rank1_accuracy:.1%}")
    table.add_row("one-shot identification, open set", f"{figs.identify_accuracy:.1%}")
    table.add_row("verification accuracy (calibrated threshold)", f"{figs.verify_accuracy:.1%}")
    table.add_row("verification AUC", f"{figs.verify_auc:.4f}")
    table.add_row("calibration error (ECE)", f"{figs.ece:.4f}")
    table.add_row("throughput", f"{figs.throughput_per_s:.1f}/s")
    table.add_row(
        "latency p50 / p99", f"{figs.latency_p50_s * 1000:.0f} / {figs.latency_p99_s * 1000:.0f} ms"
    )
    table.add_row("DLQ by reason", ", ".join(f"{k}={v}" for k, v in figs.dlq_by_reason.items()) or "none")
    console.print(table)
    console.print(f"report: {report} (+ PNGs beside it)")


def print_try_it(settings: Settings, url: str, console: Console) -> None:
    k = settings.kafka
    console.rule("the system keeps running: try it")
    console.print(f"HTTP API docs:  {url}/docs")
    console.print(f"Prometheus:     http://127.0.0.1:{settings.metrics.prometheus_port}")
    console.print(f"Ray dashboard:  {settings.ray.dashboard_url}")
    console.print(f"kcat -P -b {k.bootstrap} -t {k.images_topic} -H op=enroll -H subject=alice face.png")
    console.print("twinstream publish faces/ --op enroll --subject-from-dir")
    console.print("twinstream results --follow")
    console.print("stop everything: twinstream stack down")
