from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_UNSPECIFIED: _ClassVar[Op]
    OP_ENROLL: _ClassVar[Op]
    OP_VERIFY: _ClassVar[Op]
    OP_IDENTIFY: _ClassVar[Op]
    OP_DELETE: _ClassVar[Op]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ENROLLED: _ClassVar[Decision]
    DECISION_DUPLICATE: _ClassVar[Decision]
    DECISION_MATCH: _ClassVar[Decision]
    DECISION_NO_MATCH: _ClassVar[Decision]
    DECISION_UNKNOWN: _ClassVar[Decision]
    DECISION_DELETED: _ClassVar[Decision]
    DECISION_REJECTED: _ClassVar[Decision]
OP_UNSPECIFIED: Op
OP_ENROLL: Op
OP_VERIFY: Op
OP_IDENTIFY: Op
OP_DELETE: Op
DECISION_UNSPECIFIED: Decision
DECISION_ENROLLED: Decision
DECISION_DUPLICATE: Decision
DECISION_MATCH: Decision
DECISION_NO_MATCH: Decision
DECISION_UNKNOWN: Decision
DECISION_DELETED: Decision
DECISION_REJECTED: Decision

class ImageEvent(_message.Message):
    __slots__ = ("op", "subject", "tenant", "request_id", "top_k", "content_type", "image", "produced_at_ms", "all_faces")
    OP_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PRODUCED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ALL_FACES_FIELD_NUMBER: _ClassVar[int]
    op: Op
    subject: str
    tenant: str
    request_id: str
    top_k: int
    content_type: str
    image: bytes
    produced_at_ms: int
    all_faces: bool
    def __init__(self, op: _Optional[_Union[Op, str]] = ..., subject: _Optional[str] = ..., tenant: _Optional[str] = ..., request_id: _Optional[str] = ..., top_k: _Optional[int] = ..., content_type: _Optional[str] = ..., image: _Optional[bytes] = ..., produced_at_ms: _Optional[int] = ..., all_faces: _Optional[bool] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("subject", "distance", "probability")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    subject: str
    distance: float
    probability: float
    def __init__(self, subject: _Optional[str] = ..., distance: _Optional[float] = ..., probability: _Optional[float] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_s", "embed_s", "gallery_s", "total_s")
    DECODE_S_FIELD_NUMBER: _ClassVar[int]
    EMBED_S_FIELD_NUMBER: _ClassVar[int]
    GALLERY_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_S_FIELD_NUMBER: _ClassVar[int]
    decode_s: float
    embed_s: float
    gallery_s: float
    total_s: float
    def __init__(self, decode_s: _Optional[float] = ..., embed_s: _Optional[float] = ..., gallery_s: _Optional[float] = ..., total_s: _Optional[float] = ...) -> None: ...

class SourceRef(_message.Message):
    __slots__ = ("topic", "partition", "offset", "timestamp_ms")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class OperatingPoint(_message.Message):
    __slots__ = ("kind", "target", "threshold", "min_probability", "gallery_size")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    GALLERY_SIZE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    target: float
    threshold: float
    min_probability: float
    gallery_size: int
    def __init__(self, kind: _Optional[str] = ..., target: _Optional[float] = ..., threshold: _Optional[float] = ..., min_probability: _Optional[float] = ..., gallery_size: _Optional[int] = ...) -> None: ...

class FaceBox(_message.Message):
    __slots__ = ("left", "top", "right", "bottom")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    BOTTOM_FIELD_NUMBER: _ClassVar[int]
    left: int
    top: int
    right: int
    bottom: int
    def __init__(self, left: _Optional[int] = ..., top: _Optional[int] = ..., right: _Optional[int] = ..., bottom: _Optional[int] = ...) -> None: ...

class FaceAnswer(_message.Message):
    __slots__ = ("box", "decision", "subject", "distance", "probability", "candidates")
    BOX_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    box: FaceBox
    decision: Decision
    subject: str
    distance: float
    probability: float
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    def __init__(self, box: _Optional[_Union[FaceBox, _Mapping]] = ..., decision: _Optional[_Union[Decision, str]] = ..., subject: _Optional[str] = ..., distance: _Optional[float] = ..., probability: _Optional[float] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ...) -> None: ...

class MatchResult(_message.Message):
    __slots__ = ("request_id", "op", "tenant", "subject", "decision", "distance", "probability", "threshold", "candidates", "model_version", "source", "error_reason", "error_detail", "timings", "policy", "face", "faces_found", "faces")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    FACES_FOUND_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    op: Op
    tenant: str
    subject: str
    decision: Decision
    distance: float
    probability: float
    threshold: float
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    model_version: str
    source: SourceRef
    error_reason: str
    error_detail: str
    timings: Timings
    policy: OperatingPoint
    face: FaceBox
    faces_found: int
    faces: _containers.RepeatedCompositeFieldContainer[FaceAnswer]
    def __init__(self, request_id: _Optional[str] = ..., op: _Optional[_Union[Op, str]] = ..., tenant: _Optional[str] = ..., subject: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., distance: _Optional[float] = ..., probability: _Optional[float] = ..., threshold: _Optional[float] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., model_version: _Optional[str] = ..., source: _Optional[_Union[SourceRef, _Mapping]] = ..., error_reason: _Optional[str] = ..., error_detail: _Optional[str] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., policy: _Optional[_Union[OperatingPoint, _Mapping]] = ..., face: _Optional[_Union[FaceBox, _Mapping]] = ..., faces_found: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[FaceAnswer, _Mapping]]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("request_id", "error_reason", "error_detail", "source", "failed_at_ms", "worker")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_DETAIL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    error_reason: str
    error_detail: str
    source: SourceRef
    failed_at_ms: int
    worker: str
    def __init__(self, request_id: _Optional[str] = ..., error_reason: _Optional[str] = ..., error_detail: _Optional[str] = ..., source: _Optional[_Union[SourceRef, _Mapping]] = ..., failed_at_ms: _Optional[int] = ..., worker: _Optional[str] = ...) -> None: ...

class EnrolmentRecord(_message.Message):
    __slots__ = ("tenant", "subject", "content_type", "image", "enrolled_at_ms", "request_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    subject: str
    content_type: str
    image: bytes
    enrolled_at_ms: int
    request_id: str
    def __init__(self, tenant: _Optional[str] = ..., subject: _Optional[str] = ..., content_type: _Optional[str] = ..., image: _Optional[bytes] = ..., enrolled_at_ms: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...
