"""memquota: rate limits counted in Mixer's memory, per quota and per set of dimension values.

Params as Istio's: `quotas`, each with the instance it counts (`name`, fully qualified:
`requestcountquota.instance.istio-system`), `maxAmount`, `validDuration` (the rolling window;
zero makes an allocation that never expires) and `overrides` (the first whose `dimensions` all
equal the instance's gets its own `maxAmount` and `validDuration`);
`minDeduplicationDuration` (how long a deduplication id's answer is remembered, so a retried
Check is not charged twice).

Every distinct set of dimension values has its own window, a log of (expiry, amount) entries:
exact, and bounded by the window's maximum amount. Template: quota. State lives in the
handler; no tasks.
"""

from __future__ import annotations

import collections
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from mixer.adapters.base import (
    PARAMS_CONFIG,
    RESOURCE_EXHAUSTED,
    DurationParam,
    Environment,
    Handler,
    Instance,
    QuotaArgs,
    QuotaResult,
    Status,
    parse_params,
)

log = logging.getLogger(__name__)

SWEEP_EVERY = 4096  # allocations between sweeps of windows that emptied


class OverrideParams(BaseModel):
    model_config = PARAMS_CONFIG
    dimensions: dict[str, str]
    max_amount: int
    valid_duration: DurationParam = datetime.timedelta(0)


class QuotaParams(BaseModel):
    model_config = PARAMS_CONFIG
    name: str
    max_amount: int
    valid_duration: DurationParam = datetime.timedelta(0)
    overrides: list[OverrideParams] = []


class MemQuotaParams(BaseModel):
    model_config = PARAMS_CONFIG
    quotas: list[QuotaParams] = []
    min_deduplication_duration: DurationParam = datetime.timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Limit:
    max_amount: int
    window: float  # seconds; 0: allocations never expire


class _Window:
    """Amounts granted in the last `window` seconds."""

    __slots__ = ("entries", "used")

    def __init__(self) -> None:
        self.entries: collections.deque[tuple[float, int]] = collections.deque()
        self.used = 0

    def expire(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now:
            self.used -= entries.popleft()[1]


class MemQuotaHandler(Handler):
    def __init__(self, params: MemQuotaParams, clock: Callable[[], float]) -> None:
        self._quotas = {quota.name: quota for quota in params.quotas}
        self._clock = clock
        self._dedup_seconds = params.min_deduplication_duration.total_seconds()
        self._windows: dict[tuple[Any, ...], _Window] = {}
        self._dedup: collections.OrderedDict[str, tuple[float, QuotaResult]] = (
            collections.OrderedDict()
        )
        self._allocations = 0
        self._unknown_warned: set[str] = set()

    def limit(self, quota: QuotaParams, dimensions: Mapping[str, str]) -> Limit:
        for override in quota.overrides:
            if all(dimensions.get(k) == v for k, v in override.dimensions.items()):
                return Limit(override.max_amount, override.valid_duration.total_seconds())
        return Limit(quota.max_amount, quota.valid_duration.total_seconds())

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        now = self._clock()
        if args.deduplication_id:
            self._forget_deduplications(now)
            remembered = self._dedup.get(args.deduplication_id)
            if remembered is not None:
                return remembered[1]
        result = self._allocate(instance, args, now)
        if args.deduplication_id:
            self._dedup[args.deduplication_id] = (now + self._dedup_seconds, result)
        return result

    def _allocate(self, instance: Instance, args: QuotaArgs, now: float) -> QuotaResult:
        quota = self._quotas.get(instance.name)
        if quota is None:
            if instance.name not in self._unknown_warned:
                self._unknown_warned.add(instance.name)
                log.warning("memquota has no quota named %s: not limited", instance.name)
            return QuotaResult(args.amount)
        raw = instance.fields.get("dimensions") or {}
        dimensions = {str(k): _text(v) for k, v in raw.items()}
        limit = self.limit(quota, dimensions)
        key = (instance.name, *sorted(dimensions.items()))
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        window.expire(now)
        available = max(limit.max_amount - window.used, 0)
        granted = args.amount if args.amount <= available else 0
        if args.best_effort:
            granted = min(args.amount, available)
        valid = datetime.timedelta(seconds=limit.window)
        if granted > 0:
            expiry = now + limit.window if limit.window > 0 else float("inf")
            window.entries.append((expiry, granted))
            window.used += granted
        self._allocations += 1
        if self._allocations % SWEEP_EVERY == 0:
            self._sweep(now)
        if granted < args.amount and not args.best_effort:
            return QuotaResult(0, valid, Status(RESOURCE_EXHAUSTED, f"quota {quota.name} exceeded"))
        return QuotaResult(granted, valid)

    def _forget_deduplications(self, now: float) -> None:
        dedup = self._dedup
        while dedup:
            first = next(iter(dedup.values()))
            if first[0] > now:
                break
            dedup.popitem(last=False)

    def _sweep(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            window.expire(now)
            if window.used == 0:
                del self._windows[key]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class MemQuota:
    name: ClassVar[str] = "memquota"
    templates: ClassVar[frozenset[str]] = frozenset({"quota"})

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler:
        return MemQuotaHandler(parse_params(MemQuotaParams, params), env.clock)


ADAPTER = MemQuota()
