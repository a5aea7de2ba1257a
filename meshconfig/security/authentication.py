"""PeerAuthentication and RequestAuthentication (security.istio.io): who a workload accepts.

PeerAuthentication sets the mutual TLS mode of a workload's inbound listeners (pilot builds
PERMISSIVE/STRICT filter chains from it); RequestAuthentication lists the JWT issuers whose tokens
the workload's proxy verifies. Fields follow Istio's CRD schemas, checks follow Istio's webhook.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from meshconfig.base import AtLeastOneMillisecond, CheckedModel, NonEmpty, Problem, SpecModel
from meshconfig.selector import TargetedSpec, WorkloadSelector

MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class PeerMtls(SpecModel):
    mode: MtlsMode | None = None


class PeerAuthenticationSpec(CheckedModel):
    """The mutual TLS mode for a mesh, a namespace or selected workloads, optionally per port."""

    selector: WorkloadSelector | None = None
    mtls: PeerMtls | None = None
    port_level_mtls: Annotated[dict[str, PeerMtls], Field(min_length=1)] | None = None

    @field_validator("port_level_mtls", mode="before")
    @classmethod
    def _yaml_port_keys(cls, value: Any) -> Any:
        # YAML reads `8080:` as an integer key; Kubernetes (JSON) always has string keys.
        if isinstance(value, dict):
            return {str(k) if isinstance(k, int) else k: v for k, v in value.items()}
        return value

    def problems(self) -> Iterator[Problem]:
        if self.port_level_mtls is None:
            return
        if self.selector is None or not self.selector.match_labels:
            yield (
                ("portLevelMtls",),
                "portLevelMtls requires a selector with matchLabels "
                "(mesh- and namespace-wide policies cannot have port level mTLS)",
            )
        for port in self.port_level_mtls:
            if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
                yield ("portLevelMtls", port), "port must be between 1-65535"


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        has_address = bool(parts.hostname) and parts.port != 0  # .port raises if not a number
    except ValueError as error:
        raise ValueError(f"invalid URL {value!r}: {error}") from None
    if parts.scheme not in ("http", "https") or not has_address:
        raise ValueError("url must have scheme http:// or https:// and a host")
    return value


def _jwks(value: str) -> str:
    try:
        document = json.loads(value)
    except ValueError as error:
        raise ValueError(f"jwks is not valid JSON: {error}") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    single_key = isinstance(document, dict) and "kty" in document
    if not single_key and not (
        isinstance(keys, list) and keys and all(isinstance(k, dict) and "kty" in k for k in keys)
    ):
        raise ValueError('jwks must be a JSON Web Key Set ({"keys": [...]}) or a single key')
    return value


JwksUri = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_http_url)]


class JwtHeader(SpecModel):
    name: NonEmpty
    prefix: str | None = None


class ClaimToHeader(SpecModel):
    header: Annotated[str, Field(min_length=1, pattern=r"^[-_A-Za-z0-9]+$")]
    claim: NonEmpty


class JwtRule(CheckedModel):
    """One trusted token issuer: where its keys are, where its tokens are found, what to forward.

    `jwksUri` may also be written as `jwks_uri` (its protobuf name, which the CRD lists too).
    """

    issuer: NonEmpty | None = None
    audiences: list[NonEmpty] | None = None
    jwks_uri: JwksUri | None = None
    jwks: Annotated[str, AfterValidator(_jwks)] | None = None
    from_headers: list[JwtHeader] | None = None
    from_params: list[NonEmpty] | None = None
    from_cookies: list[NonEmpty] | None = None
    output_payload_to_header: str | None = None
    forward_original_token: bool | None = None
    output_claim_to_headers: list[ClaimToHeader] | None = None
    space_delimited_claims: Annotated[list[NonEmpty], Field(max_length=64)] | None = None
    timeout: AtLeastOneMillisecond | None = None
    presence: Literal["OPTIONAL", "REQUIRED"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_jwks_uri_spelling(cls, value: Any) -> Any:
        if isinstance(value, dict) and "jwksUri" in value and "jwks_uri" in value:
            raise ValueError("only one of jwks or jwksUri can be set")
        return value

    def problems(self) -> Iterator[Problem]:
        if self.jwks is not None and self.jwks_uri is not None:
            yield (), "only one of jwks or jwksUri can be set"
        if not self.issuer and not self.jwks_uri:
            yield ("issuer",), "issuer or jwksUri must be set"


class RequestAuthenticationSpec(TargetedSpec):
    """The JWT issuers whose tokens the selected workloads verify."""

    jwt_rules: Annotated[list[JwtRule], Field(max_length=4096)] | None = None
