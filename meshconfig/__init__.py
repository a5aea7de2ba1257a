"""The Istio configuration model: typed, validated resources shared by every service.

Galley validates and distributes configuration with it, pilot and mixer interpret it, meshctl
analyzes it. One definition per kind (`meshconfig.kinds`), validation that names the field path
and the reason, and multi-document YAML/JSON reading. Like the xDS core, it knows nothing about
any one service.
"""

from meshconfig.documents import load_documents, validate_document
from meshconfig.errors import ConfigValidationError, FieldError, UnknownKindError
from meshconfig.kinds import Kind, all_kinds, kind_for
from meshconfig.resource import Metadata, Resource

__all__ = [
    "ConfigValidationError",
    "FieldError",
    "Kind",
    "Metadata",
    "Resource",
    "UnknownKindError",
    "all_kinds",
    "kind_for",
    "load_documents",
    "validate_document",
]
