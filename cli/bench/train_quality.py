"""Training quality and speed figures (not a test): JSON and train_quality.png in `cli.bench.results_dir`.

Experiments (run one at a time; each is bounded in wall time):

    python -m cli.bench.train_quality omniglot --loss triplet --budget 600     # official 20-way accuracy
    python -m cli.bench.train_quality omniglot --loss contrastive --budget 600 # same split and budget
    python -m cli.bench.train_quality att-faces --budget 120                   # 30 people to train, 10 unseen
    python -m cli.bench.train_quality ray-scaling                              # 2 vs 1 Ray Train workers
    python -m cli.bench.train_quality summary                                  # table + PNG from the JSONs
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.bench import results_dir
from training.config import LossKind, MinerKind, TrainConfig

RESULTS = results_dir()
MODELS = Path(os.environ.get("TWINSTREAM_BENCH_MODELS", "/tmp/twinstream-bench-models"))
DATA_DIR = Path(os.environ.get("TWINSTREAM_DATA_DIR", "../shared/datasets"))
app = typer.Typer(no_args_is_help=True)


def _write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": f"{platform.machine()} · {os.cpu_count()} CPUs",
        "at": time.strftime("%F %T"),
        **payload,
    }
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(payload, indent=2, default=float))
    print(json.dumps(payload, indent=2, default=float)[:3000])
    return out


def _train_local(cfg: TrainConfig) -> dict[str, Any]:
    from training.quick import train_local

    start = time.perf_counter()
    path = train_local(cfg, MODELS, on_epoch=lambda r: print(r.as_metrics(), flush=True))
    details = json.loads((path / "metrics.json").read_text())
    history = details["history"]
    images = sum(h["images_per_s"] * h["seconds"] for h in history)
    return {
        "artifact": str(path), "config": cfg.to_dict(), "metrics": details["metrics"],
        "epochs_run": len(history), "train_seconds": details["train_seconds"],
        "wall_seconds": time.perf_counter() - start, "train_images_per_s": images / details["train_seconds"],
        "history": history,
    }  # fmt: skip


@app.command()
def omniglot(
    loss: LossKind = LossKind.TRIPLET,
    miner: MinerKind = MinerKind.SEMIHARD,
    budget: Annotated[float, typer.Option(help="training seconds")] = 600.0,
    threads: int = 2,
    embedding_dim: int = 128,
    steps_per_epoch: Annotated[int, typer.Option(help="P×K steps between validations")] = 64,
) -> None:
    """Omniglot: train on 25 background alphabets, official 20-way within-alphabet runs to test."""
    cfg = TrainConfig(
        dataset="omniglot", data_dir=str(DATA_DIR), loss=loss, miner=miner, epochs=1000, threads=threads,
        time_budget_s=budget, embedding_dim=embedding_dim, steps_per_epoch=steps_per_epoch,
    )  # fmt: skip
    result = _train_local(cfg)
    _write(f"omniglot_{loss}_{miner}", {"experiment": "omniglot", **result})


@app.command("att-faces")
def att_faces(budget: float = 120.0, threads: int = 2, loss: LossKind = LossKind.TRIPLET) -> None:
    """AT&T faces: 30 people to train (25 train + 5 validation for the threshold), 10 unseen to test."""
    cfg = TrainConfig(
        dataset="att-faces", data_dir=str(DATA_DIR), loss=loss, miner=MinerKind.SEMIHARD, epochs=1000,
        threads=threads, time_budget_s=budget, val_every=5,
    )  # fmt: skip
    _write(f"att_faces_{loss}", {"experiment": "att-faces", **_train_local(cfg)})


@app.command("ray-scaling")
def ray_scaling(images_per_epoch: int = 15_360, epochs: int = 3) -> None:
    """Ray Train time per epoch on Omniglot: 1 worker × 2 threads, 1 × 1, and 2 workers × 1 thread."""
    import ray

    from training.datasets import load_dataset
    from training.loop import RAY_ENV, RayRun, run_ray_training

    ray.init(num_cpus=2, runtime_env={"env_vars": dict(RAY_ENV)}, log_to_driver=False)
    spec = load_dataset("omniglot", DATA_DIR, with_test=False).spec
    rows = []
    for workers, threads in ((1, 2), (1, 1), (2, 1)):
        steps = images_per_epoch // (256 * workers)
        cfg = TrainConfig(dataset="omniglot", data_dir=str(DATA_DIR), epochs=epochs, threads=threads,
                          steps_per_epoch=steps, val_every=epochs)  # fmt: skip
        result = run_ray_training(cfg, RayRun(workers=workers, storage_path=MODELS / "ray"), spec)
        epoch_s = [h["seconds"] for h in result.history]
        steady = epoch_s[1:] or epoch_s
        rows.append({
            "workers": workers, "threads_per_worker": threads, "epoch_seconds": epoch_s,
            "mean_epoch_seconds_after_first": sum(steady) / len(steady),
            "images_per_s": images_per_epoch / (sum(steady) / len(steady)), "fit_seconds": result.seconds,
        })  # fmt: skip
    ray.shutdown()
    _write("ray_scaling", {"experiment": "ray-scaling", "images_per_epoch": images_per_epoch, "runs": rows})


@app.command()
def summary() -> None:
    """Collect the JSONs into train_quality.json and a bar chart (train_quality.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    found = {name: r for name, r in everything.items() if "experiment" in r or "runs" in r}  # training only
    table = {name: r.get("metrics", r.get("runs")) for name, r in found.items()}
    (RESULTS / "train_quality.json").write_text(json.dumps(table, indent=2, default=float))
    keys = [
        "official_20way", "official_20way_single_view", "oneshot_5way", "oneshot_10way", "oneshot_20way",
        "auc", "tar_at_far_1e-2",
    ]  # fmt: skip
    quality = {n: r["metrics"] for n, r in found.items() if "metrics" in r}
    fig, ax = plt.subplots(figsize=(13, 4.5))
    width = 0.8 / max(1, len(quality))
    for i, (name, metrics) in enumerate(quality.items()):
        xs = [k + i * width for k in range(len(keys))]
        ax.bar(xs, [metrics.get(k, 0.0) for k in keys], width, label=name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], keys, rotation=15, ha="right")
    ax.set_ylim(0, 1.05)
    ax.axhline(0.92, color="grey", linestyle=":", label="92 % target (Omniglot 20-way)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("training quality on unseen identities (runs/bench/*.json)")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(RESULTS / "train_quality.png", dpi=110, bbox_inches="tight")
    print(json.dumps(table, indent=2, default=float)[:4000])


if __name__ == "__main__":
    app()
