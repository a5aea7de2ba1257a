"""Regenerate the Python modules for every .proto under protos/.

Why: the generated code is committed so nothing needs protoc at import time, which means it can
drift from its sources. This script is the one way to produce it (`make protos`, or
`python -m protos.generate`), and the freshness test calls it to prove the committed files match.
It uses grpc_tools' bundled protoc and well-known types, so the output depends only on the
pinned grpcio-tools version, not on whatever protoc the machine has.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTOS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTOS_DIR.parent


def proto_sources() -> list[Path]:
    """Every .proto file under protos/, in a stable order."""
    return sorted(PROTOS_DIR.rglob("*.proto"))


def generate(out_dir: Path = REPO_ROOT) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for each source into out_dir.

    Import paths are relative to the repository root, so the files land under
    out_dir/protos/... and import as `protos.<path>`. Returns the sources compiled.
    """
    sources = proto_sources()
    well_known = resources.files("grpc_tools") / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={REPO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(source) for source in sources),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {', '.join(map(str, sources))}")
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT,
        help="directory to write into (default: the repository root, in place)",
    )
    options = parser.parse_args(argv)
    for source in generate(options.out):
        print(f"generated {source.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
