"""Face-alignment variants measured on AT&T with dlib's face ResNet, and the aligner's cost by image size.

Model SELECTION data only: ``att_faces`` is the face training/dev set (``yalefaces`` is the reserved
acceptance set and is never read here). Run from the repository root, one process (it pins itself to
one CPU core so the milliseconds are per core):

    python -m cli.bench.face_alignment variants    # the table in twinstream.images.faces
    python -m cli.bench.face_alignment speed       # ms per image by image size

For each variant: how many of the 400 images were detected / fell back / were refused, 40-way and
10-way one-shot accuracy averaged over every enrolment photo (photo k of each person enrolled, the
other 9 probed, k = 1..10), the equal error rate over all 1,800 genuine and 78,000 impostor pairs with
its distance threshold, the aligner's milliseconds per image (the faster of two runs of each) and the
descriptor's. 10-way accuracy is exact, not sampled: for a probe with r impostors closer than its own
person, the share of all 9-distractor subsets of the other 39 people that contain none of them,
C(39 - r, 9) / C(39, 9). `speed` reports the median and the fastest of 15 runs per size.
Figures go to ``face_alignment.json`` in `cli.bench.results_dir`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image
from sklearn.metrics import roc_curve

from cli.bench import results_dir
from twinstream.images.face_frames import FaceBox, FaceSettings, plan_frame
from twinstream.images.face_models import (
    MMOD_DETECTOR,
    RECOGNITION_RESNET,
    SHAPE_PREDICTOR_5,
    FaceDetector,
    HogFaceDetector,
    installed_model_dir,
)
from twinstream.images.faces import FaceAligner, FoundBy, NoFaceError

RESULTS_FILE = "face_alignment.json"
app = typer.Typer(no_args_is_help=True)


class NoDetector:
    """Detects nothing: every crop takes the fallback box (measures the fallback alone)."""

    window_px = 80

    def detect(self, pixels: np.ndarray) -> list[FaceBox]:
        return []


class MmodDetector:
    """dlib's mmod CNN face detector behind the same port (built lazily: dlib objects do not pickle)."""

    window_px = 80

    def __init__(self, model: Path) -> None:
        self._model = model
        self._cnn: Any = None

    def detect(self, pixels: np.ndarray) -> list[FaceBox]:
        import dlib

        if self._cnn is None:
            self._cnn = dlib.cnn_face_detection_model_v1(str(self._model))
        found = self._cnn(pixels, 0)
        return [
            FaceBox(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, float(d.confidence))
            for d in found
        ]


@dataclass(frozen=True)
class Variant:
    name: str
    settings: FaceSettings = field(default_factory=FaceSettings)
    detector: Callable[[], FaceDetector] = HogFaceDetector


def _variants(models: Path) -> list[Variant]:
    whole = (0.0, 0.0, 1.0, 1.0)
    square = (0.0, 0.089, 1.0, 0.911)  # the centred 92 x 92 square of a 92 x 112 crop
    mmod = models / MMOD_DETECTOR
    as_usual = FaceSettings(crop_border=0.0, fallback_box=whole)  # ~ dlib's usual up-sample 1, frame if none
    return [
        Variant("default: border 0.25, x2, median-box fallback"),
        Variant("no border", FaceSettings(crop_border=0.0)),
        Variant("no border, whole-frame fallback (dlib as usual)", as_usual),
        Variant("border 0.5", FaceSettings(crop_border=0.5)),
        Variant("x1 (min face 80)", FaceSettings(min_face_px=80)),
        Variant("x3 (min face 27)", FaceSettings(min_face_px=27)),
        Variant("fallback only: median box", detector=NoDetector),
        Variant("fallback only: centred square", FaceSettings(fallback_box=square), NoDetector),
        Variant("fallback only: whole frame", FaceSettings(fallback_box=whole), NoDetector),
        Variant("mmod CNN, border 0.25, x1", FaceSettings(min_face_px=80), lambda: MmodDetector(mmod)),
    ]  # fmt: skip


def _load_att(data_dir: Path) -> tuple[list[Image.Image], np.ndarray, np.ndarray]:
    root = data_dir / "att_faces"
    people, photos = range(1, 41), range(1, 11)
    images = [Image.open(root / f"s{p}" / f"{k}.pgm").convert("L") for p in people for k in photos]
    labels = np.repeat(np.arange(40), 10)
    shots = np.tile(np.arange(10), 40)
    return images, labels, shots


def one_shot(distances: np.ndarray, labels: np.ndarray, shots: np.ndarray) -> tuple[float, float]:
    """40-way and exact 10-way one-shot accuracy, averaged over every enrolment photo."""
    people = np.unique(labels)
    others = len(people) - 1
    acc_all, acc_10 = [], []
    for k in np.unique(shots):
        gallery = np.array([np.flatnonzero((labels == p) & (shots == k))[0] for p in people])
        probes = np.flatnonzero(shots != k)
        d = distances[np.ix_(probes, gallery)]
        own = d[np.arange(len(probes)), np.searchsorted(people, labels[probes])]
        closer = (d < own[:, None]).sum(axis=1)
        acc_all.append(np.mean(closer == 0))
        acc_10.append(np.mean([math.comb(others - r, 9) / math.comb(others, 9) for r in closer]))
    return float(np.mean(acc_all)), float(np.mean(acc_10))


def equal_error(distances: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """EER of all genuine vs impostor pairs (as `training.evaluate.equal_error_rate`), its threshold."""
    upper = np.triu_indices(len(labels), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    fpr, tpr, thresholds = roc_curve(same, -distances[upper])
    k = int(np.argmin(np.abs((1.0 - tpr) - fpr)))
    return float((fpr[k] + 1.0 - tpr[k]) / 2.0), float(-thresholds[k])


def _evaluate(variant: Variant, images: list[Image.Image], labels: np.ndarray, shots: np.ndarray,
              aligner_path: Path, resnet: Any) -> dict[str, Any]:  # fmt: skip
    aligner = FaceAligner(aligner_path, variant.settings, variant.detector())
    aligner.largest(images[0])  # load the models outside the timing
    chips, how, align_s = [], [], []
    for image in images:
        face, best = None, math.inf
        for _ in range(2):  # the faster of two runs: the machine is shared, the cost is the aligner's
            start = time.perf_counter()
            try:
                face, _count = aligner.largest(image)
            except NoFaceError:
                face = None
            best = min(best, time.perf_counter() - start)
        align_s.append(best)
        how.append(face.found_by if face else "refused")
        chips.append(face.chip if face else np.zeros((150, 150, 3), np.uint8))
    start = time.perf_counter()
    descriptors = np.array(resnet.compute_face_descriptor([np.ascontiguousarray(c) for c in chips]))
    describe_ms = (time.perf_counter() - start) / len(chips) * 1000
    distances = np.linalg.norm(descriptors[:, None] - descriptors[None, :], axis=-1)
    acc_40, acc_10 = one_shot(distances, labels, shots)
    eer, threshold = equal_error(distances, labels)
    return {
        "variant": variant.name, "detected": how.count(FoundBy.DETECTED),
        "fell_back": how.count(FoundBy.CROP_FALLBACK), "refused": how.count("refused"),
        "one_shot_40": acc_40, "one_shot_10": acc_10, "eer": eer, "eer_threshold": threshold,
        "align_ms": float(np.mean(align_s) * 1000), "align_ms_median": float(np.median(align_s) * 1000),
        "descriptor_ms": describe_ms,
    }  # fmt: skip


def _pin_one_core(core: int) -> None:
    os.sched_setaffinity(0, {core})


def _save(key: str, rows: list[dict[str, Any]]) -> None:
    results = results_dir() / RESULTS_FILE
    saved = json.loads(results.read_text()) if results.is_file() else {}
    # The load average says how shared the machine was: the milliseconds grow with it, accuracy does not.
    load = [round(x, 2) for x in os.getloadavg()]
    saved[key] = {"at": time.strftime("%F %T"), "cpu_cores": 1, "load_avg_1_5_15": load, "rows": rows}
    results.write_text(json.dumps(saved, indent=2))


DataDir = Annotated[Path, typer.Option(envvar="TWINSTREAM_DATA_DIR", help="the shared datasets folder")]


@app.command()
def variants(data_dir: DataDir = Path("../shared/datasets"), core: int = 0, only: str = "") -> None:
    """The alignment variants on all 400 AT&T images (``--only`` picks variants whose name contains it)."""
    import dlib

    _pin_one_core(core)
    models = installed_model_dir()
    resnet = dlib.face_recognition_model_v1(str(models / RECOGNITION_RESNET))
    images, labels, shots = _load_att(data_dir)
    rows = []
    print(f"{'variant':50s} det  fb ref   40-way  10-way    EER @ dist   align ms  desc ms")
    for variant in _variants(models):
        if only and only not in variant.name:
            continue
        r = _evaluate(variant, images, labels, shots, models / SHAPE_PREDICTOR_5, resnet)
        rows.append(r)
        print(
            f"{r['variant']:50s} {r['detected']:3d} {r['fell_back']:3d} {r['refused']:3d}  "
            f"{r['one_shot_40']:7.2%} {r['one_shot_10']:7.2%}  {r['eer']:6.2%} @ {r['eer_threshold']:.3f}"
            f"  {r['align_ms']:6.1f}   {r['descriptor_ms']:6.1f}",
            flush=True,
        )
    _save("variants" + (f":{only}" if only else ""), rows)


def _scene(size: tuple[int, int], face: Image.Image, face_side: int) -> Image.Image:
    """A gradient RGB canvas with one AT&T face (bordered like a photo) of about ``face_side`` px."""
    width, height = size
    ramp = np.linspace(60, 200, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    canvas = Image.fromarray(ramp.astype(np.uint8))
    scaled = face.convert("RGB").resize((round(face_side * 92 / 76), round(face_side * 112 / 76)))
    canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


@app.command()
def speed(data_dir: DataDir = Path("../shared/datasets"), core: int = 0, repeats: int = 15) -> None:
    """Milliseconds of `FaceAligner.largest` by image size (one face of ~1/3 the short side)."""
    _pin_one_core(core)
    aligner = FaceAligner.installed()
    face = Image.open(data_dir / "att_faces" / "s1" / "1.pgm")
    sizes = [(92, 112), (320, 240), (640, 480), (1024, 768), (1280, 960), (1920, 1080), (4032, 3024)]
    rows = []
    for size in sizes:
        image = face if size == (92, 112) else _scene(size, face, min(size) // 3)
        aligner.largest(image)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            found, _count = aligner.largest(image)
            times.append(time.perf_counter() - start)
        frame = plan_frame(*size, aligner.settings, 80)
        row = {
            "size": f"{size[0]}x{size[1]}", "detect_size": f"{frame.detect_width}x{frame.detect_height}",
            "smallest_face_px": frame.smallest_face(80, aligner.settings), "found_by": str(found.found_by),
            "ms_median": float(np.median(times) * 1000), "ms_min": float(np.min(times) * 1000),
        }  # fmt: skip
        rows.append(row)
        print(row, flush=True)
    _save("speed", rows)


if __name__ == "__main__":
    app()
