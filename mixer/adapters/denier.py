"""denier: answers every check (and quota) with the status of its params, as Istio's did.

Params: `status` ({code, message}; default PERMISSION_DENIED), `validDuration`,
`validUseCount`. Templates: checknothing, listentry, quota.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from mixer.adapters.base import (
    DEFAULT_VALID_DURATION,
    DEFAULT_VALID_USE_COUNT,
    PARAMS_CONFIG,
    PERMISSION_DENIED,
    CheckResult,
    DurationParam,
    Environment,
    Handler,
    Instance,
    QuotaArgs,
    QuotaResult,
    Status,
    parse_params,
)


class StatusParams(BaseModel):
    model_config = PARAMS_CONFIG
    code: int = PERMISSION_DENIED
    message: str = ""


class DenierParams(BaseModel):
    model_config = PARAMS_CONFIG
    status: StatusParams = StatusParams()
    valid_duration: DurationParam = DEFAULT_VALID_DURATION
    valid_use_count: int = DEFAULT_VALID_USE_COUNT


class DenierHandler(Handler):
    def __init__(self, params: DenierParams) -> None:
        status = params.status
        self.result = CheckResult(
            Status(status.code, status.message or "denied by policy"),
            params.valid_duration,
            params.valid_use_count,
        )

    async def check(self, instance: Instance) -> CheckResult:
        return self.result

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        return QuotaResult(0, self.result.valid_duration, self.result.status)


class Denier:
    name: ClassVar[str] = "denier"
    templates: ClassVar[frozenset[str]] = frozenset({"checknothing", "listentry", "quota"})

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler:
        return DenierHandler(parse_params(DenierParams, params))


ADAPTER = Denier()
