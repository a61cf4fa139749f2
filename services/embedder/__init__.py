"""The tower of a model artifact loaded for batched, gradient-free forward passes (`TowerEmbedder`)."""
