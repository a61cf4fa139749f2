"""`twinstream demo`: the whole system end to end on one machine, then a report.

Stack up → make the model (the pretrained face tower, or Ray Train for the others; reused when its recipe
matches) → deploy on Ray Serve → start ingest workers → publish enrolments, then arrivals, poison and a
class photo to Kafka → read every answer back from the results topic → report. The `cli.demo` package
is a composition root (like cli.py): with the CLI, it alone imports both `services` and `training`,
lazily where they are heavy, so the core package stays below them.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.demo.report import DemoFigures
from twinstream.config import Settings, TenantBinding, write_settings_file


@dataclass(frozen=True)
class DemoOptions:
    """One demo run.

    Attributes:
        dataset: ``att-faces``, ``digits``, ``omniglot`` or ``folder:PATH`` (the CLI picks one when unnamed:
            `cli.demo.models.choose_dataset`).
        keep_running: Leave the stack, the Serve app and the ingest workers up.
        epochs: Training epochs of a trained tower (0: the data set's default).
        workers: Ray Train workers and ingest workers.
        train_cpus_per_worker: Half a logical CPU per training worker: a Serve app left by --keep-running
            holds CPUs too, and Ray would otherwise wait forever for two whole CPUs on a 2-CPU head.
        max_per_identity: Arriving photos per identity (each is sent three times: identify, two verifies).
        max_identities: Unseen identities enrolled.
        class_size: Students in the class photo (face models; 0: no class photo).
        results_timeout_s: How long to wait for the answers of each phase.
        out_dir: Where the run directory goes.
    """

    dataset: str = "digits"
    keep_running: bool = False
    epochs: int = 0
    workers: int = 2
    train_cpus_per_worker: float = 0.5
    max_per_identity: int = 60
    max_identities: int = 20
    class_size: int = 5
    results_timeout_s: float = 240.0
    out_dir: Path | None = None


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
        from cli.demo.models import find_or_train

        model = find_or_train(
            settings, opts.dataset, opts.epochs, opts.workers, opts.train_cpus_per_worker, console
        )
        from services.app import deploy

        with console.status("deploying the model on Ray Serve…"):
            url = deploy(settings, model)
        console.print(f"HTTP API: {url}  (docs: {url}/docs)")
        ingest = start_ingest(settings, stack.state_dir, opts.workers)
        with console.status(f"waiting for {opts.workers} ingest workers to join the consumer group…"):
            from cli.demo.kafka_io import wait_for_workers

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
    """Send the traffic, read the answers, write the run directory, print the summary."""
    from cli.demo.outcome import write_run
    from cli.demo.traffic import stream_traffic
    from twinstream.model.artifact import load_artifact

    manifest = load_artifact(model).manifest
    traffic = stream_traffic(
        settings,
        manifest,
        opts.dataset,
        out_dir,
        run_id=run_id,
        limits=(opts.max_identities, opts.max_per_identity, opts.class_size),
        timeout_s=opts.results_timeout_s,
        console=console,
    )
    context = {
        "data set": f"{opts.dataset} (unseen identities: {len(traffic.plan.enrolled)})",
        "model": f"{manifest.version}, {manifest.architecture}, {manifest.loss}",
        "artifact's own test AUC (its evaluation, not this traffic)": (
            f"{manifest.metrics.get('auc', float('nan')):.4f}"
        ),
        "setup time (stack, model made or reused, deploy)": f"{setup_s:.0f} s",
    }
    figures, report = write_run(
        settings, manifest, opts.dataset, traffic, out_dir, context=context, run_id=run_id
    )
    print_summary(figures, report, console)
    return figures


def print_summary(figs: DemoFigures, report: Path, console: Console) -> None:
    from rich.table import Table

    from cli.demo.summary import summary_rows

    table = Table(title="twinstream demo")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("chance level", justify="right")
    for row in summary_rows(figs):
        table.add_row(*row)
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
