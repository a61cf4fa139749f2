"""From the traffic to the run directory: figures, pictures, report.md and figures.json."""

from __future__ import annotations

import json
from pathlib import Path

from cli.demo.calibration import reliability_file, traffic_pairs
from cli.demo.class_photo import ClassPhotoScore, score_class_photo
from cli.demo.models import demo_training
from cli.demo.notes import meaning_notes
from cli.demo.pictures import confusion_png, latency_png, roc_png, samples_png
from cli.demo.report import DemoFigures, compute_figures
from cli.demo.summary import write_markdown
from cli.demo.traffic import DemoTraffic
from twinstream.config import Settings
from twinstream.contracts import Op
from twinstream.model.artifact import Manifest


def _class_photo_score(traffic: DemoTraffic) -> ClassPhotoScore | None:
    if traffic.class_photo is None:
        return None
    case = next(c for c in traffic.cases if c.all_faces)
    got = traffic.observed.get(case.request_id)
    return score_class_photo(traffic.class_photo, got.result if got else None, sorted(traffic.plan.enrolled))


def _face_pictures(
    settings: Settings, manifest: Manifest, traffic: DemoTraffic, score: ClassPhotoScore | None, out_dir: Path
) -> list[Path]:
    """Chips beside photos and the answered class photo (face models only)."""
    if traffic.class_photo is None or score is None:
        return []
    from cli.demo.face_pictures import chips_png, class_photo_png
    from twinstream.images.face_finder import FaceChipFinder

    finder = FaceChipFinder(manifest.input, settings.faces)
    enrolled = sorted(traffic.plan.enrolled.items())
    photos = enrolled[:3] + [
        (s, traffic.plan.arrivals[s][0]) for s, _ in enrolled[3:5] if traffic.plan.arrivals[s]
    ]
    case = next(c for c in traffic.cases if c.all_faces)
    got = traffic.observed.get(case.request_id)
    return [
        chips_png(photos, finder, out_dir / "face_chips.png"),
        class_photo_png(traffic.class_photo, got.result if got else None, score, out_dir / "class_photo.png"),
    ]


def write_run(
    settings: Settings,
    manifest: Manifest,
    dataset: str,
    traffic: DemoTraffic,
    out_dir: Path,
    *,
    context: dict[str, str],
    run_id: str,
) -> tuple[DemoFigures, Path]:
    """Compute the figures, draw the pictures and write report.md and figures.json; returns the figures
    and the report's path."""
    score = _class_photo_score(traffic)
    prior = manifest.calibration.prior
    figures = compute_figures(traffic.cases, traffic.observed, traffic.timed, class_photo=score, prior=prior)
    cases, observed = traffic.cases, traffic.observed
    answered = {k: v for k, v in observed.items() if v.result.op is not Op.ENROLL}
    pictures = [
        *_face_pictures(settings, manifest, traffic, score, out_dir),
        reliability_file(traffic_pairs(cases, observed), out_dir / "reliability.png", prior),
        roc_png(cases, observed, 0.5, out_dir / "roc.png"),
        confusion_png(cases, observed, out_dir / "identify_confusion.png"),
        latency_png(answered, out_dir / "latency.png"),
        samples_png(cases, observed, traffic.plan.enrolled, out_dir / "sample_matches.png"),
    ]
    sizing = demo_training(dataset)
    notes = meaning_notes(dataset, manifest, figures, sizing, traffic.policy, observed)
    report = write_markdown(figures, context, notes, pictures, out_dir / "report.md")
    body = figures.as_json() | {"run_id": run_id, "tenant": traffic.tenant, "dataset": dataset}
    (out_dir / "figures.json").write_text(json.dumps(body, default=str, indent=2))
    return figures, report
