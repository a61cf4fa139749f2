"""How well the verify probabilities of the demo's own traffic are calibrated: ECE, its interval, a diagram.

The demo's claims are exactly half genuine, half impostor (`cli.demo.plan.build_cases`): the balanced
prior the model's probabilities are stated for, so the traffic measures the calibration as stated. The
interval resamples identities, not requests (`training.calibration_quality`): the requests about one
person share that person's photos and quirks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cli.demo.cases import DemoCase, Observed
from training.calibration import IdentityPairs
from training.calibration_quality import EceEstimate, ece_with_interval, reliability_png
from twinstream.contracts import Op


@dataclass(frozen=True)
class TrafficPairs:
    """The answered verify requests as identity pairs: (true subject, claimed subject), p and distance."""

    probabilities: np.ndarray
    pairs: IdentityPairs

    @property
    def genuine_share(self) -> float:
        return float(self.pairs.same.mean()) if len(self.pairs.same) else float("nan")


def traffic_pairs(cases: Sequence[DemoCase], observed: dict[str, Observed]) -> TrafficPairs:
    """The verify requests that came back with a probability and a distance."""
    rows = [
        (c.true_subject, c.claimed_subject, o.result.probability, o.result.distance)
        for c in cases
        if c.op is Op.VERIFY
        and not c.poison
        and (o := observed.get(c.request_id))
        and o.result.probability is not None
        and o.result.distance is not None
    ]
    names = {name: i for i, name in enumerate(sorted({r[0] for r in rows} | {r[1] for r in rows}))}
    first = np.asarray([names[r[0]] for r in rows], dtype=np.int64)
    second = np.asarray([names[r[1]] for r in rows], dtype=np.int64)
    pairs = IdentityPairs(np.asarray([r[3] for r in rows], dtype=float), first == second, first, second)
    return TrafficPairs(np.asarray([r[2] for r in rows], dtype=float), pairs)


def traffic_ece(traffic: TrafficPairs, prior: float = 0.5, seed: int = 0) -> EceEstimate | None:
    """ECE at ``prior`` with its 95 % identity-bootstrap interval; None without both kinds of claim."""
    genuine, impostor = traffic.pairs.counts
    if genuine == 0 or impostor == 0:
        return None
    return ece_with_interval(traffic.probabilities, traffic.pairs, prior=prior, seed=seed)


def reliability_file(traffic: TrafficPairs, out: Path, prior: float = 0.5) -> Path:
    """The traffic's reliability diagram as a PNG file."""
    title = f"Verify probabilities of this run's traffic ({len(traffic.probabilities)} claims)"
    out.write_bytes(reliability_png(traffic.probabilities, traffic.pairs.same, title, prior))
    return out
