"""The one way gateway logic refuses a call: a gRPC status name and a clear message.

Kept free of grpc so the pure modules (auth, submission, reports, cursors) can raise it;
the service turns it into ``context.abort(grpc.StatusCode[status], message)``.
"""
from __future__ import annotations

UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
OUT_OF_RANGE = "OUT_OF_RANGE"
FAILED_PRECONDITION = "FAILED_PRECONDITION"
UNAVAILABLE = "UNAVAILABLE"


class CallError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
