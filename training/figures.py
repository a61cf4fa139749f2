"""PNG figures of an artifact: the test ROC curve and the training curves (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def roc_png(
    fpr: Sequence[float], tpr: Sequence[float], auc: float, threshold_far: float, title: str
) -> bytes:
    """ROC on test pairs (log-scaled false accept rate) with the operating point's FAR marked."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([max(f, 1e-5) for f in fpr], tpr, label=f"AUC {auc:.4f}")
    ax.axvline(
        max(threshold_far, 1e-5), color="grey", linestyle="--", label=f"threshold (FAR {threshold_far:.1e})"
    )
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def training_curves_png(history: Sequence[dict[str, float]], title: str) -> bytes:
    """Loss per epoch (left) and validation AUC / one-shot accuracy (right)."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    val = [h for h in history if h.get("val_auc") == h.get("val_auc")]  # drop NaN (not validated)
    right.plot([h["epoch"] for h in val], [h["val_auc"] for h in val], marker="o", label="val AUC")
    right.plot([h["epoch"] for h in val], [h["val_oneshot"] for h in val], marker="s", label="val one-shot")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1.01)
    right.legend(loc="lower right")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _png(fig)
