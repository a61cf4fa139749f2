"""Served accuracy equals the artifact's own evaluation: one-shot identify and verify on unseen digits.

Each round enrols one image per unseen (test) digit in its own tenant, then identifies and verifies
the other test images through the pipeline handle; a sample also goes through HTTP and must get the
same answers. Averaged over rounds, one-shot accuracy must match the manifest's ``oneshot_3way`` and
the verify accept rates its ``tar_at_threshold`` / ``far_at_threshold``, within a few points.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.serving import ServedApp, png_bytes
from twinstream.contracts import Decision, ImageRequest, MatchResult, Op

pytestmark = pytest.mark.system
ROUNDS, QUERIES, BATCH, HTTP_SAMPLE = 16, 150, 150, 40
TOLERANCE = 0.06


def _process(app: ServedApp, requests: list[ImageRequest]) -> list[MatchResult]:
    out: list[MatchResult] = []
    for start in range(0, len(requests), BATCH):
        out += app.handle.process.remote(requests[start : start + BATCH]).result()  # type: ignore[attr-defined]
    return out


@dataclass(frozen=True)
class Round:
    """One round's rates, and its identify requests with their handle results."""

    oneshot: float
    tar: float
    far: float
    identify: list[ImageRequest]
    found: list[MatchResult]
    genuine: list[ImageRequest]
    verified: list[MatchResult]


def _round(app: ServedApp, tenant: str, images: list[bytes], labels: np.ndarray, seed: int) -> Round:
    rng = np.random.default_rng(seed)
    classes = [str(c) for c in np.unique(labels)]
    support = {c: int(rng.choice(np.flatnonzero(labels.astype(str) == c))) for c in classes}
    enrol = [ImageRequest(f"{tenant}-e{c}", Op.ENROLL, images[i], tenant, c) for c, i in support.items()]
    assert {r.decision for r in _process(app, enrol)} == {Decision.ENROLLED}
    pool = np.setdiff1d(np.arange(len(images)), list(support.values()))
    queries = rng.choice(pool, size=QUERIES, replace=False)
    truth = [str(labels[q]) for q in queries]
    impostor = [str(rng.choice([c for c in classes if c != t])) for t in truth]
    identify = [ImageRequest(f"{tenant}-i{q}", Op.IDENTIFY, images[q], tenant, top_k=3) for q in queries]
    genuine = [
        ImageRequest(f"{tenant}-g{q}", Op.VERIFY, images[q], tenant, t)
        for q, t in zip(queries, truth, strict=True)
    ]
    impost = [
        ImageRequest(f"{tenant}-x{q}", Op.VERIFY, images[q], tenant, s)
        for q, s in zip(queries, impostor, strict=True)
    ]
    found, verified = _process(app, identify), _process(app, genuine)
    return Round(
        oneshot=float(np.mean([r.candidates[0].subject == t for r, t in zip(found, truth, strict=True)])),
        tar=float(np.mean([r.decision == Decision.MATCH for r in verified])),
        far=float(np.mean([r.decision == Decision.MATCH for r in _process(app, impost)])),
        identify=identify,
        found=found,
        genuine=genuine,
        verified=verified,
    )


def _over_http(app: ServedApp, request: ImageRequest) -> dict[str, Any]:
    path = "/v1/identify" if request.op == Op.IDENTIFY else f"/v1/subjects/{request.subject}/verify"
    with app.client() as http:
        response = http.post(
            path, params={"top_k": request.top_k}, content=request.image,
            headers={"Content-Type": "image/png", "X-Tenant": request.tenant},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_served_one_shot_accuracy_matches_the_artifacts_evaluation(
    served_app: ServedApp, unique_name: str
) -> None:
    from training.datasets import load_dataset

    test = load_dataset("digits", Path(), seed=0).test
    images = [png_bytes(img) for img in test.images]
    rounds = [_round(served_app, f"{unique_name}r{i}", images, test.labels, seed=i) for i in range(ROUNDS)]
    metrics = served_app.manifest.metrics
    oneshot = float(np.mean([r.oneshot for r in rounds]))
    tar, far = float(np.mean([r.tar for r in rounds])), float(np.mean([r.far for r in rounds]))
    print(f"served oneshot_3way {oneshot:.3f} (artifact {metrics['oneshot_3way']:.3f})")
    print(f"TAR {tar:.3f} ({metrics['tar_at_threshold']:.3f})")
    print(f"FAR {far:.4f} ({metrics['far_at_threshold']:.4f})")
    assert abs(oneshot - metrics["oneshot_3way"]) <= TOLERANCE
    assert abs(tar - metrics["tar_at_threshold"]) <= TOLERANCE
    assert abs(far - metrics["far_at_threshold"]) <= TOLERANCE

    first = rounds[0]
    sample = list(zip(first.identify, first.found, strict=True))[:HTTP_SAMPLE]
    sample += list(zip(first.genuine, first.verified, strict=True))[:HTTP_SAMPLE]
    with ThreadPoolExecutor(8) as pool:
        over_http = list(pool.map(lambda pair: _over_http(served_app, pair[0]), sample))
    for (_, by_handle), by_http in zip(sample, over_http, strict=True):
        assert by_http["decision"] == by_handle.decision
        assert [c["subject"] for c in by_http["candidates"]] == [c.subject for c in by_handle.candidates]
        assert by_http["candidates"][0]["distance"] == pytest.approx(
            by_handle.candidates[0].distance, abs=1e-4
        )
