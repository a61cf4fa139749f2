"""The tower: unit embeddings, and test-time augmentation that only eval mode sees."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from tests.support.fakes import make_manifest
from twinstream.images.preprocess import InputSpec
from twinstream.model.artifact import Manifest, load_artifact, new_version, save_artifact
from twinstream.model.tower import build_tower, shifted_views

SPEC = InputSpec(height=16, width=16, channels=1, invert=False, mean=0.3, std=0.3)


def test_shifted_views_move_the_image_by_whole_pixels_and_replicate_the_border() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    views = shifted_views(x, 1)
    assert views.shape == (9, 1, 4, 4)
    assert torch.equal(views[0], x[0])  # view 0 is the input itself
    right = views[2]  # (dy=0, dx=+1): content moves one pixel left, last column repeats
    assert torch.equal(right[0, :, :3], x[0, 0, :, 1:])
    assert torch.equal(right[0, :, 3], x[0, 0, :, 3])


def test_eval_mode_averages_the_nine_views_and_train_mode_does_not() -> None:
    torch.manual_seed(0)
    tower = build_tower("conv4", SPEC, 8, test_time_shifts=1).eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        got = tower(x)
        single = [tower._embed(v) for v in shifted_views(x, 1).split(3)]
        expected = F.normalize(torch.stack(single).mean(0), dim=1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        assert torch.allclose(got.norm(dim=1), torch.ones(3))
        tower.test_time_shifts = 0
        plain = tower(x)
    assert not torch.allclose(got, plain, atol=1e-3)  # the views changed the embedding
    tower.train()
    tower.test_time_shifts = 1
    torch.testing.assert_close(tower(x), tower._embed(x))  # training never sees the views


def test_shifts_too_large_for_the_input_are_refused() -> None:
    with pytest.raises(ValueError, match="test_time_shifts must be in"):
        build_tower("conv4", SPEC, 8, test_time_shifts=4)


def test_the_artifact_carries_test_time_shifts_and_old_manifests_load_without_them(tmp_path: Path) -> None:
    manifest = make_manifest(version=new_version(), input=SPEC, embedding_dim=8, test_time_shifts=1)
    path = save_artifact(build_tower("conv4", SPEC, 8, test_time_shifts=1), manifest, tmp_path)
    assert load_artifact(path).tower.test_time_shifts == 1
    raw = json.loads((path / "manifest.json").read_text())
    del raw["test_time_shifts"]  # a manifest written before the field existed
    old = Manifest.from_json(json.dumps(raw))
    assert (
        old.test_time_shifts == 0
        and dataclasses.replace(old, test_time_shifts=1) == load_artifact(path).manifest
    )
