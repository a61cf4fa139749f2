"""Fixtures of the lifecycle system tests: two small model versions, trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small digits towers (different seeds: different vectors for the same image), ~5 s each."""
    from training.quick import train_quick

    out = tmp_path_factory.mktemp("lifecycle-models")
    return train_quick(out, "digits", epochs=3, seed=0), train_quick(out, "digits", epochs=3, seed=1)
