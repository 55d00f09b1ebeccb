"""Builds the gateway's Python gRPC code from ``schemas/proto/gateway.proto``.

Generated code is not committed; ``make proto`` builds it and ``services.gateway.proto``
builds it on first import when it is missing or older than the .proto, so a fresh clone
never fails on an import. protoc writes ``import gateway_pb2`` (a top-level import) unless
the .proto sits at the package's path, so the schema folder is mapped onto that path
(``-Iservices/gateway/proto=schemas/proto``) and the generated code imports
``services.gateway.proto.gateway_pb2``. Files are generated in a scratch folder and moved
into place with ``os.replace``, so concurrent processes never import half-written code.

Run ``python -m services.gateway.protobuild [--force]`` to (re)build by hand.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from services.common.config import PROJECT_ROOT

PROTO_DIR = PROJECT_ROOT / "schemas" / "proto"
PACKAGE = "services/gateway/proto"
OUT_DIR = PROJECT_ROOT / PACKAGE
NAMES = ("gateway",)


class ProtoBuildError(RuntimeError):
    """protoc could not build the gateway code."""


def generated_files(name: str, out_dir: Path = OUT_DIR) -> tuple[Path, Path]:
    return out_dir / f"{name}_pb2.py", out_dir / f"{name}_pb2_grpc.py"


def is_stale(name: str, proto_dir: Path = PROTO_DIR, out_dir: Path = OUT_DIR) -> bool:
    """True when a generated file is missing or older than its .proto.

    Without the .proto (an install that ships only the package) existing code is used as is.
    """
    proto = proto_dir / f"{name}.proto"
    source = proto.stat().st_mtime_ns if proto.exists() else 0
    for path in generated_files(name, out_dir):
        if not path.exists() or path.stat().st_mtime_ns < source:
            return True
    return False


def build(name: str, proto_dir: Path = PROTO_DIR, out_dir: Path = OUT_DIR) -> list[Path]:
    """Generate ``<name>_pb2.py`` and ``<name>_pb2_grpc.py`` into ``out_dir``."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".protobuild-", dir=out_dir) as scratch:
        args = ["grpc_tools.protoc", f"-I{PACKAGE}={proto_dir}", f"--python_out={scratch}",
                f"--grpc_python_out={scratch}", f"{PACKAGE}/{name}.proto"]
        if protoc.main(args) != 0:
            raise ProtoBuildError(f"protoc failed on {proto_dir / (name + '.proto')} (see its message above)")
        built = []
        for path in generated_files(name, out_dir):
            os.replace(Path(scratch) / PACKAGE / path.name, path)
            built.append(path)
    return built


def ensure_built(proto_dir: Path = PROTO_DIR, out_dir: Path = OUT_DIR) -> list[Path]:
    """Build whatever is missing or stale; returns the files written (none when up to date)."""
    built: list[Path] = []
    for name in NAMES:
        if is_stale(name, proto_dir, out_dir):
            built += build(name, proto_dir, out_dir)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway.protobuild",
                                     description="build the gateway's gRPC code from schemas/proto")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    try:
        built = [p for n in NAMES for p in build(n)] if args.force else ensure_built()
    except ProtoBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(f"built {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
