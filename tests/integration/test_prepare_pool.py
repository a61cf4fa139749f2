"""The replica's pool of face-finding processes (`twinstream.images.prepare_pool`): the same chips as
in-process preparation, work spread over its processes, no orphan when its parent is killed."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.waiting import wait_until
from twinstream.config import FacesSettings, LimitsSettings
from twinstream.contracts import ImageRequest, Op, RejectReason
from twinstream.images.face_finder import FaceFinders
from twinstream.images.prepare_pool import PreparePool
from twinstream.images.prepared import prepare
from twinstream.model.face_resnet import face_input_spec

pytestmark = pytest.mark.integration

DATA = Path(os.environ.get("TWINSTREAM_DATA_DIR", "../shared/datasets"))


def _requests() -> list[ImageRequest]:
    photos = sorted((DATA / "att_faces").rglob("*.pgm"))[:7]
    if not photos:
        pytest.fail(f"no AT&T photos under {DATA / 'att_faces'}: set TWINSTREAM_DATA_DIR")
    blank = io.BytesIO()
    Image.new("RGB", (640, 480), (128, 128, 128)).save(blank, format="PNG")
    out = [ImageRequest(f"r{i}", Op.IDENTIFY, p.read_bytes()) for i, p in enumerate(photos)]
    out.insert(2, ImageRequest("bad", Op.IDENTIFY, b"not an image"))
    out.insert(5, ImageRequest("blank", Op.IDENTIFY, blank.getvalue()))
    return out


def test_the_pool_cuts_the_same_chips_as_this_process_on_several_processes() -> None:
    spec, requests = face_input_spec(), _requests()
    pool = PreparePool(2, LimitsSettings(), FacesSettings())
    try:
        pids = pool.warm()
        assert len(pids) == 2 and os.getpid() not in pids
        batch, refused = asyncio.run(pool.prepare(requests, spec))
    finally:
        pool.close()
    alone, alone_refused = prepare(requests, spec, LimitsSettings(), FaceFinders().for_spec(spec))
    assert [r.request_id for r in batch.requests] == [r.request_id for r in alone.requests]
    assert np.array_equal(batch.pixels, alone.pixels) and batch.faces == alone.faces
    assert (
        {i: e.reason for i, e in refused.items()}
        == {2: RejectReason.UNDECODABLE_IMAGE, 5: RejectReason.NO_FACE}
        == {i: e.reason for i, e in alone_refused.items()}
    )


def test_the_pools_processes_end_with_their_parent(tmp_path: Path) -> None:
    script = (
        "from twinstream.config import FacesSettings, LimitsSettings\n"
        "from twinstream.images.prepare_pool import PreparePool\n"
        "pool = PreparePool(2, LimitsSettings(), FacesSettings())\n"
        "print(' '.join(map(str, sorted(pool.warm()))), flush=True)\n"
        "import signal\n"
        "signal.pause()  # until the test kills it\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    wait_until(lambda: not any(_alive(p) for p in pids), timeout_s=30, what="pool workers to exit")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
