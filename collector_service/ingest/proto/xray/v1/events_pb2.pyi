import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_OK: _ClassVar[Status]
    STATUS_ERROR: _ClassVar[Status]
STATUS_UNSPECIFIED: Status
STATUS_OK: Status
STATUS_ERROR: Status

class EventBatch(_message.Message):
    __slots__ = ("service_name", "events")
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    service_name: str
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, service_name: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("run_start", "run_end", "step_start", "step_end")
    RUN_START_FIELD_NUMBER: _ClassVar[int]
    RUN_END_FIELD_NUMBER: _ClassVar[int]
    STEP_START_FIELD_NUMBER: _ClassVar[int]
    STEP_END_FIELD_NUMBER: _ClassVar[int]
    run_start: RunStart
    run_end: RunEnd
    step_start: StepStart
    step_end: StepEnd
    def __init__(self, run_start: _Optional[_Union[RunStart, _Mapping]] = ..., run_end: _Optional[_Union[RunEnd, _Mapping]] = ..., step_start: _Optional[_Union[StepStart, _Mapping]] = ..., step_end: _Optional[_Union[StepEnd, _Mapping]] = ...) -> None: ...

class RunStart(_message.Message):
    __slots__ = ("run_id", "pipeline", "entity", "time", "attributes")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    pipeline: str
    entity: str
    time: _timestamp_pb2.Timestamp
    attributes: _struct_pb2.Struct
    def __init__(self, run_id: _Optional[str] = ..., pipeline: _Optional[str] = ..., entity: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RunEnd(_message.Message):
    __slots__ = ("run_id", "time", "status", "error", "pipeline", "entity", "start_time", "attributes")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    time: _timestamp_pb2.Timestamp
    status: Status
    error: str
    pipeline: str
    entity: str
    start_time: _timestamp_pb2.Timestamp
    attributes: _struct_pb2.Struct
    def __init__(self, run_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[Status, str]] = ..., error: _Optional[str] = ..., pipeline: _Optional[str] = ..., entity: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StepStart(_message.Message):
    __slots__ = ("run_id", "step_id", "seq", "name", "type", "time", "pipeline", "entity", "input", "parent_step_id", "attributes")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    PARENT_STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    step_id: str
    seq: int
    name: str
    type: str
    time: _timestamp_pb2.Timestamp
    pipeline: str
    entity: str
    input: _struct_pb2.Value
    parent_step_id: str
    attributes: _struct_pb2.Struct
    def __init__(self, run_id: _Optional[str] = ..., step_id: _Optional[str] = ..., seq: _Optional[int] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pipeline: _Optional[str] = ..., entity: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., parent_step_id: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StepEnd(_message.Message):
    __slots__ = ("run_id", "step_id", "time", "status", "error", "candidates_in", "candidates_out", "why", "why_json", "output", "metrics", "artifacts", "seq", "name", "type", "start_time", "pipeline", "entity", "input", "parent_step_id", "attributes")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ArtifactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Artifact
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_IN_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_OUT_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    WHY_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    PARENT_STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    step_id: str
    time: _timestamp_pb2.Timestamp
    status: Status
    error: str
    candidates_in: int
    candidates_out: int
    why: str
    why_json: _struct_pb2.Struct
    output: _struct_pb2.Value
    metrics: _containers.ScalarMap[str, float]
    artifacts: _containers.MessageMap[str, Artifact]
    seq: int
    name: str
    type: str
    start_time: _timestamp_pb2.Timestamp
    pipeline: str
    entity: str
    input: _struct_pb2.Value
    parent_step_id: str
    attributes: _struct_pb2.Struct
    def __init__(self, run_id: _Optional[str] = ..., step_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[Status, str]] = ..., error: _Optional[str] = ..., candidates_in: _Optional[int] = ..., candidates_out: _Optional[int] = ..., why: _Optional[str] = ..., why_json: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., artifacts: _Optional[_Mapping[str, Artifact]] = ..., seq: _Optional[int] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pipeline: _Optional[str] = ..., entity: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., parent_step_id: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("text", "data", "reference", "content_type")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    text: str
    data: bytes
    reference: str
    content_type: str
    def __init__(self, text: _Optional[str] = ..., data: _Optional[bytes] = ..., reference: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class EventBatchResponse(_message.Message):
    __slots__ = ("rejected_events", "error_message")
    REJECTED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    rejected_events: int
    error_message: str
    def __init__(self, rejected_events: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...
