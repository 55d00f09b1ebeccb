"""Generated gRPC code of the gateway contract (``schemas/proto/gateway.proto``).

The ``*_pb2*.py`` modules are built, not committed: importing this package builds them
when they are missing or older than the .proto (``services.gateway.protobuild``).
"""
from services.gateway.protobuild import ensure_built

ensure_built()
