"""Histogram bucket boundaries shared by the bundles (base units: seconds, items, distance, probability).

Ray requires strictly positive boundaries, so none starts at zero; the implicit ``+Inf`` bucket
catches the rest.
"""

from __future__ import annotations

#: Stage and end-to-end latencies, 5 ms to 2 min.
LATENCY_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
#: Items per batch (Kafka records per poll, images per forward pass).
BATCH_SIZE: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Distances between unit vectors (cosine distance and L2 both lie in [0, 2]).
DISTANCE: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 21))
#: Calibrated match probabilities.
PROBABILITY: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
