"""A new version of an artifact with the same weights, calibrated and evaluated again by today's code.

For artifacts written by an earlier format (their decision data is no longer what serving reads) and for
re-calibrating on more held-out data. The weights are checked against the old manifest's sha256 first;
the training history is carried over; the recipe (architecture, input, data set, loss) is the old one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from training.config import TrainConfig
from training.export import export_artifact
from training.finetune import splits_for
from training.pretrained import PRETRAINED_LOSS, calibration_splits
from twinstream.images.preprocess import InputSpec
from twinstream.model.artifact import MANIFEST_FILE, METRICS_FILE, ArtifactError, _sha256
from twinstream.model.tower import build_tower


def recalibrate(
    model_dir: Path, data_dir: Path, models_dir: Path, *, target_far: float = 1e-3, seed: int = 0
) -> Path:
    """Re-export ``model_dir``'s tower as a new version (see the module docstring); returns its directory.

    Raises:
        ArtifactError: If the weights do not match the old manifest or the file is not a state dict.
    """
    raw: dict[str, Any] = json.loads((model_dir / MANIFEST_FILE).read_text())
    weights = model_dir / Path(raw["weights_file"]).name
    if _sha256(weights) != raw.get("weights_sha256"):
        raise ArtifactError(f"weights of {model_dir} do not match its manifest: refusing to recalibrate")
    spec = InputSpec(**raw["input"])
    shifts = int(raw.get("test_time_shifts", 0))
    tower = build_tower(raw["architecture"], spec, int(raw["embedding_dim"]), shifts)
    tower.load_state_dict(load_file(str(weights)), strict=True)
    detail = (
        json.loads((model_dir / METRICS_FILE).read_text()) if (model_dir / METRICS_FILE).is_file() else {}
    )
    config = TrainConfig.from_dict({**detail.get("config", {}), "data_dir": str(data_dir), "seed": seed})
    splits = splits_for(config)  # aligned chips for a face tower, as its training and serving cut them
    if raw.get("loss") == PRETRAINED_LOSS:  # never trained: calibrated on every identity outside the test
        splits = calibration_splits(splits)
    return export_artifact(
        tower, splits, config, detail.get("history", []), models_dir, target_far=target_far,
        extra={"recalibrated_from": raw["version"]}, loss=raw.get("loss"), miner=raw.get("miner"),
    )  # fmt: skip
