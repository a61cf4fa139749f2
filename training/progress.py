"""Driver-side progress for Ray Train runs: one rich line per epoch, printed by a Ray Train callback.

The callback runs in Ray Train's controller; Ray forwards its output to the driver's console.
"""

from __future__ import annotations

from typing import Any

from ray.train import UserCallback
from rich.console import Console


class EpochPrinter(UserCallback):
    """Prints epoch, loss, validation AUC / EER / one-shot accuracy and throughput after each report."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not metrics:
            return
        m = metrics[0]  # rank 0 validates
        images_per_s = sum(float(w.get("images_per_s", 0.0)) for w in metrics)
        Console(force_terminal=False, soft_wrap=True).print(
            f"[bold]epoch {int(m['epoch'])}/{self.epochs}[/] loss {m['loss']:.4f} · "
            f"val AUC {m['val_auc']:.4f} · EER {m['val_eer']:.4f} · "
            f"{int(m['val_oneshot_ways'])}-way {m['val_oneshot']:.3f} · "
            f"{m['seconds']:.1f} s · {images_per_s:.0f} img/s (all workers)"
            + (" · checkpoint saved" if checkpoint is not None else "")
        )
