"""Finishes and checks the generated protobuf package (``make protos`` / ``make protos-check``).

protoc writes modules but no ``__init__.py`` files; the generated tree is committed, so CI
regenerates it into a scratch folder and fails on any difference.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def add_package_markers(root: Path) -> None:
    """Make every folder under ``root`` (and ``root`` itself) an importable package."""
    for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        marker = folder / "__init__.py"
        if not marker.exists():
            marker.write_text("")


def generate(proto_root: Path, out: Path) -> None:
    """Run protoc (grpcio-tools) with the Python, gRPC and mypy stub generators into ``out``."""
    protos = sorted(str(p) for p in proto_root.rglob("*.proto"))
    bindir = Path(sys.executable).parent  # the mypy-protobuf plugins live beside the interpreter
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}", f"--grpc_python_out={out}", f"--mypy_out={out}", f"--mypy_grpc_out={out}",
        *protos,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    add_package_markers(out / "agents")


def differences(left: Path, right: Path) -> list[str]:
    """Relative paths that differ, or exist on one side only."""
    out: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        out.extend(f"{prefix}{n}" for n in cmp.left_only + cmp.right_only + cmp.diff_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(left, right, ignore=["__pycache__"]), "")
    return sorted(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("proto_root", type=Path, help="folder holding agents/**/*.proto (protos)")
    parser.add_argument("out", type=Path, help="folder receiving the agents package (gen)")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(args.out / "agents", ignore_errors=True)
        args.out.mkdir(parents=True, exist_ok=True)
        generate(args.proto_root, args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(args.proto_root, Path(tmp))
        diff = differences(args.out / "agents", Path(tmp) / "agents")
    if diff:
        print("generated code is stale; run `make protos` and commit. Differs:", *diff, sep="\n  ")
        return 1
    print("generated code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
