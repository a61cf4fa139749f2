"""Generate the Python protobuf modules in ``twinstream/_proto`` from ``protos/`` (grpcio-tools).

`make protos` runs it; ``tests/unit/test_protos.py`` regenerates into a temporary directory and fails
when the committed code differs, so a schema change cannot ship without its generated code.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # a source checkout: protos/ and twinstream/_proto/
PROTO_ROOT = REPO / "protos"
OUT_DIR = REPO / "twinstream" / "_proto"


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(root.rglob("*.proto"))


def generate(out_dir: Path = OUT_DIR, root: Path = PROTO_ROOT) -> list[Path]:
    """Compile every ``.proto`` under ``root`` into ``out_dir``; return the generated files."""
    from grpc_tools import protoc  # a dev dependency: only the build needs it

    out_dir.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(root)) for p in proto_files(root)]
    args = ["protoc", f"-I{root}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", *files]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {files}")
    for leaf in {out_dir, *(p.parent for p in out_dir.rglob("*_pb2.py"))}:
        for package_dir in [leaf, *leaf.parents]:
            if package_dir == out_dir.parent:
                break
            init = package_dir / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated protobuf code; do not edit (make protos)."""\n')
    return sorted(out_dir.rglob("*_pb2.py*"))


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(REPO))
    sys.exit(0)
