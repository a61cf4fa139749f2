"""Face ResNet figures (not a test): the PyTorch port's forward pass beside dlib's, on one CPU thread.

For 150×150 chips (random pixels: the cost does not depend on content) it measures, per image:

- `FaceResNet` forward at batch 1 and batch 32, channels-last and contiguous memory format;
- dlib's ``compute_face_descriptor`` on one aligned chip per call, and on a list of 32 chips;
- loading the ``.dat`` file (parse + build), and dlib's own load, once each.

Each figure has wall time (median, best) and the process's CPU time per image (median).

Threads are pinned to one before torch and dlib are imported. Prints a table and writes
``face_resnet-<date>.json`` in `cli.bench.results_dir`.

    python -m cli.bench.face_resnet --repeats 20
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

# One thread, set before torch and dlib create their thread pools.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np
import torch
import typer

from cli.bench import results_dir
from twinstream.model.face_resnet import load_face_resnet, normalize_chips
from twinstream.model.provenance import FACE_RESNET_FILE, packaged_model_path


def _per_image_ms(run: Callable[[], object], images: int, repeats: int) -> dict[str, float]:
    """Per-image wall time (median, best) and CPU time (median) in ms over ``repeats`` timed calls.

    On a shared machine wall time includes waiting for a core; the process's CPU time does not, so
    for single-threaded work it is the steadier figure.
    """
    for _ in range(2):
        run()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append((time.perf_counter() - start) * 1000 / images)
        cpu.append((time.process_time() - start_cpu) * 1000 / images)
    return {
        "wall_median_ms": round(statistics.median(wall), 2),
        "wall_best_ms": round(min(wall), 2),
        "cpu_median_ms": round(statistics.median(cpu), 2),
    }


def _torch_figures(path: Path, chips: np.ndarray, repeats: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for layout, channels_last in (("channels_last", True), ("contiguous", False)):
        model = load_face_resnet(path, channels_last=channels_last)
        for batch in (1, 32):
            x = normalize_chips(chips[:batch])  # a channels-last view of the NHWC pixels
            x = x if channels_last else x.contiguous()

            def forward(x: torch.Tensor = x, model: torch.nn.Module = model) -> object:
                with torch.inference_mode():
                    return model(x)

            figures[f"torch_{layout}_batch{batch}"] = _per_image_ms(
                forward, batch, max(3, repeats // batch * 4)
            )
    return figures


def _dlib_figures(path: Path, chips: np.ndarray, repeats: int) -> dict[str, Any]:
    import dlib

    start = time.perf_counter()
    recognizer = dlib.face_recognition_model_v1(str(path))
    figures: dict[str, Any] = {"dlib_load_s": round(time.perf_counter() - start, 3)}
    figures["dlib_one_chip_per_call"] = _per_image_ms(
        lambda: recognizer.compute_face_descriptor(chips[0]), 1, repeats
    )
    batch = list(chips[:32])
    figures["dlib_list_of_32"] = _per_image_ms(
        lambda: recognizer.compute_face_descriptor(batch), 32, max(3, repeats // 8)
    )
    return figures


def main(
    repeats: Annotated[int, typer.Option(help="timed calls at batch 1 (fewer for batches)")] = 20,
) -> None:
    """Measure and write face_resnet-<date>.json."""
    torch.set_num_threads(1)
    path = packaged_model_path(FACE_RESNET_FILE)
    chips = np.random.default_rng(0).integers(0, 256, (32, 150, 150, 3), dtype=np.uint8)
    start = time.perf_counter()
    load_face_resnet(path)
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "port_load_s": round(time.perf_counter() - start, 3),
    }
    results |= _torch_figures(path, chips, repeats)
    results |= _dlib_figures(path, chips, repeats)
    out = results_dir() / f"face_resnet-{results['date']}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:32s} {value}")
    print(f"written to {out}")


if __name__ == "__main__":
    typer.run(main)
