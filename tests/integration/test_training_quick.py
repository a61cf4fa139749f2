"""Quick single-process training (the fixture other integration tests use) and the eval command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from training.quick import train_quick
from twinstream.model.artifact import load_artifact

pytestmark = pytest.mark.integration


def test_quick_training_writes_a_complete_artifact_that_eval_reproduces(tmp_path: Path) -> None:
    path = train_quick(tmp_path, "digits", epochs=4, seed=0)
    loaded = load_artifact(path)
    assert {p.name for p in path.iterdir()} >= {
        "manifest.json", "tower.safetensors", "metrics.json", "roc.png", "training_curves.png",
    }  # fmt: skip
    assert loaded.manifest.dataset == "digits" and loaded.manifest.loss == "triplet"
    assert loaded.manifest.metrics["far_at_threshold"] < 0.01
    out = tmp_path / "eval.json"
    args = ["eval", "--model", str(path), "--dataset", "digits", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    evaluated = json.loads(out.read_text())["metrics"]
    assert abs(evaluated["auc"] - loaded.manifest.metrics["auc"]) < 1e-6  # same pairs; float noise only


def test_the_exported_tower_embeds_with_the_configured_test_time_shifts(tmp_path: Path) -> None:
    from training.config import TrainConfig
    from training.quick import train_local

    cfg = TrainConfig(dataset="digits", epochs=1, threads=1, embedding_dim=16, test_time_shifts=1)
    path = train_local(cfg, tmp_path)
    loaded = load_artifact(path)
    assert loaded.manifest.test_time_shifts == 1 and loaded.tower.test_time_shifts == 1
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app, ["eval", "--model", str(path), "--dataset", "digits", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    # eval rebuilds the tower from the manifest, views included, and finds the metrics export found
    assert abs(json.loads(out.read_text())["metrics"]["auc"] - loaded.manifest.metrics["auc"]) < 1e-6


def test_recalibrate_writes_a_new_version_of_the_same_weights_refusing_altered_ones(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from training.recalibrate import recalibrate
    from twinstream.model.artifact import ArtifactError

    path = train_quick(tmp_path / "a", "digits", epochs=2, seed=0)
    old = json.loads((path / "manifest.json").read_text())
    again = recalibrate(path, Path("../shared/datasets"), tmp_path / "b")
    new = json.loads((again / "manifest.json").read_text())
    assert new["version"] != old["version"]
    before, after = load_file(str(path / "tower.safetensors")), load_file(str(again / "tower.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((again / "metrics.json").read_text())["recalibrated_from"] == old["version"]
    assert new["calibration"] == old["calibration"]  # same weights, data and seed: the same fit
    load_artifact(again)

    (path / "tower.safetensors").write_bytes((path / "tower.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactError, match="do not match its manifest"):
        recalibrate(path, Path("../shared/datasets"), tmp_path / "c")
