"""Artifact round trip, tamper detection and weights-only loading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.fakes import make_manifest
from twinstream.images.preprocess import InputSpec
from twinstream.model.artifact import (
    ArtifactError,
    Manifest,
    load_artifact,
    new_version,
    save_artifact,
)
from twinstream.model.tower import build_tower

SPEC = InputSpec(height=16, width=16, channels=1, invert=False, mean=0.3, std=0.3)


def _manifest(version: str | None = None, dim: int = 8) -> Manifest:
    return make_manifest(
        version=version or new_version(), input=SPEC, embedding_dim=dim, threshold=0.8,
        metrics={"auc": 0.9}, dataset="digits",
    )  # fmt: skip


def _saved(tmp_path: Path, **kwargs: object) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    tower = build_tower("conv4", SPEC, 8)
    path = save_artifact(tower, _manifest(), tmp_path, figures={"roc.png": b"\x89PNG"}, **kwargs)  # type: ignore[arg-type]
    return path, tower


def test_round_trip_gives_the_same_embeddings_and_manifest(tmp_path: Path) -> None:
    path, tower = _saved(tmp_path)
    loaded = load_artifact(path)
    x = torch.randn(4, 1, 16, 16)
    tower.eval()
    assert torch.allclose(loaded.tower(x), tower(x), atol=1e-6)
    assert not loaded.tower.training
    assert loaded.manifest.input == SPEC and loaded.manifest.threshold == 0.8
    assert (path / "roc.png").is_file() and (path / "metrics.json").is_file()
    assert json.loads((path / "manifest.json").read_text())["distance"] == "euclidean"


def test_the_latest_link_follows_the_newest_version(tmp_path: Path) -> None:
    first, _ = _saved(tmp_path)
    assert (tmp_path / "latest").resolve() == first.resolve()
    torch.manual_seed(1)
    second = save_artifact(build_tower("conv4", SPEC, 8), _manifest(version=first.name + "b"), tmp_path)
    assert (tmp_path / "latest").resolve() == second.resolve()
    assert load_artifact(tmp_path / "latest").manifest.version == second.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name, "latest"])


def test_torch_format_weights_round_trip_too(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path, weights_format="torch")
    assert load_artifact(path).manifest.weights_file == "tower.pt"


def test_the_manifest_round_trips_its_calibration_and_impostor_model_and_refuses_other_formats() -> None:
    m = _manifest()
    back = Manifest.from_json(m.to_json())
    assert back == m
    distances = np.array([0.0, 0.2, 0.5, 0.8, 1.1, 2.0])
    assert np.array_equal(back.probability(distances), m.probability(distances))
    assert back.impostors.threshold_at_far(1e-3) == m.impostors.threshold_at_far(1e-3)
    raw = json.loads(m.to_json())
    raw["format_version"] = 1
    with pytest.raises(ArtifactError, match="artifact format 1 is not 2"):
        Manifest.from_json(json.dumps(raw))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    weights = path / "tower.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="do not match the manifest"):
        load_artifact(path)


def test_manifest_that_does_not_fit_the_weights_is_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    raw = json.loads((path / "manifest.json").read_text())
    raw["embedding_dim"] = 16
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="do not fit"):
        load_artifact(path)


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_object_in_weights_is_refused_by_weights_only_loading(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path, weights_format="torch")
    evil = path / "tower.pt"
    torch.save({"conv": _Payload()}, evil)
    raw = json.loads((path / "manifest.json").read_text())
    import hashlib

    raw["weights_sha256"] = hashlib.sha256(evil.read_bytes()).hexdigest()  # an attacker controls both files
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="weights_only"):
        load_artifact(path)


def test_missing_or_malformed_artifacts_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"manifest\.json is missing"):
        load_artifact(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="malformed manifest"):
        load_artifact(tmp_path)


def test_versions_are_immutable_and_safe_as_collection_names(tmp_path: Path) -> None:
    version = new_version()
    assert version.replace("_", "").isalnum()
    tower = build_tower("conv4", SPEC, 8)
    save_artifact(tower, _manifest(version), tmp_path)
    with pytest.raises(ArtifactError, match="immutable"):
        save_artifact(tower, _manifest(version), tmp_path)


def test_tower_embeddings_are_unit_length() -> None:
    tower = build_tower("conv4", SPEC, 8).eval()
    norms = tower(torch.randn(5, 1, 16, 16)).norm(dim=1)
    assert torch.allclose(norms, torch.ones(5), atol=1e-5)
