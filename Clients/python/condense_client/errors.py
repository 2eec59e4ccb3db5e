"""Typed exceptions, one per gRPC status code."""
from __future__ import annotations

from condense.v1 import envelope_pb2 as env


class RpcError(Exception):
    """A call ended with a non-OK status."""

    def __init__(self, code: int, message: str, retry_after_ms: int = 0):
        super().__init__(f"{env.StatusCode.Name(code) if code in env.StatusCode.values() else code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class Cancelled(RpcError): pass
class Unknown(RpcError): pass
class InvalidArgument(RpcError): pass
class DeadlineExceeded(RpcError): pass
class NotFound(RpcError): pass
class AlreadyExists(RpcError): pass
class PermissionDenied(RpcError): pass
class ResourceExhausted(RpcError): pass
class FailedPrecondition(RpcError): pass
class Aborted(RpcError): pass
class OutOfRange(RpcError): pass
class Unimplemented(RpcError): pass
class Internal(RpcError): pass
class Unavailable(RpcError): pass
class DataLoss(RpcError): pass
class Unauthenticated(RpcError): pass

_BY_CODE = {
    env.CANCELLED: Cancelled, env.UNKNOWN: Unknown, env.INVALID_ARGUMENT: InvalidArgument,
    env.DEADLINE_EXCEEDED: DeadlineExceeded, env.NOT_FOUND: NotFound, env.ALREADY_EXISTS: AlreadyExists,
    env.PERMISSION_DENIED: PermissionDenied, env.RESOURCE_EXHAUSTED: ResourceExhausted,
    env.FAILED_PRECONDITION: FailedPrecondition, env.ABORTED: Aborted, env.OUT_OF_RANGE: OutOfRange,
    env.UNIMPLEMENTED: Unimplemented, env.INTERNAL: Internal, env.UNAVAILABLE: Unavailable,
    env.DATA_LOSS: DataLoss, env.UNAUTHENTICATED: Unauthenticated,
}


def error_for_status(code: int, message: str, retry_after_ms: int = 0) -> RpcError:
    return _BY_CODE.get(code, RpcError)(code, message, retry_after_ms)
