"""Server reflection for tools (grpcurl, ghz, Postman): both ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection (1.85) ships only v1alpha and answers "not found" for method symbols
(``sandan.gateway.v1.Gateway.Submit``), which ghz asks for. The v1 protocol is v1alpha's
under another package name with the same field numbers, so one servicer answers both: v1
is registered as a generic handler with the same (wire-identical) messages, and its
descriptor is added to the pool so the v1 service resolves like any other.
"""
from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection as v1alpha
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


class _MethodAwarePool:
    """The default descriptor pool, where ``Service.Method`` also finds the service's file."""

    def __init__(self, pool=None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def FindFileContainingSymbol(self, symbol: str):  # noqa: N802 - the pool's own method name
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            service = self._pool.FindServiceByName(service_name)  # KeyError again when not a service either
            if method not in service.methods_by_name:
                raise
            return service.file

    def __getattr__(self, name: str):
        return getattr(self._pool, name)


def _register_v1_descriptor(pool) -> None:
    """v1alpha's file renamed to grpc.reflection.v1, so reflection can describe the v1 service too."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = V1_FILE, "grpc.reflection.v1"
    proto.options.Clear()
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(".grpc.reflection.v1alpha.", ".grpc.reflection.v1.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(".v1alpha.", ".v1.")
            method.output_type = method.output_type.replace(".v1alpha.", ".v1.")
    pool.Add(proto)


def enable(server: grpc.aio.Server, service_names) -> None:
    """Serve reflection v1 and v1alpha on ``server`` for ``service_names`` (and themselves)."""
    pool = descriptor_pool.Default()
    _register_v1_descriptor(pool)
    names = tuple(service_names) + (v1alpha.SERVICE_NAME, V1_SERVICE)
    servicer = v1alpha.aio.ReflectionServicer(names, pool=_MethodAwarePool(pool))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}),))
