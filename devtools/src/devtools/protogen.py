"""Generate the gRPC code in libs/gateway-proto from proto/, or check it is current.

    python -m devtools.protogen --proto-dir proto --out libs/gateway-proto/src [--check]

The generated modules are committed (reviewable contract diffs; images need no
protoc). ``--check`` generates into a temporary directory and fails, listing
the files, when anything differs from what is committed: ``make test`` runs it,
so a stale copy cannot ship unnoticed.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

_GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "__init__.py")


def generate(proto_dir: Path, out: Path) -> None:
    """Run protoc over every .proto under ``proto_dir``; add empty ``__init__.py`` files."""
    protos = sorted(str(p) for p in proto_dir.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for proto in protos:
        package_dir = out / Path(proto).relative_to(proto_dir).parent
        for parent in (package_dir, *package_dir.parents):
            if parent == out or out not in parent.parents:
                break
            (parent / "__init__.py").touch()


def _generated_files(root: Path) -> set[Path]:
    return {
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and p.name.endswith(_GENERATED_SUFFIXES) and "__pycache__" not in p.parts
    }


def check(proto_dir: Path, out: Path) -> list[str]:
    """Differences between fresh generated code and ``out`` (empty when current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(proto_dir, fresh)
        want, have = _generated_files(fresh), _generated_files(out)
        problems = [f"missing: {p}" for p in sorted(want - have)]
        problems += [f"stale extra file: {p}" for p in sorted(have - want)]
        problems += [
            f"differs: {p}"
            for p in sorted(want & have)
            if not filecmp.cmp(fresh / p, out / p, shallow=False)
        ]
        return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-dir", type=Path, default=Path("proto"))
    parser.add_argument("--out", type=Path, default=Path("libs/gateway-proto/src"))
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.proto_dir, args.out)
        for line in problems:
            print(f"proto-check: {line}", file=sys.stderr)
        if problems:
            print("proto-check: generated code is stale; run `make proto`", file=sys.stderr)
            return 1
        return 0
    target = args.out / "gateway"
    if target.exists():
        shutil.rmtree(target)
    generate(args.proto_dir, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
