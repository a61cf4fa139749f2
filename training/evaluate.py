"""Evaluation on held-out identities: verification (ROC AUC, EER, TAR@FAR), one-shot accuracy, retrieval.

Distances are Euclidean between L2-normalised embeddings; smaller means "more alike".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from training.splits import OneShotRun
from twinstream.images.preprocess import InputSpec, preprocess_batch


@dataclass(frozen=True, slots=True)
class Pairs:
    """Distances of sampled image pairs and whether each pair shares an identity."""

    distances: np.ndarray
    same: np.ndarray


@torch.no_grad()
def embed(tower: nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Embed pre-processed inputs (N, C, H, W) in eval mode; returns (N, D) float32."""
    was_training = tower.training
    tower.eval()
    device = next(tower.parameters()).device
    out = [tower(x[i : i + batch_size].to(device).contiguous(memory_format=torch.channels_last)) for i in
           range(0, len(x), batch_size)]  # fmt: skip
    tower.train(was_training)
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, 0), np.float32)


def embed_images(tower: nn.Module, images: Sequence[Image.Image], spec: InputSpec) -> np.ndarray:
    """Pre-process and embed PIL images."""
    return embed(tower, preprocess_batch(list(images), spec))


def sample_pairs(emb: np.ndarray, labels: np.ndarray, seed: int = 0, max_neg: int = 200_000) -> Pairs:
    """All positive pairs (i < j, same label) and up to ``max_neg`` random negative pairs."""
    rng = np.random.default_rng(seed)
    pos_i, pos_j = [], []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        a, b = np.triu_indices(len(idx), k=1)
        pos_i.append(idx[a])
        pos_j.append(idx[b])
    pi, pj = np.concatenate(pos_i), np.concatenate(pos_j)
    ni, nj = rng.integers(0, len(labels), size=(2, max_neg * 2))
    keep = labels[ni] != labels[nj]
    ni, nj = ni[keep][:max_neg], nj[keep][:max_neg]
    i, j = np.concatenate([pi, ni]), np.concatenate([pj, nj])
    dist = np.linalg.norm(emb[i] - emb[j], axis=1)
    same = np.concatenate([np.ones(len(pi), bool), np.zeros(len(ni), bool)])
    return Pairs(dist, same)


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The rate where false accepts equal false rejects (interpolated on the ROC)."""
    fnr = 1.0 - tpr
    k = int(np.argmin(np.abs(fnr - fpr)))
    return float((fpr[k] + fnr[k]) / 2.0)


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """True accept rate at the largest threshold whose false accept rate is <= ``far``."""
    ok = np.flatnonzero(fpr <= far)
    return float(tpr[ok[-1]]) if len(ok) else 0.0


def decidability(pairs: Pairs) -> float:
    """Daugman's d′: the gap between impostor and genuine mean distances over their pooled spread.

    Unlike AUC and EER it keeps growing once the two distributions no longer overlap, so it still
    ranks towers that separate a small set perfectly.
    """
    genuine, impostor = pairs.distances[pairs.same], pairs.distances[~pairs.same]
    spread = np.sqrt((genuine.var() + impostor.var()) / 2.0)
    return float((impostor.mean() - genuine.mean()) / spread) if spread > 0 else float("inf")


def verification_metrics(pairs: Pairs) -> dict[str, float]:
    """ROC AUC, EER, TAR at FAR 1e-2 / 1e-3 and d′ of pair distances."""
    if pairs.same.all() or not pairs.same.any():
        raise ValueError("verification metrics need both positive and negative pairs")
    scores = -pairs.distances
    fpr, tpr, _ = roc_curve(pairs.same, scores)
    return {
        "auc": float(roc_auc_score(pairs.same, scores)),
        "eer": equal_error_rate(fpr, tpr),
        "tar_at_far_1e-2": tar_at_far(fpr, tpr, 1e-2),
        "tar_at_far_1e-3": tar_at_far(fpr, tpr, 1e-3),
        "d_prime": decidability(pairs),
    }


def roc_points(pairs: Pairs, max_points: int = 400) -> tuple[list[float], list[float]]:
    """A thinned ROC curve (fpr, tpr) for plots and metrics.json."""
    fpr, tpr, _ = roc_curve(pairs.same, -pairs.distances)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).astype(int))
    return fpr[keep].tolist(), tpr[keep].tolist()


def one_shot_accuracy(
    emb: np.ndarray, labels: np.ndarray, n_way: int, trials: int = 1000, seed: int = 0
) -> float:
    """N-way one-shot accuracy: one support image for each of N random classes, one query of one of them.

    Correct when the query's nearest support image has its class. Needs >= 2 images per class.
    """
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = [c for c, idx in by_class.items() if len(idx) >= 2]
    if len(classes) < n_way:
        raise ValueError(f"{n_way}-way one-shot needs {n_way} classes, only {len(classes)} have 2+ images")
    correct = 0
    for _ in range(trials):
        chosen = rng.choice(classes, size=n_way, replace=False)
        query_idx, support_idx = rng.choice(by_class[chosen[0]], size=2, replace=False)
        support = [support_idx] + [rng.choice(by_class[c]) for c in chosen[1:]]
        d = np.linalg.norm(emb[support] - emb[query_idx], axis=1)
        correct += int(np.argmin(d) == 0)
    return correct / trials


def one_shot_every_enrolment(emb: np.ndarray, labels: np.ndarray) -> float:
    """All-classes one-shot accuracy, averaged over every choice of enrolment photo.

    Round k enrols photo k of every class (photos in data order) and probes with every other photo of
    every class; a probe is right when its nearest enrolled photo is its own class's. The result is the
    mean over rounds of each round's accuracy over its probes. With unequal counts the rounds run to the
    largest class's size and a class of n photos enrols its photo ``k mod n``, so every class is enrolled
    in every round and each of its photos is enrolled equally often (to within one round).

    Raises:
        ValueError: Fewer than 2 classes, or a class with fewer than 2 photos (it could not be probed).
    """
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    if len(members) < 2 or min(len(m) for m in members) < 2:
        raise ValueError("one-shot over every enrolment needs 2+ classes with 2+ images each")
    x = emb.astype(np.float64)
    squared, accuracies = np.einsum("ij,ij->i", x, x), []
    for k in range(max(len(m) for m in members)):
        enrolled = np.array([m[k % len(m)] for m in members])
        probes = np.setdiff1d(np.arange(len(labels)), enrolled)
        # |p - e|² ranks like |e|² - 2 p·e for a fixed probe p: one matrix product per round.
        nearest = np.argmin(squared[enrolled][None, :] - 2.0 * x[probes] @ x[enrolled].T, axis=1)
        accuracies.append(float(np.mean(labels[enrolled[nearest]] == labels[probes])))
    return float(np.mean(accuracies))


def official_runs_accuracy(tower: nn.Module, runs: Sequence[OneShotRun], spec: InputSpec) -> float:
    """Lake et al.'s protocol: per run, each query picks its nearest support image; mean accuracy."""
    accs = []
    for run in runs:
        support, queries = embed_images(tower, run.support, spec), embed_images(tower, run.queries, spec)
        d = np.linalg.norm(queries[:, None, :] - support[None, :, :], axis=2)
        accs.append(float(np.mean(np.argmin(d, axis=1) == np.asarray(run.answers))))
    return float(np.mean(accs))


def retrieval_metrics(emb: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision@1 and MAP@R (Musgrave et al.) with every image as a query against all others."""
    # Imported here: pml's accuracy module loads faiss, which training workers never need.
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False), batch_size=1024),
        k="max_bin_count",
    )
    e, y = torch.from_numpy(emb), torch.from_numpy(labels)
    acc = calc.get_accuracy(e, y, e, y, ref_includes_query=True)
    return {
        "precision_at_1": float(acc["precision_at_1"]),
        "map_at_r": float(acc["mean_average_precision_at_r"]),
    }


def evaluate_embeddings(
    emb: np.ndarray, labels: np.ndarray, seed: int = 0, trials: int = 1000
) -> dict[str, float]:
    """Verification, one-shot (5/20-way where the classes allow) and retrieval metrics.

    Sets of 2 to 20 classes, each with 2+ images, also get ``oneshot_<classes>way_every_enrolment``
    (`one_shot_every_enrolment`: deterministic, every photo enrolled in turn; the acceptance protocol).
    """
    metrics = verification_metrics(sample_pairs(emb, labels, seed))
    classes, counts = np.unique(labels, return_counts=True)
    n_classes = len(classes)
    # 5- and 20-way where possible, and all-classes-way for small sets (10-way on AT&T's 10 test people).
    for n_way in sorted({w for w in (5, 20, n_classes) if 2 <= w <= min(n_classes, 20)}):
        metrics[f"oneshot_{n_way}way"] = one_shot_accuracy(emb, labels, n_way, trials, seed)
    if 2 <= n_classes <= 20 and counts.min() >= 2:
        metrics[f"oneshot_{n_classes}way_every_enrolment"] = one_shot_every_enrolment(emb, labels)
    metrics.update(retrieval_metrics(emb, labels))
    return metrics
