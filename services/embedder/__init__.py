"""Ray Serve embedder: the model artifact's tower behind a batched deployment."""
