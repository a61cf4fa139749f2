"""The CLI's thin HTTP clients (`twinstream enroll|verify|identify`) against the deployed API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from cli.commands.serve import enroll_command, identify_command, verify_command
from tests.support.serving import ADMIN_KEY, ServedApp

pytestmark = pytest.mark.system


def test_cli_clients_enrol_verify_and_identify_files(
    served_app: ServedApp, unique_name: str, tmp_path: Path
) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    files = []
    for i in (0, 10):  # two images of digit 0
        path = tmp_path / f"zero{i}.png"
        Image.fromarray((digits.images[i] * 15).astype("uint8"), mode="L").save(path)
        files.append(path)
    (bad := tmp_path / "bad.png").write_bytes(b"not a png at all" * 8)
    kw = {"url": served_app.url, "tenant": unique_name, "api_key": ADMIN_KEY, "as_json": True}

    out = io.StringIO()
    assert enroll_command(served_app.settings, files[:1], "zero", console=Console(file=out), **kw) == 0
    assert json.loads(out.getvalue())["decision"] == "ENROLLED"

    out = io.StringIO()
    assert verify_command(served_app.settings, files[:1], "zero", console=Console(file=out), **kw) == 0
    assert json.loads(out.getvalue())["decision"] == "MATCH"

    out = io.StringIO()
    assert identify_command(served_app.settings, [bad], top_k=1, console=Console(file=out), **kw) == 1
    assert json.loads(out.getvalue())["reason"] == "undecodable-image"

    table = io.StringIO()
    code = identify_command(served_app.settings, files, top_k=1, console=Console(file=table, width=200),
                            **{**kw, "as_json": False})  # fmt: skip
    assert code == 0
    assert "zero0.png" in table.getvalue() and "zero10.png" in table.getvalue()
