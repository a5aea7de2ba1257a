"""The small interface every adapter implements, and the values that cross it.

An adapter is one module exposing an `Adapter`: its name (what `compiledAdapter` says), the
templates it accepts, and `build(params, env)`, which validates the handler's `params` and
returns a `Handler`. Mixer builds a handler per `handler` resource when the configuration
changes and reuses it while its params stay the same (so quota counters and list caches
survive unrelated changes), calls `start()` once and `close()` when the handler goes.

Instances reach handlers already evaluated: an `Instance` is the template's fields with the
attribute expressions replaced by their values. Check templates (checknothing, listentry, ...)
go to `check`, the quota template to `quota`, report templates (metric, logentry, ...) in
batches to `report`, attribute-generating templates (kubernetes) to `generate`, which returns
the template's output fields (the instance's attribute bindings read them as `$out.<field>`)
before the other phases run. `check` and `quota` are coroutines so that an adapter may ask a
server; the in-process adapters answer without suspending. `report` and `generate` must not
block: adapters that write somewhere slow buffer.

Statuses use google.rpc codes, as Istio's adapters did.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol, TypeVar

from prometheus_client import CollectorRegistry
from pydantic import BeforeValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from meshconfig.base import duration_seconds
from mixer.workloads import Workloads

# google.rpc.Code values adapters answer with.
OK = 0
INVALID_ARGUMENT = 3
NOT_FOUND = 5
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14
UNAUTHENTICATED = 16

DEFAULT_VALID_DURATION = datetime.timedelta(seconds=5)
DEFAULT_VALID_USE_COUNT = 10_000

# Adapter params use Istio's JSON names (lowerCamelCase); the snake_case proto names that
# Istio's jsonpb also took (`instance_name`, `label_names`) are accepted too.
PARAMS_CONFIG = ConfigDict(
    alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
)


T = TypeVar("T")


def _duration(value: Any) -> Any:
    return datetime.timedelta(seconds=duration_seconds(value)) if isinstance(value, str) else value


# A params duration written as Istio wrote them ("1s", "500ms").
DurationParam = Annotated[datetime.timedelta, BeforeValidator(_duration)]


class ParamsError(ValueError):
    """A handler's params do not fit its adapter; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One evaluated instance: its fully qualified name (`requestcount.instance.istio-system`,
    as Istio's handlers refer to instances), its template, and its fields' values."""

    name: str
    template: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Status:
    code: int = OK
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == OK


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A precondition verdict and how long and how often it may be reused."""

    status: Status = Status()
    valid_duration: datetime.timedelta = DEFAULT_VALID_DURATION
    valid_use_count: int = DEFAULT_VALID_USE_COUNT


@dataclass(frozen=True, slots=True)
class QuotaArgs:
    amount: int
    best_effort: bool = False
    deduplication_id: str = ""


@dataclass(frozen=True, slots=True)
class QuotaResult:
    granted: int
    valid_duration: datetime.timedelta = datetime.timedelta(0)
    status: Status = Status()


@dataclass
class Environment:
    """What Mixer lends its handlers: the registry served on 42422, the clock (seconds,
    monotonic) that windows and caches count with, which tests may replace, and the workloads
    (Pods, WorkloadEntries) Mixer received with its configuration."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], float] = time.monotonic
    # State an adapter keeps across rebuilds of its handlers, under the adapter's name.
    shared: dict[str, Any] = field(default_factory=dict)
    workloads: Workloads = field(default_factory=Workloads)


class UnsupportedTemplate(TypeError):
    """A handler was asked for a kind of work its adapter does not declare (a dispatch bug:
    Mixer routes an adapter only the templates it declared)."""


class Handler:
    """A configured adapter. Override the methods of the templates the adapter accepts; the
    others refuse with UnsupportedTemplate."""

    async def start(self) -> None:
        """Begin background work (list refreshes); called once before the first use."""

    async def close(self) -> None:
        """End background work; the handler is not used afterwards."""

    async def check(self, instance: Instance) -> CheckResult:
        raise UnsupportedTemplate(f"{type(self).__name__} does not check {instance.template}")

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        raise UnsupportedTemplate(f"{type(self).__name__} does not allocate quota")

    def report(self, instances: Sequence[Instance]) -> None:
        raise UnsupportedTemplate(f"{type(self).__name__} does not take reports")

    def generate(self, instance: Instance) -> Mapping[str, Any]:
        """An attribute generator's output fields for one instance (absent ones left out)."""
        raise UnsupportedTemplate(f"{type(self).__name__} does not generate attributes")


class Adapter(Protocol):
    """What an adapter module exposes (as its `ADAPTER`)."""

    name: ClassVar[str]
    templates: ClassVar[frozenset[str]]

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler: ...


def parse_params(model: type[T], params: Mapping[str, Any] | None) -> T:
    """Validate `params` into the adapter's model, raising ParamsError with field paths."""
    try:
        return TypeAdapter(model).validate_python(dict(params or {}))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(params)'}: {e['msg']}" for e in error.errors()
        )
        raise ParamsError(problems) from None
