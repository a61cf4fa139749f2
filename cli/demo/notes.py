"""What the demo's figures mean for the model it served: the sentences under the report's table."""

from __future__ import annotations

from cli.demo.cases import Observed
from cli.demo.models import FACE_DATASETS, DemoTraining
from cli.demo.report import DemoFigures
from twinstream.contracts import Op, PolicyKind, TenantPolicy
from twinstream.model.artifact import Manifest


def _cuts(observed: dict[str, Observed]) -> str:
    """The p* each kind of decision was taken at, read from the results (the first of each kind)."""
    seen: dict[PolicyKind, str] = {}
    for o in observed.values():
        point = o.result.policy
        if point is None or point.kind in seen or o.result.op not in (Op.VERIFY, Op.IDENTIFY):
            continue
        where = f", gallery of {point.gallery_size} vectors" if point.kind is PolicyKind.FPIR else ""
        seen[point.kind] = (
            f"{o.result.op} at {point.kind.upper()} {point.target:g}{where}: "
            f"distance ≤ {point.threshold:.3f}, p* = {point.min_probability:.4f}"
        )
    return "; ".join(seen.values()) or "no decision was answered"


def _model_note(dataset: str, manifest: Manifest, figs: DemoFigures, sizing: DemoTraining) -> str:
    per = f"{sizing.enrol_images} image{'s' if sizing.enrol_images > 1 else ''}"
    if dataset in FACE_DATASETS:
        return (
            f"The face tower is dlib's ResNet, pretrained on other people's faces (no training here), "
            f"calibrated on the {dataset} people outside the test split. The {figs.subjects} test people "
            f"it meets were never used for anything but this traffic; each is enrolled with {per}. "
            "Photos are found, aligned and cut into 150×150 chips by the service (picture: face_chips.png)."
        )
    if dataset == "digits":
        return (
            f"Digits is the fallback, and a toy: 8×8 scans of handwritten digits. The tower learned 5 "
            f"digits (2 more calibrate it) and meets {figs.subjects} it never saw; one 8×8 image is too "
            f"little to recognise a digit written another way, so each is enrolled with {per}. The "
            "tenant's operating points are loosened to FAR / FPIR 5 % (the product default 0.1 % / 1 % "
            "suits faces; a tower that learned 5 digits cannot reach it). Closed-set identification and "
            "the AUC are what this model does well. Its calibration and thresholds were fitted on 2 "
            "calibration digits and do not carry over to the unseen ones (see the reliability diagram, and "
            "the measured FAR below against its 5 % target): most genuine claims are refused and "
            "open-set identification answers mostly UNKNOWN."
        )
    return f"A tower trained on {dataset} meets {figs.subjects} unseen identities, each enrolled with {per}."


def meaning_notes(
    dataset: str,
    manifest: Manifest,
    figs: DemoFigures,
    sizing: DemoTraining,
    policy: TenantPolicy,
    observed: dict[str, Observed],
) -> list[str]:
    """The report's "what the numbers mean" list."""
    n = figs.subjects
    return [
        _model_note(dataset, manifest, figs, sizing),
        f"Operating points of this tenant: verify FAR {policy.verify_far:g}, identify FPIR "
        f"{policy.identify_fpir:g}. Every decision is MATCH ⇔ p ≥ p*: {_cuts(observed)}. Measured on "
        f"this traffic: {figs.verify_tar:.1%} of genuine claims accepted, {figs.verify_far:.1%} of impostor "
        f"claims accepted (target {policy.verify_far:g}).",
        f"Closed-set identification names the nearest enrolled subject whatever the distance: a guess among "
        f"{n} is right {figs.identify_chance:.1%} of the time. Open-set identification answers UNKNOWN below "
        "p*, as it must for a stranger; on this traffic every photo shows an enrolled subject.",
        f"Verification: each arriving photo claims its own subject once and another subject once, so "
        f"{figs.verify_genuine_share:.0%} of claims are genuine; always answering the commoner kind scores "
        f"{figs.verify_chance:.0%}. A strict FAR rejects some genuine claims (that is its price).",
        f"Calibration: the verify probabilities are stated at the prior {manifest.calibration.prior:g} (the "
        "traffic's own: half the claims genuine). ECE is the weighted gap between stated probability and "
        "observed frequency in 15 bins; its interval resamples identities (training.calibration_quality). "
        "A constant p = 0.5 also scores 0, so read the ECE with the AUC."
        + (
            f" With {sizing.enrol_images} images enrolled per subject, a verify's p is the one-pair "
            f"probability of the best of its {sizing.enrol_images} distances: the decision's p* accounts for "
            "the several tries, p does not, so p is not calibrated for such claims."
            if sizing.enrol_images > 1
            else ""
        ),
    ]
