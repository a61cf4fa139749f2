"""The face demo's pictures: photos beside the aligned chips the tower sees, and the answered class photo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle
from PIL import Image

from cli.demo.class_photo import ClassPhoto, ClassPhotoScore
from twinstream.contracts import Decision, MatchResult
from twinstream.images.face_finder import FaceChipFinder


def chips_png(photos: Sequence[tuple[str, Path]], finder: FaceChipFinder, out: Path) -> Path:
    """Each photo with the face box the finder detected (top) and the aligned chip cut from it (bottom)."""
    fig, axes = plt.subplots(2, len(photos), figsize=(2.0 * len(photos), 4.4), squeeze=False)
    for j, (subject, path) in enumerate(photos):
        image = Image.open(path).convert("RGB")
        found, count = finder.largest(image)
        b = found.box
        axes[0][j].imshow(image)
        axes[0][j].add_patch(
            Rectangle(
                (b.left, b.top), b.right - b.left, b.bottom - b.top, fill=False, edgecolor="lime", linewidth=2
            )
        )
        axes[0][j].set_title(f"{subject}: {image.width}×{image.height}, {count} face", fontsize=7)
        axes[1][j].imshow(found.chip)
        axes[1][j].set_title(f"aligned chip {found.chip.shape[1]}×{found.chip.shape[0]}", fontsize=7)
        for ax in (axes[0][j], axes[1][j]):
            ax.axis("off")
    fig.suptitle(
        "photos with the detected face box (top) and the chip the face tower embeds (bottom)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def class_photo_png(photo: ClassPhoto, result: MatchResult | None, score: ClassPhotoScore, out: Path) -> Path:
    """The class photo with every face the service answered: its box, the name given and p; the register."""
    fig, (ax, side) = plt.subplots(1, 2, figsize=(12, 5.6), gridspec_kw={"width_ratios": [4, 1.2]})
    ax.imshow(photo.image)
    truth = {s.box: s.subject for s in photo.seats}
    for face in result.faces if result is not None else ():
        b = face.box
        right = face.decision is Decision.MATCH and any(
            name == face.subject
            and box.left <= (b.left + b.right) / 2 < box.right
            and box.top <= (b.top + b.bottom) / 2 < box.bottom
            for box, name in truth.items()
        )
        colour = "lime" if right else "red"
        label = face.subject if face.decision is Decision.MATCH else str(face.decision)
        prob = f" p={face.probability:.3f}" if face.probability is not None else ""
        ax.add_patch(
            Rectangle(
                (b.left, b.top),
                b.right - b.left,
                b.bottom - b.top,
                fill=False,
                edgecolor=colour,
                linewidth=2.5,
            )
        )
        ax.text(
            b.left,
            b.top - 6,
            label + prob,
            color="white",
            fontsize=9,
            bbox={"facecolor": colour, "alpha": 0.85, "pad": 2, "edgecolor": "none"},
        )
    ax.set_title(
        f"one identify request, faces: all — {score.faces_found} faces found, "
        f"{score.identified}/{len(score.students)} students named right",
        fontsize=10,
    )
    ax.axis("off")
    register = [
        f"present ({len(score.present)}):",
        *score.present,
        "",
        f"absent ({len(score.absent)}):",
        *score.absent,
    ]
    side.text(0.0, 1.0, "\n".join(register), va="top", family="monospace", fontsize=9)
    side.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
