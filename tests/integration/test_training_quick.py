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
