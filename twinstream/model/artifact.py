"""Model artifact: a versioned directory with ``manifest.json`` and the tower's weights; save and load.

Weights are the tower's ``state_dict`` only: a safetensors file by default (no pickle at all), or a
``torch.save`` file read back with ``torch.load(weights_only=True)``. The manifest records their sha256,
so a swapped or tampered weights file is refused before it is parsed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from twinstream.images.preprocess import InputSpec
from twinstream.model.calibration import ScoreCalibration
from twinstream.model.impostor import ImpostorModel
from twinstream.model.tower import build_tower

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "tower.safetensors"
TORCH_WEIGHTS_FILE = "tower.pt"
METRICS_FILE = "metrics.json"
FORMAT_VERSION = 2


class ArtifactError(ValueError):
    """An artifact that is missing, malformed, tampered with or does not match its manifest."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything serving needs to rebuild, run and interpret the tower.

    Decisions come from ``calibration`` (distance → calibrated probability of "same identity", at its
    stated prior) and ``impostors`` (held-out impostor distance distribution, which maps a tenant's target
    FAR or FPIR and gallery size to a distance threshold): see `twinstream.model.operating_point`.
    ``threshold`` and ``target_far`` summarise the verify operating point at the default policy;
    ``provenance`` records where every weight file came from and under which licence.
    """

    version: str
    architecture: str
    input: InputSpec
    embedding_dim: int
    threshold: float
    target_far: float
    calibration: ScoreCalibration
    impostors: ImpostorModel
    metrics: dict[str, float]
    dataset: str
    loss: str
    miner: str
    created_at: str
    distance: str = "euclidean"
    test_time_shifts: int = 0  # eval-mode test-time augmentation of the tower (twinstream.model.tower)
    provenance: dict[str, Any] = field(default_factory=dict)
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION

    def probability(self, distances: np.ndarray | float) -> np.ndarray:
        """Calibrated probability that each distance is between two images of the same identity."""
        return self.calibration.probability(distances)

    def to_json(self) -> str:
        """Serialise to the JSON stored as ``manifest.json``."""
        raw = {name: getattr(self, name) for name in Manifest.__dataclass_fields__}
        raw["input"] = asdict(self.input)
        raw["calibration"] = self.calibration.to_dict()
        raw["impostors"] = self.impostors.to_dict()
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse ``manifest.json`` text.

        Raises:
            ArtifactError: If the JSON is malformed, misses fields or is of another format version.
        """
        try:
            raw: dict[str, Any] = json.loads(text)
            if raw.get("format_version") != FORMAT_VERSION:
                raise ArtifactError(
                    f"artifact format {raw.get('format_version')} is not {FORMAT_VERSION}: "
                    "calibrate its weights again with `twinstream models recalibrate --model DIR`"
                )
            raw["input"] = InputSpec(**raw["input"])
            raw["calibration"] = ScoreCalibration.from_dict(raw["calibration"])
            raw["impostors"] = ImpostorModel.from_dict(raw["impostors"])
            raw["metrics"] = {str(k): float(v) for k, v in raw["metrics"].items()}
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, ArtifactError):
                raise
            raise ArtifactError(f"malformed manifest: {exc}") from exc


@dataclass(frozen=True)
class LoadedArtifact:
    """A loaded artifact: its manifest, the tower in eval mode, and where it came from."""

    manifest: Manifest
    tower: nn.Module
    path: Path = field(default=Path())


def new_version(now: datetime | None = None) -> str:
    """A sortable version id safe for file and Milvus collection names, e.g. ``v20261128_202148_3f9a1c``."""
    now = now or datetime.now(UTC)
    return f"v{now:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain_state_dict(tower: nn.Module) -> dict[str, torch.Tensor]:
    """The tower's weights, unwrapped from DDP (no ``module.`` prefix) and contiguous for safetensors."""
    module = getattr(tower, "module", tower)
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_artifact(
    tower: nn.Module,
    manifest: Manifest,
    models_dir: Path,
    *,
    figures: Mapping[str, bytes] | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
    weights_format: str = "safetensors",
) -> Path:
    """Write ``models_dir/<manifest.version>/`` with weights, manifest, metrics.json and figures.

    Args:
        tower: The trained tower (a DDP wrapper is unwrapped).
        manifest: Its manifest; ``weights_sha256`` is filled in here.
        models_dir: Parent directory of all versions.
        figures: PNG bytes by file name (``roc.png``, ``training_curves.png``).
        extra_metrics: More detail for ``metrics.json`` (history, curves); the manifest keeps the summary.
        weights_format: ``safetensors`` (default) or ``torch`` (``torch.save`` of the state_dict).

    Returns:
        The artifact directory; ``models_dir/latest`` then links to it.
    """
    out = Path(models_dir) / manifest.version
    if out.exists():
        raise ArtifactError(f"artifact {out} already exists; versions are immutable")
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=False)
    weights = tmp / (WEIGHTS_FILE if weights_format == "safetensors" else TORCH_WEIGHTS_FILE)
    if weights_format == "safetensors":
        save_file(_plain_state_dict(tower), str(weights), metadata={"version": manifest.version})
    elif weights_format == "torch":
        torch.save(_plain_state_dict(tower), weights)
    else:
        raise ValueError(f"weights_format must be 'safetensors' or 'torch', got {weights_format!r}")
    fields = {**_shallow(manifest), "weights_file": weights.name, "weights_sha256": _sha256(weights)}
    sealed = Manifest(**fields)
    (tmp / MANIFEST_FILE).write_text(sealed.to_json())
    metrics = {"version": sealed.version, "metrics": sealed.metrics, **(extra_metrics or {})}
    (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=float))
    for name, data in (figures or {}).items():
        (tmp / Path(name).name).write_bytes(data)
    tmp.rename(out)
    _point_latest(Path(models_dir), out.name)
    return out


#: The link in a models directory to its newest version (``twinstream serve --model models/latest``).
LATEST_LINK = "latest"


def _point_latest(models_dir: Path, version: str) -> None:
    """Point ``models_dir/latest`` at ``version`` in one rename (a reader never sees it missing)."""
    staged = models_dir / f".{LATEST_LINK}.{version}"
    staged.unlink(missing_ok=True)
    staged.symlink_to(version, target_is_directory=True)
    staged.replace(models_dir / LATEST_LINK)


def _shallow(manifest: Manifest) -> dict[str, Any]:
    return {name: getattr(manifest, name) for name in Manifest.__dataclass_fields__}


def load_artifact(path: Path | str, device: str = "cpu") -> LoadedArtifact:
    """Load an artifact directory and rebuild its tower in eval mode.

    Raises:
        ArtifactError: If files are missing, the weights' sha256 differs from the manifest's, or the
            weights do not fit the architecture the manifest describes.
    """
    root = Path(path)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(f"not a twinstream artifact: {manifest_path} is missing")
    manifest = Manifest.from_json(manifest_path.read_text())
    weights_path = root / Path(manifest.weights_file).name
    if not weights_path.is_file():
        raise ArtifactError(f"artifact {root} is incomplete: {weights_path.name} is missing")
    if manifest.format_version != FORMAT_VERSION:
        raise ArtifactError(f"artifact format {manifest.format_version} is not {FORMAT_VERSION}")
    digest = _sha256(weights_path)
    if digest != manifest.weights_sha256:
        raise ArtifactError(
            f"weights of {root} do not match the manifest (sha256 {digest[:12]}… != "
            f"{manifest.weights_sha256[:12]}…): tampered or mixed-up artifact"
        )
    try:
        state = _read_weights(weights_path, device)
        tower = build_tower(
            manifest.architecture, manifest.input, manifest.embedding_dim, manifest.test_time_shifts
        )
        tower.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, ValueError, KeyError) as exc:
        raise ArtifactError(f"weights of {root} do not fit {manifest.architecture}: {exc}") from exc
    tower.to(device).eval()
    return LoadedArtifact(manifest=manifest, tower=tower, path=root)


def _read_weights(path: Path, device: str) -> dict[str, torch.Tensor]:
    """Read a state_dict without ever unpickling code."""
    if path.suffix == ".safetensors":
        return load_file(str(path), device=device)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
        raise ArtifactError(
            f"{path} is not a plain state_dict (refused by weights_only loading): {exc}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{path} does not hold a state_dict of tensors")
    return state
