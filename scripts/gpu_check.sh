#!/usr/bin/env bash
# GPU check: the served face tower on CUDA (same embeddings as on the CPU, chips/s), then 2 epochs of
# Omniglot with Ray Train on every GPU of this machine (NCCL, one worker per GPU) and their throughput. Usage: scripts/gpu_check.sh [dataset] [extra `training.train` options...]
# Needs the shared data sets (TWINSTREAM_DATA_DIR, default ../shared/datasets) for omniglot; pass `digits`
# to run without any files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DATASET=${1:-omniglot}
shift || true

GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
if [ "$GPUS" -lt 1 ]; then
  echo "gpu_check: torch sees no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)'))" >&2
  exit 2
fi
"$PY" -c 'import torch; [print(f"GPU {i}: {torch.cuda.get_device_name(i)}") for i in range(torch.cuda.device_count())]'

# The served face tower on CUDA (what a replica with serve.gpus_per_replica > 0 runs): the same embeddings
# as on the CPU, and its batched throughput.
"$PY" - <<'PYEOF'
import time
import numpy as np, torch
from training.pretrained import pretrained_face_tower
from twinstream.images.preprocess import normalize
from twinstream.model.face_resnet import face_input_spec
chips = np.random.default_rng(0).integers(0, 256, (256, 150, 150, 3), dtype=np.uint8)
x = torch.from_numpy(normalize(chips, face_input_spec()))
tower = pretrained_face_tower()
with torch.inference_mode():
    cpu = tower(x[:16]).numpy()
    tower = tower.to("cuda")
    gpu = tower(x[:16].to("cuda")).float().cpu().numpy()
    cos = float(np.min(np.sum(cpu * gpu, axis=1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu, axis=1)))
    print(f"face tower CPU vs CUDA: min cosine {cos:.6f} over 16 chips")
    assert cos > 0.9999, "the CUDA tower does not reproduce the CPU embeddings"
    for batch in (1, 32, 256):
        xb = x[:batch].to("cuda")
        tower(xb); torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 3:
            tower(xb); n += batch
        torch.cuda.synchronize()
        print(f"face tower on CUDA, batch {batch}: {n / (time.perf_counter() - t0):.0f} chips/s")
PYEOF

OUT=${OUT:-$(mktemp -d)}
export RAY_TMPDIR=${RAY_TMPDIR:-$(mktemp -d /tmp/ray_gpu_check.XXXX)}
export RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.1
START=$(date +%s)
"$PY" -m training.train --dataset "$DATASET" --epochs 2 --workers "$GPUS" --gpu --threads 4 \
  --cpus-per-worker 1 --out "$OUT/models" --storage "$OUT/ray" "$@" | tee "$OUT/train.log"
END=$(date +%s)

ARTIFACT=$(grep -o 'artifact: .*' "$OUT/train.log" | tail -1 | cut -d' ' -f2)
"$PY" - "$ARTIFACT" "$GPUS" "$((END - START))" <<'PYEOF'
import json, sys
from pathlib import Path
path, gpus, wall = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
details = json.loads((path / "metrics.json").read_text())
for h in details["history"]:
    print(f"epoch {int(h['epoch'])}: {h['seconds']:.1f} s, {h['images_per_s'] * gpus:.0f} training images/s "
          f"over {gpus} GPU worker(s), val AUC {h['val_auc']:.4f}")
print(f"wall {wall} s (Ray start, data loading, evaluation included); artifact {path}")
print(json.dumps({k: round(v, 4) for k, v in details["metrics"].items()}))
PYEOF
