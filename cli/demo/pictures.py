"""The demo report's pictures of the whole traffic (matplotlib, Agg): ROC, confusion, latency, samples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from cli.demo.cases import DemoCase, Observed
from twinstream.contracts import Decision, Op


def roc_png(cases: Sequence[DemoCase], observed: dict[str, Observed], threshold_p: float, out: Path) -> Path:
    from sklearn.metrics import roc_curve

    pairs = [
        (o.result.probability, c.claimed_subject == c.true_subject)
        for c in cases
        if c.op is Op.VERIFY
        and not c.poison
        and (o := observed.get(c.request_id))
        and o.result.probability is not None
    ]
    fig, ax = plt.subplots(figsize=(5, 5))
    labels = [g for _, g in pairs]
    if pairs and 0 < sum(labels) < len(labels):
        fpr, tpr, _ = roc_curve(labels, [p for p, _ in pairs])
        ax.plot(fpr, tpr, lw=2, label="verify requests (this run)")
    ax.plot([0, 1], [0, 1], ls="--", c="grey")
    ax.set(
        xlabel="false accept rate",
        ylabel="true accept rate",
        title="Verification ROC (from the results topic)",
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confusion_png(cases: Sequence[DemoCase], observed: dict[str, Observed], out: Path) -> Path:
    ident = [
        (c, observed[c.request_id])
        for c in cases
        if c.op is Op.IDENTIFY and not (c.all_faces or c.poison) and c.request_id in observed
    ]
    truth = sorted({c.true_subject for c, _ in ident})
    cols = [*truth, "UNKNOWN"]
    matrix = np.zeros((len(truth), len(cols)), dtype=int)
    for case, obs in ident:
        r = obs.result
        said = r.subject if r.decision is Decision.MATCH and r.subject in truth else "UNKNOWN"
        matrix[truth.index(case.true_subject), cols.index(said)] += 1
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(cols), 1.0 + 0.45 * len(truth)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(truth)), truth, fontsize=7)
    ax.set(xlabel="identified as", ylabel="true identity", title="Identify results")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def latency_png(observed: dict[str, Observed], out: Path) -> Path:
    lat = np.asarray([o.latency_s for o in observed.values()])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(lat, bins=40, color="#4472c4")
    for q, ls in ((50, "-"), (99, "--")):
        v = float(np.percentile(lat, q)) if len(lat) else 0.0
        ax.axvline(v, c="k", ls=ls, label=f"p{q} {v * 1000:.0f} ms")
    ax.set(xlabel="end-to-end latency, Kafka timestamp → result (s)", ylabel="requests", title="Latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def samples_png(
    cases: Sequence[DemoCase], observed: dict[str, Observed], enrolled: dict[str, Path], out: Path, n: int = 8
) -> Path:
    """Query beside the enrolled image of the subject it was matched to, with the probability."""
    picks = [
        c
        for c in cases
        if c.op is Op.IDENTIFY and not c.all_faces and c.request_id in observed and c.image_path
    ][:n]
    fig, axes = plt.subplots(2, max(1, len(picks)), figsize=(1.6 * max(1, len(picks)), 3.6), squeeze=False)
    for j, case in enumerate(picks):
        r = observed[case.request_id].result
        axes[0][j].imshow(Image.open(case.image_path).convert("L"), cmap="gray")  # type: ignore[arg-type]
        axes[0][j].set_title(f"true {case.true_subject}", fontsize=7)
        nearest = r.candidates[0].subject if r.candidates else ""
        if nearest in enrolled:  # the nearest enrolled subject, matched or not
            axes[1][j].imshow(Image.open(enrolled[nearest]).convert("L"), cmap="gray")
        ok = r.decision is Decision.MATCH and r.subject == case.true_subject
        prob = f"{r.candidates[0].probability:.2f}" if r.candidates else "–"
        label = nearest if r.decision is Decision.MATCH else f"{r.decision} (nearest {nearest or '–'})"
        axes[1][j].set_title(f"{label} p={prob}", fontsize=7, color="green" if ok else "red")
        for ax in (axes[0][j], axes[1][j]):
            ax.axis("off")
    fig.suptitle("query (top) and the nearest enrolled image (bottom); green = matched correctly", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
