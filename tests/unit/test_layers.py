"""The import layers hold (`lint-imports`, run by `make lint`), and an upward import breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "services", "training", "twinstream")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason=f"import-linter is not installed in this environment ({LINT_IMPORTS})"
)


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _copy_tree(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "_proto"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_layers_hold_on_the_tree_as_it_is(tmp_path: Path) -> None:
    done = _lint(_copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("twinstream/contracts.py", "import services.app"),  # core → services
        ("training/config.py", "import cli.main"),  # training → entry points
        ("services/matching/pipeline.py", "import services.gallery.milvus_gallery"),  # pipeline → adapter
    ],
)
def test_an_upward_import_breaks_lint(tmp_path: Path, module: str, upward: str) -> None:
    root = _copy_tree(tmp_path)
    target = root / module
    target.write_text(target.read_text() + f"\n{upward}  # injected by the test\n")
    done = _lint(root)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout
