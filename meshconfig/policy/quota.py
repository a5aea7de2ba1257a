"""QuotaSpec and QuotaSpecBinding (config.istio.io/v1alpha2): which requests charge which quota.

Modelled after Istio 1.4's mixer client protos. A QuotaSpec says which quotas a matching
request is charged; a binding attaches QuotaSpecs to services. The sidecar's Mixer client asks
Mixer for those quotas, and the quota instances and handlers (memquota, redisquota) do the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from meshconfig.base import CheckedModel, NonEmpty, Problem, SpecModel


class StringMatch(CheckedModel):
    """A case-sensitive match of an attribute value: exact, prefix or (ECMAScript) regex."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    def problems(self) -> Iterator[Problem]:
        if len(self.set_fields("exact", "prefix", "regex")) > 1:
            yield (), "only one of exact, prefix or regex can be set"


class AttributeMatch(SpecModel):
    """Every clause (attribute name -> match) must hold."""

    clause: dict[str, StringMatch] | None = None


class QuotaCharge(SpecModel):
    quota: NonEmpty
    charge: Annotated[int, Field(ge=0)] | None = None


class QuotaRule(SpecModel):
    """Charge the quotas when any match holds (no match: every request)."""

    match: list[AttributeMatch] | None = None
    quotas: list[QuotaCharge] | None = None


class QuotaSpecSpec(SpecModel):
    rules: list[QuotaRule] | None = None


class IstioService(SpecModel):
    """A service by short name and namespace, by FQDN (`service`), or by labels."""

    name: str | None = None
    namespace: str | None = None
    domain: str | None = None
    service: str | None = None
    labels: dict[str, str] | None = None


class QuotaSpecReference(SpecModel):
    name: NonEmpty
    namespace: str | None = None


class QuotaSpecBindingSpec(SpecModel):
    services: Annotated[list[IstioService], Field(min_length=1)]
    quota_specs: Annotated[list[QuotaSpecReference], Field(min_length=1)]
