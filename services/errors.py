"""Which exceptions mean "a dependency is down or overloaded" (retry later) rather than "a bug" (fix it).

One rule for every process: the HTTP API answers the first with 503 ``unavailable`` and ``Retry-After``
and the second with 500 and an error id; an ingest worker retries the batch for the first and must not
spin on the second. It takes the exception only (no HTTP or Kafka types), so both can share it.

What each client raises when its server is down was checked against a closed port and a killed server
(tests/integration/test_dependency_errors.py): redis-py raises its own ``ConnectionError`` /
``TimeoutError`` (not the builtins), pymilvus a ``MilvusException`` with code 2 (``CONNECT_FAILED``)
whose cause is a gRPC ``UNAVAILABLE`` error, httpx a ``TransportError``, sockets and urllib an
``OSError`` with a connection errno. A client's module is only consulted when it is already imported:
an exception of a library nobody loaded cannot exist, and the Kafka worker does not pay for importing
pymilvus.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from types import ModuleType

#: errnos of an unreachable or vanished peer (the builtin ``ConnectionError`` family covers some only).
_CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
    }
)
#: gRPC status names that mean the server could not be reached or is shedding load.
_GRPC_UNAVAILABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})
#: How deep `is_dependency_failure` follows ``raise … from …`` causes.
_MAX_CAUSES = 8
# Exception class names per client module (looked up by name: a class missing from a version is skipped).
# redis: AuthenticationError and BusyLoadingError are ConnectionErrors too (the server refuses us for now);
# OutOfMemoryError is Redis at maxmemory with nothing left to evict, refusing writes until it frees some.
_REDIS_DOWN = ("ConnectionError", "TimeoutError", "OutOfMemoryError", "ReadOnlyError", "TryAgainError",
               "ClusterDownError")  # fmt: skip
#: The same refusals as seen through a script's error message (redis-py parses only a reply's own prefix).
_REDIS_SCRIPT_DOWN = ("-OOM ", "-READONLY ", "-LOADING ", "-TRYAGAIN ", "-CLUSTERDOWN ")
_RAY_DOWN = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError",
             "ObjectLostError", "ObjectStoreFullError", "OutOfMemoryError", "PendingCallsLimitExceeded",
             "RaySystemError", "GetTimeoutError")  # fmt: skip
_SERVE_DOWN = ("BackPressureError", "DeploymentUnavailableError", "ReplicaUnavailableError")
# kafka-python marks transient errors ``retriable`` itself; a broker that is down is not always marked so.
_KAFKA_DOWN = ("KafkaConnectionError", "BrokerNotAvailableError")


def _classes(module: ModuleType, names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    return tuple(getattr(module, name) for name in names if hasattr(module, name))


def _os_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in _CONNECTION_ERRNOS:
        return True
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    return isinstance(exc, OSError) and isinstance(reason, BaseException) and _os_error(reason)


def _redis(exc: BaseException) -> bool:
    module = sys.modules.get("redis.exceptions")
    if module is None:
        return False
    if isinstance(exc, _classes(module, _REDIS_DOWN)):
        return True
    # Inside a Lua script the same refusals arrive as a plain ResponseError naming the script:
    # "Error running script (…): @user_script:3: -OOM command not allowed when used memory > 'maxmemory'".
    response_error = getattr(module, "ResponseError", None)
    return (
        response_error is not None
        and isinstance(exc, response_error)
        and any(marker in str(exc) for marker in _REDIS_SCRIPT_DOWN)
    )


def _grpc_status_name(code: object) -> str:
    name = getattr(code, "name", None)  # grpc.StatusCode is an Enum
    return name if isinstance(name, str) else ""


def _milvus(exc: BaseException) -> bool:
    module = sys.modules.get("pymilvus.exceptions")
    if module is None or not isinstance(exc, module.MilvusException):
        return False
    if isinstance(exc, module.ConnectError | module.MilvusUnavailableException):
        return True
    code = exc.code
    if _grpc_status_name(code) in _GRPC_UNAVAILABLE:  # pymilvus' retry loop re-raises with the gRPC code
        return True
    connect_failed = 2  # pymilvus.client.types.Status.CONNECT_FAILED
    return code in (connect_failed, module.ErrorCode.RATE_LIMIT) or bool(getattr(exc, "retriable", False))


def _grpc(exc: BaseException) -> bool:
    module = sys.modules.get("grpc")
    if module is None or not isinstance(exc, module.RpcError):
        return False
    code = getattr(exc, "code", None)
    return callable(code) and _grpc_status_name(code()) in _GRPC_UNAVAILABLE


def _ray(exc: BaseException) -> bool:
    module = sys.modules.get("ray.exceptions")
    if module is None:
        return False
    if isinstance(exc, _classes(module, _RAY_DOWN)):
        return True
    serve = sys.modules.get("ray.serve.exceptions")
    return serve is not None and isinstance(exc, _classes(serve, _SERVE_DOWN))


def _httpx(exc: BaseException) -> bool:
    module = sys.modules.get("httpx")
    return module is not None and isinstance(exc, module.TransportError)


def _kafka(exc: BaseException) -> bool:
    module = sys.modules.get("kafka.errors")
    if module is None or not isinstance(exc, module.KafkaError):
        return False
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, _classes(module, _KAFKA_DOWN))


_RULES: tuple[Callable[[BaseException], bool], ...] = (
    _os_error, _redis, _milvus, _grpc, _ray, _httpx, _kafka,
)  # fmt: skip


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was explicitly raised from (``__cause__``; Ray's task errors carry ``cause``)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < _MAX_CAUSES and all(current is not c for c in chain):
        chain.append(current)
        cause = current.__cause__ or getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else None
    return chain


def is_dependency_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means a dependency (Redis, Milvus, Ray, Kafka, an HTTP peer) is down or overloaded.

    True for connection refusals, resets and timeouts of any client we use, Ray actors and Serve replicas
    that died or are unavailable, servers shedding load (gRPC ``RESOURCE_EXHAUSTED``, Serve back
    pressure, Redis out of memory), also when such an error is the explicit cause (``raise … from``) of
    the one caught. An exception group is a dependency failure when all its members are. Everything
    else, ``ValueError``, ``KeyError``, a Redis ``ResponseError`` from a wrong command, is a bug.
    """
    if isinstance(exc, BaseExceptionGroup):
        return bool(exc.exceptions) and all(is_dependency_failure(e) for e in exc.exceptions)
    return any(rule(link) for link in _causes(exc) for rule in _RULES)
