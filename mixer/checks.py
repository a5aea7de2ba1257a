"""One Check, whichever front it came through: cached preconditions, then quotas.

The Mixer API and Envoy's ext_authz both end here (the latter without quotas of its own: the
QuotaSpecs bound to the destination say what it is charged). Preconditions are answered from the
`CheckCache` when an earlier verdict still holds for the request's referenced attributes, and
otherwise by the dispatcher in force (the compiled configuration and its handlers), whose
verdict is then stored. Quotas are charged on every request. Replacing the dispatcher (a new
configuration) empties the cache, so no verdict of an old rule outlives it.

Owned by the Mixer service, used from its event loop only; no tasks.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from meshconfig.policy.attributes import AttributeBag, Reference
from mixer.adapters.base import QuotaArgs, QuotaResult, Status
from mixer.check_cache import CheckCache


@dataclass(frozen=True, slots=True)
class Precondition:
    """Every check rule's combined verdict, and what it depended on."""

    status: Status
    valid_duration: datetime.timedelta
    valid_use_count: int
    referenced: frozenset[Reference]


@dataclass(frozen=True, slots=True)
class Verdict:
    precondition: Precondition
    quotas: Mapping[str, QuotaResult]
    cache_hit: bool = False

    @property
    def status(self) -> Status:
        """The precondition's status, else the first quota that was not granted."""
        if not self.precondition.status.ok:
            return self.precondition.status
        for name, result in self.quotas.items():
            if not result.status.ok:
                return result.status
            if result.granted <= 0:
                return Status(8, f"quota {name} exhausted")
        return self.precondition.status


class Dispatcher(Protocol):
    """The configuration in force, applied to one request's attributes."""

    def quota_charges(self, bag: AttributeBag) -> dict[str, QuotaArgs]: ...

    async def preconditions(self, bag: AttributeBag) -> Precondition: ...

    async def quotas(
        self, bag: AttributeBag, quotas: Mapping[str, QuotaArgs]
    ) -> dict[str, QuotaResult]: ...

    def report(self, bags: Sequence[AttributeBag]) -> None: ...


class Checks:
    def __init__(
        self, dispatcher: Dispatcher, clock: Callable[[], float], *, cache_entries: int
    ) -> None:
        self._dispatcher = dispatcher
        self.cache = CheckCache(clock, max_entries=cache_entries)

    @property
    def dispatcher(self) -> Dispatcher:
        return self._dispatcher

    @dispatcher.setter
    def dispatcher(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self.cache.clear()

    async def check(
        self, attributes: Mapping[str, Any], quotas: Mapping[str, QuotaArgs] | None
    ) -> Verdict:
        """Preconditions and quotas for one request; `quotas` None: those the configured
        QuotaSpecs charge (Envoy's ext_authz asks for none itself)."""
        bag = attributes if isinstance(attributes, AttributeBag) else AttributeBag(attributes)
        dispatcher = self._dispatcher
        if quotas is None:
            quotas = dispatcher.quota_charges(bag)
        precondition: Precondition | None = self.cache.lookup(bag)
        hit = precondition is not None
        if precondition is None:
            precondition = await dispatcher.preconditions(bag)
            self.cache.store(
                bag,
                [(r.name, r.key) for r in precondition.referenced],
                precondition,
                precondition.valid_duration.total_seconds(),
                precondition.valid_use_count,
            )
        granted: dict[str, QuotaResult] = {}
        if quotas and precondition.status.ok:
            granted = await dispatcher.quotas(bag, quotas)
        return Verdict(precondition, granted, hit)

    def report(self, sets: Sequence[Mapping[str, Any]]) -> None:
        self._dispatcher.report([AttributeBag(attributes) for attributes in sets])
