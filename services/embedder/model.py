"""The tower behind the embedder: load an artifact once, turn pre-processed batches into unit vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from twinstream.memory import reuse_freed_memory
from twinstream.model.artifact import LoadedArtifact, Manifest, load_artifact


class TowerEmbedder:
    """Batched, gradient-free forward passes of one model version on this process's CPU threads.

    Args:
        artifact: The loaded artifact (tower in eval mode).
        threads: Intra-op threads for this process (one replica should not take every core).
        max_chunk: Largest forward pass; bigger inputs are split. CPU convolutions get slower per
            image past ~64 images (cache): 56x46 faces 557 img/s at 64 vs 463 at 128, Omniglot with
            test-time views 360 vs 206 (1 thread, bench/stream.py's models).
    """

    def __init__(self, artifact: LoadedArtifact, threads: int = 1, max_chunk: int = 64) -> None:
        torch.set_num_threads(threads)
        reuse_freed_memory()  # activations are reused, not page-faulted in again on every pass
        self._tower = artifact.tower.eval()
        self.manifest: Manifest = artifact.manifest
        self._max_chunk = max_chunk

    @classmethod
    def from_dir(cls, model_dir: Path | str, threads: int = 1) -> TowerEmbedder:
        """Load the artifact directory ``model_dir`` (raises `twinstream.model.artifact.ArtifactError`)."""
        return cls(load_artifact(model_dir), threads=threads)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed pre-processed inputs.

        Args:
            batch: Float32 array (N, C, H, W) as made by `twinstream.images.preprocess.preprocess_batch`.

        Returns:
            Float32 array (N, embedding_dim) of L2-normalised embeddings.
        """
        if len(batch) == 0:
            return np.empty((0, self.manifest.embedding_dim), dtype=np.float32)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(batch), self._max_chunk):
                chunk = torch.from_numpy(np.ascontiguousarray(batch[start : start + self._max_chunk]))
                parts.append(self._tower(chunk).numpy())
        return np.concatenate(parts).astype(np.float32, copy=False)
