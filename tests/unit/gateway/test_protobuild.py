"""The generated gRPC code is built from the .proto when missing or stale, with package imports."""
from __future__ import annotations

import os
import shutil

from services.gateway import protobuild


def _copy_proto(tmp_path):
    proto_dir = tmp_path / "proto"
    proto_dir.mkdir()
    shutil.copy(protobuild.PROTO_DIR / "gateway.proto", proto_dir)
    return proto_dir, tmp_path / "out"


def test_missing_code_is_built_and_then_left_alone(tmp_path):
    proto_dir, out_dir = _copy_proto(tmp_path)
    assert protobuild.is_stale("gateway", proto_dir, out_dir)
    built = protobuild.ensure_built(proto_dir, out_dir)
    assert sorted(p.name for p in built) == ["gateway_pb2.py", "gateway_pb2_grpc.py"]
    assert protobuild.ensure_built(proto_dir, out_dir) == []
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []  # no scratch left behind


def test_a_newer_proto_makes_the_code_stale(tmp_path):
    proto_dir, out_dir = _copy_proto(tmp_path)
    protobuild.ensure_built(proto_dir, out_dir)
    generated = protobuild.generated_files("gateway", out_dir)[0].stat().st_mtime_ns
    os.utime(proto_dir / "gateway.proto", ns=(generated + 10**9, generated + 10**9))
    assert protobuild.is_stale("gateway", proto_dir, out_dir)


def test_generated_stubs_import_the_messages_through_the_package(tmp_path):
    proto_dir, out_dir = _copy_proto(tmp_path)
    protobuild.ensure_built(proto_dir, out_dir)
    grpc_code = protobuild.generated_files("gateway", out_dir)[1].read_text()
    assert "from services.gateway.proto import gateway_pb2" in grpc_code
    assert "\nimport gateway_pb2" not in grpc_code


def test_the_package_import_gives_the_contract():
    from services.gateway.proto import gateway_pb2, gateway_pb2_grpc

    assert gateway_pb2.DESCRIPTOR.package == "sandan.gateway.v1"
    assert hasattr(gateway_pb2_grpc, "GatewayServicer")
