"""Open-set identification and calibration on unseen identities, for any Omniglot artifact (not a test).

    python scripts/measure_open_set.py --model models/<version> --out bench/results/open_set.json

1. Rebuilds the artifact's splits (its run's seed) and embeds the validation identities (the background
   alphabets the run held out) and the evaluation set (20 alphabets the run never read).
2. Two protocols: "rotations" (each character turned by 0/90/180/270° is four identities, as the
   training treated them: 2,636 evaluation identities, galleries up to 1,000) and "characters" (no
   rotations: 659 identities, galleries up to 300).
3. Fits on validation only: the score calibration (candidates by 2-fold identity-disjoint log-loss) and
   impostor-model variants; picks a variant by cross-fitting inside validation (fit on one half of the
   identities, open-set FPIR measured on galleries drawn from the other half).
4. Measures on the evaluation identities: FPIR and FNIR for galleries of N enrolled identities (one
   enrolment image each, random, repeated), ECE with an identity-bootstrap interval, each candidate's
   log-loss, FAR at the verify thresholds, the calibration of the identify probability p_N.
5. Diagnostic (``--matched``, not an acceptance figure): fit on half of the evaluation alphabets and
   measure on the other half, i.e. with a fitting population like the measured one.

Prints tables and writes JSON, and a reliability diagram next to it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from training.calibration import fit_method, fit_score_calibration, log_loss, sample_identity_pairs
from training.calibration_quality import ece_with_interval, reliability_png
from training.evaluate import embed
from training.impostor_fit import TailFit, fit_impostor_model
from training.open_set_eval import Embedded, open_set_trials, thresholds_for
from twinstream.model.calibration import CalibrationMethod, ScoreCalibration
from twinstream.model.impostor import ImpostorModel
from twinstream.model.operating_point import verify_point

app = typer.Typer(add_completion=False)
ROTATIONS = 4
#: Impostor-model variants: fit options, and whether impostors of the probe's own alphabet count.
VARIANTS: dict[str, dict[str, Any]] = {
    "pooled": {"pooled": True},
    "mixture": {"tail": TailFit.PER_PROBE},
    "mixture-shared-tail": {"tail": TailFit.SHARED},
    "mixture/unrelated": {"tail": TailFit.PER_PROBE, "unrelated": True},
    "mixture-shared-tail/unrelated": {"tail": TailFit.SHARED, "unrelated": True},
}
SELECTABLE = ("pooled", "mixture", "mixture-shared-tail")  # what validation alone can choose between


def _embed_part(tower: torch.nn.Module, data: Any, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    from twinstream.images.preprocess import preprocess_batch

    x = preprocess_batch(list(data.images), spec)
    labels = data.labels - data.labels.min()
    classes = int(labels.max()) + 1
    embs = [embed(tower, torch.rot90(x, k=r, dims=(-2, -1)).contiguous()) for r in range(ROTATIONS)]
    return np.concatenate(embs), np.concatenate([labels + r * classes for r in range(ROTATIONS)])


def load_embeddings(model: Path, data_dir: Path, cache: Path) -> tuple[Embedded, Embedded, dict[str, Any]]:
    """(validation, evaluation) embeddings with rotations as identities; cached per artifact version."""
    from training.datasets import load_dataset
    from twinstream.images.preprocess import InputSpec
    from twinstream.model.artifact import load_artifact

    manifest = json.loads((model / "manifest.json").read_text())
    seed = int(json.loads((model / "metrics.json").read_text()).get("config", {}).get("seed", 0))
    splits = load_dataset("omniglot", data_dir, seed)
    path = cache / f"{manifest['version']}-embeddings.npz"
    if not path.is_file():
        tower = load_artifact(model).tower
        spec = InputSpec(**manifest["input"])
        out = {}
        for part in ("val", "test"):
            out[f"{part}_emb"], out[f"{part}_labels"] = _embed_part(tower, getattr(splits, part), spec)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **out)  # type: ignore[arg-type]
    raw = np.load(path)
    parts = []
    for part in ("val", "test"):
        data = getattr(splits, part)
        alphabets = np.asarray([data.class_names[int(c)].split("/")[0] for c in data.labels])
        groups = np.tile(np.unique(alphabets, return_inverse=True)[1], ROTATIONS)
        parts.append(Embedded(raw[f"{part}_emb"], raw[f"{part}_labels"], groups))
    info = {
        "version": manifest["version"],
        "split_seed": seed,
        "test_time_shifts": manifest["test_time_shifts"],
    }
    return parts[0], parts[1], info


def unrotated(data: Embedded) -> Embedded:
    """The upright images only (rotation 0 holds the lowest quarter of the identity ids)."""
    classes = (int(data.labels.max()) + 1) // ROTATIONS
    return data.subset(data.labels < classes)


def fit_variants(
    data: Embedded, probes: int, seed: int, names: tuple[str, ...] = tuple(VARIANTS)
) -> dict[str, ImpostorModel]:
    """The impostor-model variants fit on ``data``."""
    models = {}
    for name in names:
        kw = dict(VARIANTS[name])
        groups = data.groups if kw.pop("unrelated", False) else None
        models[name] = fit_impostor_model(
            data.emb, data.labels, probes=probes, seed=seed, groups=groups, **kw
        )
    return models


def select_on_validation(val: Embedded, probes: int, reps: int, fpir: float, seed: int) -> dict[str, Any]:
    """Fit on half of the validation identities, measure FPIR on galleries of the other half; both ways.

    Galleries of 10 and 100 identities and of half the measured half (the largest it allows).
    """
    ids = np.random.default_rng(seed).permutation(np.unique(val.labels))
    halves = (ids[: len(ids) // 2], ids[len(ids) // 2 :])
    cal = fit_score_calibration(sample_identity_pairs(val.emb, val.labels, seed, 50_000)).calibration
    measured: dict[str, list[float]] = {}
    for fit_half, test_half in (halves, halves[::-1]):
        models = fit_variants(val.of_identities(fit_half), min(probes, len(fit_half)), seed, SELECTABLE)
        for n in sorted({10, min(100, len(test_half) // 2), len(test_half) // 2}):  # half stay strangers
            trials = open_set_trials(
                val.of_identities(test_half), n, reps, thresholds_for(models, fpir, n), cal, seed
            )
            for name, tally in trials.tallies.items():
                measured.setdefault(name, []).append(tally.summary()["fpir"])
    score = {
        name: float(np.mean([abs(math.log(max(f, 1e-6) / fpir)) for f in v])) for name, v in measured.items()
    }
    return {
        "chosen": min(score, key=score.__getitem__),
        "mean_abs_log_ratio": score,
        "fpir_per_gallery_size_both_halves": measured,
    }


def calibration_section(
    val: Embedded, test: Embedded, seed: int
) -> tuple[ScoreCalibration, dict[str, Any], np.ndarray, np.ndarray]:
    """Fit and choose the calibration on validation pairs; ECE, CI and log-losses on evaluation pairs."""
    pairs = sample_identity_pairs(val.emb, val.labels, seed, 200_000)
    fit = fit_score_calibration(pairs, seed=seed)
    cal = fit.calibration
    tp = sample_identity_pairs(test.emb, test.labels, seed + 1, 200_000)
    probs = cal.probability(tp.distances)
    ece = ece_with_interval(probs, tp, resamples=200, seed=seed)
    refit = {m: fit_method(m, pairs) for m in CalibrationMethod}
    section = {
        "chosen": str(cal.method),
        "calibration": cal.to_dict(),
        "val_heldout_log_loss": {str(k): v for k, v in fit.log_loss.items()},
        "val_pairs": {
            "genuine": fit.genuine_pairs,
            "impostor": fit.impostor_pairs,
            "identities": fit.identities,
        },
        "test_pairs": {
            "genuine": tp.counts[0],
            "impostor": tp.counts[1],
            "identities": len(np.unique(test.labels)),
        },
        "test_ece": ece.value,
        "test_ece_ci95": [ece.low, ece.high],
        "bootstrap_resamples": ece.resamples,
        "test_log_loss": {str(m): log_loss(c.probability(tp.distances), tp.same) for m, c in refit.items()},
    }
    return cal, section, probs, tp.same


def verify_section(cal: ScoreCalibration, imp: ImpostorModel, test: Embedded, seed: int) -> dict[str, Any]:
    """FAR and TAR on evaluation pairs at the verify operating points."""
    tp = sample_identity_pairs(test.emb, test.labels, seed + 2, 400_000)
    neg, pos = tp.distances[~tp.same], tp.distances[tp.same]
    out = {}
    for far in (1e-3, 1e-2):
        op = verify_point(cal, imp, far)
        out[f"far={far:g}"] = {
            "threshold": op.threshold,
            "p_star": op.p_star,
            "measured_far": float(np.mean(neg <= op.threshold)),
            "tar": float(np.mean(pos <= op.threshold)),
        }
    return out


def open_set_section(
    models: dict[str, ImpostorModel],
    cal: ScoreCalibration,
    test: Embedded,
    ns: tuple[int, ...],
    reps: int,
    fpir: float,
    seed: int,
) -> dict[str, Any]:
    """Measured FPIR / FNIR of every variant's threshold, per gallery size."""
    out = {}
    for n in ns:
        ts = thresholds_for(models, fpir, n)
        trials = open_set_trials(test, n, reps, ts, cal, seed + n)
        out[str(n)] = {
            "thresholds": ts,
            "identify_ece": trials.identify_ece,
            "mean_p_top": trials.mean_p_top,
            "top_is_person": trials.top_is_person,
            **{name: t.summary() for name, t in trials.tallies.items()},
        }
    return out


def matched_population(
    test: Embedded, cal: ScoreCalibration, probes: int, reps: int, fpir: float, seed: int
) -> dict[str, Any]:
    """Diagnostic: fit on 10 evaluation alphabets, measure on the other 10 (alphabet-disjoint)."""
    out = {}
    for split_seed in (1, 2):
        alphabets = np.random.default_rng(split_seed).permutation(np.unique(test.groups))
        fit_rows = np.isin(test.groups, alphabets[: len(alphabets) // 2])
        models = fit_variants(test.subset(fit_rows), probes, seed)
        measured = test.subset(~fit_rows)
        strangers_left = len(np.unique(measured.labels)) // 2  # at least half stay unenrolled
        ns = tuple(n for n in (10, 100, 500) if n <= strangers_left)
        out[f"split{split_seed}"] = open_set_section(models, cal, measured, ns, reps, fpir, seed)
    return out


def run_protocol(
    val: Embedded,
    test: Embedded,
    ns: tuple[int, ...],
    reps: int,
    fpir: float,
    probes: int,
    seed: int,
    matched: bool,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    cal, calibration, probs, same = calibration_section(val, test, seed)
    selection = select_on_validation(val, probes, reps, fpir, seed)
    models = fit_variants(val, probes, seed)
    chosen = selection["chosen"]
    result = {
        "calibration": calibration,
        "variant_selection_on_val": selection,
        "impostor_model": {
            "chosen": chosen,
            "probes": probes,
            "comparisons_per_probe": models[chosen].comparisons,
            "val_identities": len(np.unique(val.labels)),
            "fit": models[chosen].to_dict(),
        },
        "verify": verify_section(cal, models[chosen], test, seed),
        "open_set": open_set_section(models, cal, test, ns, reps, fpir, seed),
    }
    if matched:
        result["diagnostic_matched_population"] = matched_population(test, cal, probes, reps, fpir, seed)
    return result, probs, same


@app.command()
def main(
    model: Annotated[Path, typer.Option(help="artifact directory", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench/results/open_set.json"),
    data_dir: Annotated[Path, typer.Option(help="shared data sets")] = Path("/work/shared/datasets"),
    cache: Annotated[Path, typer.Option(help="embedding cache")] = Path("/tmp/twinstream-open-set"),
    reps: Annotated[int, typer.Option(help="gallery draws per size")] = 20,
    fpir: Annotated[float, typer.Option(help="target FPIR")] = 0.01,
    probes: Annotated[int, typer.Option(help="probes in the impostor model")] = 400,
    matched: Annotated[bool, typer.Option(help="also the matched-population diagnostic")] = True,
    seed: int = 0,
) -> None:
    """Fit on validation identities, measure on unseen ones, print tables, write JSON."""
    start = time.perf_counter()
    val, test, info = load_embeddings(model, data_dir, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {**info, "target_fpir": fpir, "reps": reps}
    for protocol, v, t, ns in (
        ("rotations", val, test, (10, 100, 1000)),
        ("characters", unrotated(val), unrotated(test), (10, 100, 300)),
    ):
        results[protocol], probs, same = run_protocol(v, t, ns, reps, fpir, probes, seed, matched)
        if protocol == "characters":
            title = f"{results[protocol]['calibration']['chosen']} · unseen Omniglot characters"
            out.with_suffix(".reliability.png").write_bytes(reliability_png(probs, same, title))
        results["seconds"] = time.perf_counter() - start
        out.write_text(json.dumps(results, indent=2, default=float))  # after each protocol: partial results
    for protocol in ("rotations", "characters"):
        print_protocol(protocol, results[protocol], fpir)


def print_protocol(protocol: str, r: dict[str, Any], fpir: float) -> None:
    cal = r["calibration"]
    print(
        f"\n== {protocol}: calibration {cal['chosen']}, impostor model chosen on validation: "
        f"{r['impostor_model']['chosen']}"
    )
    print(
        "  held-out log-loss on validation (2-fold by identity):",
        {k: round(v, 5) for k, v in cal["val_heldout_log_loss"].items()},
    )
    print("  log-loss on unseen pairs:", {k: round(v, 5) for k, v in cal["test_log_loss"].items()})
    lo, hi = cal["test_ece_ci95"]
    print(
        f"  ECE on unseen pairs {cal['test_ece']:.4f} (95% CI {lo:.4f}–{hi:.4f}), pairs {cal['test_pairs']}"
    )
    for key, v in r["verify"].items():
        print(
            f"  verify {key}: t {v['threshold']:.4f} p* {v['p_star']:.4f} "
            f"measured FAR {v['measured_far']:.5f} TAR {v['tar']:.4f}"
        )
    sections = [("unseen identities", r["open_set"])]
    sections += [
        (f"matched-population diagnostic {k}", s)
        for k, s in r.get("diagnostic_matched_population", {}).items()
    ]
    for title, section in sections:
        print(f"  open set, target FPIR {fpir:.2%} — {title}")
        print(f"  {'N':>6} {'variant':<30} {'t_N':>7} {'FPIR':>8} {'±sem':>7} {'FNIR':>7} {'p_N ECE':>8}")
        for n, s in section.items():
            for name in VARIANTS:
                v = s[name]
                print(
                    f"  {n:>6} {name:<30} {s['thresholds'][name]:7.4f} {v['fpir']:8.3%} {v['fpir_sem']:7.3%} "
                    f"{v['fnir']:7.4f} {s['identify_ece']:8.4f}"
                )


if __name__ == "__main__":
    app()
