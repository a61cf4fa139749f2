"""`twinstream train` and `twinstream eval`: train a tower into an artifact, evaluate an artifact.

Settings are built here, once per command, and only plain values are passed down to `training`.
`python -m training.train` (what `ray job submit` runs) takes the same options.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.console import console, settings_or_exit
from training.config import FACE_ARCHITECTURE as FACE
from training.config import LossKind, MinerKind, TrainConfig

DatasetOpt = Annotated[str, typer.Option(help="digits | omniglot | att-faces | folder:PATH")]
DataDirOpt = Annotated[Path | None, typer.Option(help="shared data sets (default: TWINSTREAM_DATA_DIR)")]


def _metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.4f}")
    return table


def _every_enrolment(figures: dict[str, float]) -> float:
    return next((v for k, v in figures.items() if k.endswith("_every_enrolment")), float("nan"))


#: Rows of the comparison table: (label, part of the record, figure); one column per tower.
_COMPARED = (
    ("val EER", "validation", "eer"),
    ("val one-shot, every enrolment", "validation", ""),
    ("val d′", "validation", "d_prime"),
    ("test EER", "test", "eer"),
    ("test one-shot, every enrolment", "test", ""),
    ("test AUC", "test", "auc"),
    ("test ECE", "test", "ece"),
    ("test FAR at the verify threshold", "test", "far_at_threshold"),
)


def _comparison_table(comparison: dict[str, dict[str, Any]], shipped: str) -> Table:
    table = Table(title=f"towers compared; shipped: {shipped} (chosen on the validation identities)")
    table.add_column("figure", no_wrap=True)
    for name in comparison:
        table.add_column(name + (" *" if name == shipped else ""), justify="right", no_wrap=True)
    for label, part, key in _COMPARED:
        values = [fig[part].get(key, float("nan")) if key else _every_enrolment(fig[part]) for fig in
                  comparison.values()]  # fmt: skip
        table.add_row(label, *(f"{v:.4f}" for v in values))
    return table


def train(
    dataset: DatasetOpt = "digits",
    loss: Annotated[LossKind, typer.Option(help="objective")] = LossKind.TRIPLET,
    miner: Annotated[MinerKind, typer.Option(help="online mining")] = MinerKind.SEMIHARD,
    margin: Annotated[
        float | None, typer.Option(help="loss margin (default: 0.2 triplet, 1.0 contrastive)")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    workers: Annotated[int, typer.Option(min=0, help="Ray Train workers; 0 trains in this process")] = 2,
    gpu: Annotated[bool, typer.Option("--gpu/--cpu", help="one GPU per worker, NCCL")] = False,
    cpus_per_worker: Annotated[float, typer.Option(min=0.01)] = 1.0,
    threads: Annotated[int, typer.Option(min=1, help="torch threads per worker")] = 1,
    embedding_dim: Annotated[int, typer.Option(min=0, help="0: the architecture's (64; face tower 128)")] = 0,
    architecture: Annotated[
        str, typer.Option(help="auto (face tower for att-faces, else conv4) | conv4 | conv4-wide | " + FACE)
    ] = "auto",
    pretrained: Annotated[
        bool, typer.Option("--pretrained/--no-pretrained", help="start the face tower from dlib's weights")
    ] = True,
    freeze: Annotated[
        str,
        typer.Option(help="pretrained stages left fixed: auto (levels:4) | none | levels:N | stem,level32,…"),
    ] = "auto",
    baseline_budget: Annotated[
        float, typer.Option(min=0.0, help="a fine-tune is compared with a Conv-4 trained this long (0: none)")
    ] = 120.0,
    classes_per_batch: Annotated[int, typer.Option(help="P of P×K (0: data set default)")] = 0,
    samples_per_class: Annotated[int, typer.Option(help="K of P×K (0: data set default)")] = 0,
    lr: Annotated[float, typer.Option(min=0.0, help="0: 1e-3 from scratch, 1e-4 fine-tuning")] = 0.0,
    augment: Annotated[bool, typer.Option("--augment/--no-augment")] = True,
    time_budget: Annotated[float, typer.Option(help="stop after this many seconds (0: none)")] = 0.0,
    steps_per_epoch: Annotated[int, typer.Option(help="P×K steps per worker per epoch (0: one pass)")] = 0,
    val_every: Annotated[int, typer.Option(min=1, help="validate every N epochs")] = 1,
    test_time_shifts: Annotated[
        int | None,
        typer.Option(min=0, help="test-time views shifted by N px, averaged (default: data set's)"),
    ] = None,
    target_far: Annotated[float, typer.Option(help="false accept rate the threshold is chosen at")] = 1e-3,
    seed: int = 0,
    out: Annotated[
        Path | None, typer.Option(help="models directory (default: TWINSTREAM_PATHS__MODELS_DIR)")
    ] = None,
    data_dir: DataDirOpt = None,
    storage: Annotated[Path | None, typer.Option(help="Ray Train checkpoint storage")] = None,
    max_failures: Annotated[int, typer.Option(help="worker-group restarts allowed")] = 2,
    crash_after_epoch: Annotated[int, typer.Option(hidden=True)] = 0,
) -> None:
    """Train a tower (Ray Train with --workers N, or in-process with --workers 0) and write an artifact."""
    settings = settings_or_exit()
    cfg = TrainConfig(
        dataset=dataset, data_dir=str(data_dir or settings.datasets_dir), loss=loss, miner=miner,
        margin=margin, epochs=epochs, classes_per_batch=classes_per_batch,
        samples_per_class=samples_per_class, lr=lr, embedding_dim=embedding_dim, architecture=architecture,
        augment=augment, seed=seed, threads=threads, time_budget_s=time_budget,
        steps_per_epoch=steps_per_epoch, val_every=val_every, test_time_shifts=test_time_shifts,
        pretrained=pretrained, freeze=freeze, baseline_budget_s=baseline_budget,
    )  # fmt: skip
    models_dir = (out or settings.paths.models_dir).resolve()
    from training.driver import run_training
    from training.loop import RayRun
    from training.metrics_export import MetricsExport

    metrics = MetricsExport.from_settings(settings)  # Prometheus sees the run while it goes
    run = None
    if workers > 0:
        where = {"storage_path": storage.resolve()} if storage else {}
        run = RayRun(workers=workers, use_gpu=gpu, cpus_per_worker=cpus_per_worker, max_failures=max_failures,
                     crash_after_epoch=crash_after_epoch, metrics=metrics, **where)  # fmt: skip
    path = run_training(cfg, models_dir, run=run, target_far=target_far, metrics=metrics)
    report = json.loads((path / "manifest.json").read_text())
    console.print(_metrics_table(f"test metrics ({dataset}, unseen identities)", report["metrics"]))
    details = json.loads((path / "metrics.json").read_text())
    if "comparison" in details:
        console.print(_comparison_table(details["comparison"], details["shipped"]))
    typer.echo(f"artifact: {path}")  # one plain line: scripts and `ray job submit` callers parse it


def eval_(
    model: Annotated[Path, typer.Option(help="artifact directory", exists=True, file_okay=False)],
    dataset: DatasetOpt = "digits",
    data_dir: DataDirOpt = None,
    seed: Annotated[int, typer.Option(help="class-split seed (use the training seed)")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write metrics here")] = None,
) -> None:
    """Evaluate a saved artifact on a data set's test identities with its own threshold and calibration."""
    from training.datasets import load_dataset
    from training.export import Calibrated, test_metrics
    from twinstream.images.preprocess import Preprocessing
    from twinstream.model.artifact import load_artifact

    settings = settings_or_exit()
    loaded = load_artifact(model)
    start = time.perf_counter()
    m = loaded.manifest
    splits = load_dataset(dataset, data_dir or settings.datasets_dir, seed)
    if m.input.kind is Preprocessing.FACE_CHIP:  # a face tower sees aligned chips, as served
        from training.faces import default_cache_dir, face_splits

        splits = face_splits(splits, settings.faces, default_cache_dir())
    splits = replace(splits, spec=m.input)
    metrics, _ = test_metrics(loaded.tower, splits, Calibrated.of(m), seed)
    metrics["eval_seconds"] = time.perf_counter() - start
    console.print(_metrics_table(f"{m.version} on {dataset} (test identities)", metrics))
    if json_out:
        json_out.write_text(
            json.dumps({"version": m.version, "dataset": dataset, "metrics": metrics}, indent=2)
        )


def register(app: typer.Typer) -> None:
    """Mount ``train`` and ``eval`` on the root app."""
    app.command("train")(train)
    app.command("eval")(eval_)
