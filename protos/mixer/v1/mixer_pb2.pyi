import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from protos.mixer.v1 import attributes_pb2 as _attributes_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("attributes", "global_word_count", "deduplication_id", "quotas")
    class QuotaParams(_message.Message):
        __slots__ = ("amount", "best_effort")
        AMOUNT_FIELD_NUMBER: _ClassVar[int]
        BEST_EFFORT_FIELD_NUMBER: _ClassVar[int]
        amount: int
        best_effort: bool
        def __init__(self, amount: _Optional[int] = ..., best_effort: _Optional[bool] = ...) -> None: ...
    class QuotasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CheckRequest.QuotaParams
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CheckRequest.QuotaParams, _Mapping]] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_WORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    attributes: _attributes_pb2.CompressedAttributes
    global_word_count: int
    deduplication_id: str
    quotas: _containers.MessageMap[str, CheckRequest.QuotaParams]
    def __init__(self, attributes: _Optional[_Union[_attributes_pb2.CompressedAttributes, _Mapping]] = ..., global_word_count: _Optional[int] = ..., deduplication_id: _Optional[str] = ..., quotas: _Optional[_Mapping[str, CheckRequest.QuotaParams]] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("precondition", "quotas")
    class PreconditionResult(_message.Message):
        __slots__ = ("status", "valid_duration", "valid_use_count", "referenced_attributes", "route_directive")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        VALID_DURATION_FIELD_NUMBER: _ClassVar[int]
        VALID_USE_COUNT_FIELD_NUMBER: _ClassVar[int]
        REFERENCED_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        ROUTE_DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
        status: Status
        valid_duration: _duration_pb2.Duration
        valid_use_count: int
        referenced_attributes: ReferencedAttributes
        route_directive: RouteDirective
        def __init__(self, status: _Optional[_Union[Status, _Mapping]] = ..., valid_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., valid_use_count: _Optional[int] = ..., referenced_attributes: _Optional[_Union[ReferencedAttributes, _Mapping]] = ..., route_directive: _Optional[_Union[RouteDirective, _Mapping]] = ...) -> None: ...
    class QuotaResult(_message.Message):
        __slots__ = ("valid_duration", "granted_amount", "referenced_attributes")
        VALID_DURATION_FIELD_NUMBER: _ClassVar[int]
        GRANTED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
        REFERENCED_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        valid_duration: _duration_pb2.Duration
        granted_amount: int
        referenced_attributes: ReferencedAttributes
        def __init__(self, valid_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., granted_amount: _Optional[int] = ..., referenced_attributes: _Optional[_Union[ReferencedAttributes, _Mapping]] = ...) -> None: ...
    class QuotasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CheckResponse.QuotaResult
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CheckResponse.QuotaResult, _Mapping]] = ...) -> None: ...
    PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    precondition: CheckResponse.PreconditionResult
    quotas: _containers.MessageMap[str, CheckResponse.QuotaResult]
    def __init__(self, precondition: _Optional[_Union[CheckResponse.PreconditionResult, _Mapping]] = ..., quotas: _Optional[_Mapping[str, CheckResponse.QuotaResult]] = ...) -> None: ...

class ReferencedAttributes(_message.Message):
    __slots__ = ("words", "attribute_matches")
    class Condition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CONDITION_UNSPECIFIED: _ClassVar[ReferencedAttributes.Condition]
        ABSENCE: _ClassVar[ReferencedAttributes.Condition]
        EXACT: _ClassVar[ReferencedAttributes.Condition]
        REGEX: _ClassVar[ReferencedAttributes.Condition]
    CONDITION_UNSPECIFIED: ReferencedAttributes.Condition
    ABSENCE: ReferencedAttributes.Condition
    EXACT: ReferencedAttributes.Condition
    REGEX: ReferencedAttributes.Condition
    class AttributeMatch(_message.Message):
        __slots__ = ("name", "condition", "regex", "map_key")
        NAME_FIELD_NUMBER: _ClassVar[int]
        CONDITION_FIELD_NUMBER: _ClassVar[int]
        REGEX_FIELD_NUMBER: _ClassVar[int]
        MAP_KEY_FIELD_NUMBER: _ClassVar[int]
        name: int
        condition: ReferencedAttributes.Condition
        regex: str
        map_key: int
        def __init__(self, name: _Optional[int] = ..., condition: _Optional[_Union[ReferencedAttributes.Condition, str]] = ..., regex: _Optional[str] = ..., map_key: _Optional[int] = ...) -> None: ...
    WORDS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    words: _containers.RepeatedScalarFieldContainer[str]
    attribute_matches: _containers.RepeatedCompositeFieldContainer[ReferencedAttributes.AttributeMatch]
    def __init__(self, words: _Optional[_Iterable[str]] = ..., attribute_matches: _Optional[_Iterable[_Union[ReferencedAttributes.AttributeMatch, _Mapping]]] = ...) -> None: ...

class HeaderOperation(_message.Message):
    __slots__ = ("name", "value", "operation")
    class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REPLACE: _ClassVar[HeaderOperation.Operation]
        REMOVE: _ClassVar[HeaderOperation.Operation]
        APPEND: _ClassVar[HeaderOperation.Operation]
    REPLACE: HeaderOperation.Operation
    REMOVE: HeaderOperation.Operation
    APPEND: HeaderOperation.Operation
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    operation: HeaderOperation.Operation
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., operation: _Optional[_Union[HeaderOperation.Operation, str]] = ...) -> None: ...

class RouteDirective(_message.Message):
    __slots__ = ("request_header_operations", "response_header_operations", "direct_response_code", "direct_response_body")
    REQUEST_HEADER_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADER_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    DIRECT_RESPONSE_BODY_FIELD_NUMBER: _ClassVar[int]
    request_header_operations: _containers.RepeatedCompositeFieldContainer[HeaderOperation]
    response_header_operations: _containers.RepeatedCompositeFieldContainer[HeaderOperation]
    direct_response_code: int
    direct_response_body: str
    def __init__(self, request_header_operations: _Optional[_Iterable[_Union[HeaderOperation, _Mapping]]] = ..., response_header_operations: _Optional[_Iterable[_Union[HeaderOperation, _Mapping]]] = ..., direct_response_code: _Optional[int] = ..., direct_response_body: _Optional[str] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("attributes", "repeated_attributes_semantics", "default_words", "global_word_count")
    class RepeatedAttributesSemantics(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DELTA_ENCODING: _ClassVar[ReportRequest.RepeatedAttributesSemantics]
        INDEPENDENT_ENCODING: _ClassVar[ReportRequest.RepeatedAttributesSemantics]
    DELTA_ENCODING: ReportRequest.RepeatedAttributesSemantics
    INDEPENDENT_ENCODING: ReportRequest.RepeatedAttributesSemantics
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    REPEATED_ATTRIBUTES_SEMANTICS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WORDS_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_WORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedCompositeFieldContainer[_attributes_pb2.CompressedAttributes]
    repeated_attributes_semantics: ReportRequest.RepeatedAttributesSemantics
    default_words: _containers.RepeatedScalarFieldContainer[str]
    global_word_count: int
    def __init__(self, attributes: _Optional[_Iterable[_Union[_attributes_pb2.CompressedAttributes, _Mapping]]] = ..., repeated_attributes_semantics: _Optional[_Union[ReportRequest.RepeatedAttributesSemantics, str]] = ..., default_words: _Optional[_Iterable[str]] = ..., global_word_count: _Optional[int] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
