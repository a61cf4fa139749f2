"""Keep glibc from handing big tensor buffers back to the kernel after every forward pass.

glibc serves allocations above its mmap threshold (dynamic, at most 32 MiB) with a fresh ``mmap`` and
returns them with ``munmap`` on free. A CPU forward pass allocates its activations anew each call, so a
batch of 64 56x46 faces (a 42 MB activation) page-faults every one of its pages again on every call:
measured on 2 cores, 650k minor faults and 1.6 s of system time per 4 s of forward passes, 490 images/s
instead of 770-850 once the buffers are reused (`twinstream bench` / bench/stream.py figures).

`reuse_freed_memory` raises the mmap and trim thresholds so freed activations go back to the heap and the
next pass reuses them; the process keeps its peak heap (what a serving replica or a training worker
needs again a few milliseconds later anyway).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations below this come from the heap and stay there when freed.
DEFAULT_THRESHOLD_BYTES = 1 << 30


def reuse_freed_memory(threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; returns whether glibc accepted them.

    A no-op (False) where the C library is not glibc (macOS, musl): nothing else changes behaviour.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, threshold_bytes)) and ok
    if not ok:
        log.debug("mallopt refused a %d-byte threshold; freed buffers go back to the kernel", threshold_bytes)
    return ok
