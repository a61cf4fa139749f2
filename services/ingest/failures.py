"""Why a batch failed: a dependency outage (retry until it is back) or records that cannot be processed.

The two must never be confused. Dead-lettering a healthy record because Redis was down loses it from the
stream; retrying a record that always fails blocks its partition forever. An error is an outage when its
type (or the type of its cause: Ray wraps what a Serve replica raised) is one that Kafka, Redis, Milvus,
gRPC, Ray or Serve raise when they are unreachable, slow or restarting. Any other error is checked against
a `DependencyProbe`: when a dependency does not answer it is still an outage, otherwise the records are
at fault (`FailureKind.RECORD`) and get bounded attempts (`services.ingest.retry.retry_classified`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)
#: gRPC status names (Milvus, Ray) that mean "the server is not answering", not "your request is bad".
_UNAVAILABLE_GRPC_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED"})
_MAX_CAUSES = 8


class FailureKind(StrEnum):
    """What a failed attempt says about the batch."""

    OUTAGE = "outage"  # a dependency is down or slow: retry without limit, never dead-letter
    RECORD = "record"  # dependencies answer but the records do not go through: bounded attempts, isolate


@runtime_checkable
class DependencyProbe(Protocol):
    """Asks the dependencies of a stage whether they answer (cheap; called only after a failure)."""

    def dependencies_healthy(self) -> bool:
        """True when every dependency answered within its timeout."""


class AllDependencies:
    """A probe that is healthy when each of ``probes`` is (and none raises)."""

    def __init__(self, probes: Sequence[DependencyProbe]) -> None:
        self._probes = tuple(probes)

    def dependencies_healthy(self) -> bool:
        return all(_answers(probe) for probe in self._probes)


def _answers(probe: DependencyProbe) -> bool:
    try:
        return probe.dependencies_healthy()
    except Exception as exc:  # a probe that fails to run is a dependency that does not answer
        log.warning("dependency probe %s failed: %s", type(probe).__name__, exc)
        return False


def classify(exc: BaseException, probe: DependencyProbe | None = None) -> FailureKind:
    """`FailureKind.OUTAGE` when ``exc`` (or a cause) is an outage type or ``probe`` finds one down."""
    if any(is_outage_error(link) for link in _causes(exc)):
        return FailureKind.OUTAGE
    if probe is not None and not _answers(probe):
        return FailureKind.OUTAGE
    return FailureKind.RECORD


def is_outage_error(exc: BaseException) -> bool:
    """Whether ``exc`` alone is what a client raises when its server is unreachable, slow or restarting."""
    if isinstance(exc, outage_types()):
        return True
    if getattr(exc, "retriable", False) is True:  # kafka-python marks transient broker errors so
        return True
    code = _grpc_code(exc)
    return code is not None and code in _UNAVAILABLE_GRPC_CODES


def _grpc_code(exc: BaseException) -> str | None:
    """The gRPC status name of a ``grpc.RpcError`` or of a pymilvus error made from one."""
    code = getattr(exc, "code", None)
    try:
        code = code() if callable(code) else code  # grpc.RpcError.code() vs MilvusException.code
    except Exception:  # a foreign ``code`` attribute that is not a status
        return None
    name = getattr(code, "name", None)
    return name if isinstance(name, str) else None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps: Ray's ``RayTaskError.cause`` and explicit ``raise ... from``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CAUSES:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "cause", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__


@functools.cache
def outage_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean "a dependency is down", from every client library the stream uses.

    Built on first use so that importing the worker does not import Ray, Redis, gRPC and pymilvus.
    """
    import ray.exceptions as rx
    import redis.exceptions as rdx
    from pymilvus import exceptions as mx
    from ray.serve import exceptions as sx

    from twinstream.images.prepared import StaleInputSpecError

    return (
        ConnectionError,  # refused, reset, aborted, broken pipe
        TimeoutError,  # socket timeouts, Ray's GetTimeoutError
        rdx.ConnectionError,  # includes BusyLoadingError (Redis restarting)
        rdx.TimeoutError,
        rdx.OutOfMemoryError,
        rdx.ReadOnlyError,  # a replica after failover
        rdx.ClusterDownError,
        rdx.TryAgainError,
        mx.ConnectError,
        mx.MilvusUnavailableException,
        mx.ConnectionNotExistException,
        rx.RayActorError,  # a replica or actor died or is restarting
        rx.RaySystemError,
        rx.LocalRayletDiedError,
        rx.WorkerCrashedError,
        rx.NodeDiedError,
        rx.ObjectLostError,
        rx.ObjectStoreFullError,
        rx.OutOfMemoryError,
        rx.OutOfDiskError,
        rx.PendingCallsLimitExceeded,
        rx.TaskUnschedulableError,
        rx.ActorUnschedulableError,
        rx.RpcError,
        rx.AuthenticationError,  # the cluster's token changed: fix the deployment, keep the records
        sx.BackPressureError,
        sx.DeploymentUnavailableError,
        sx.ReplicaUnavailableError,
        sx.RequestCancelledError,  # Serve shutting a replica down mid-request
        StaleInputSpecError,  # the model was redeployed: the retry prepares for the new one
    )
