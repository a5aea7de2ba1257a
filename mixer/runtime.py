"""The configuration in force, put to work: rules evaluated, instances built, handlers called.

`HandlerPool.runtime(resources)` compiles a snapshot with `meshconfig.policy.compiled` (the
config language galley validates with too), builds the handlers its rules use through the
adapter registry, and returns a `Runtime`. A handler whose adapter and params are unchanged is
reused with its state (memquota windows, fetched lists); new ones are started before the
runtime is returned, and `retire_unused()` closes those the runtime in force no longer uses. A
snapshot with problems (a bad expression, an unknown handler, params an adapter refuses) is
refused whole with `ConfigError`, so the previous rules stay in force. Galley refuses the
first two before it distributes them; adapter params only Mixer's adapters can judge.

For one request, the rules that apply are those of the default config namespace and of the
destination service's namespace, as in Istio. A rule whose match cannot be evaluated is
skipped, as Istio skipped it. Checks: every matching rule's check instances go to their
handlers; the first non-OK status decides, valid duration and use count are the least of all,
and the referenced attributes are everything the match and the instances read. An instance
that cannot be built fails the whole Check (`DispatchError`: the client's fail-open or
fail-closed policy decides, as with Istio's Mixer). Quotas: each requested quota goes to the
quota instances of that name in the matching rules. Reports: report instances are built per
request and handed to each handler in one batch; an instance that cannot be built is left out.

Owned by the event loop; the pool owns the handlers' lifecycles.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshconfig import Resource
from meshconfig.policy.attributes import AttributeBag
from meshconfig.policy.compiled import (
    CompiledAction,
    CompiledInstance,
    MixerConfig,
    compile_mixer_config,
    identity_namespace,
)
from meshconfig.policy.expr import EvaluationError
from meshconfig.policy.templates import Variety
from mixer.adapters import ADAPTERS
from mixer.adapters.base import (
    DEFAULT_VALID_DURATION,
    DEFAULT_VALID_USE_COUNT,
    Environment,
    Handler,
    Instance,
    ParamsError,
    QuotaArgs,
    QuotaResult,
    Status,
)
from mixer.checks import Precondition

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A snapshot Mixer cannot put in force; the message lists every problem."""


class DispatchError(RuntimeError):
    """A Check could not be evaluated (an instance could not be built)."""


def _short(instance_name: str) -> str:
    return instance_name.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class _Action:
    handler: Handler
    instances: tuple[CompiledInstance, ...]


@dataclass(frozen=True, slots=True)
class _Rule:
    """A compiled rule with its handlers resolved, split by what each action does."""

    name: str
    matches: Any  # CompiledRule.matches
    checks: tuple[_Action, ...]
    quotas: tuple[_Action, ...]
    reports: tuple[_Action, ...]


_OK = Status()


class Runtime:
    """One configuration with live handlers; implements `mixer.checks.Dispatcher`."""

    def __init__(self, config: MixerConfig | None, handlers: Mapping[str, Handler]) -> None:
        self.config = config
        self._rules: dict[str, tuple[_Rule, ...]] = {}
        if config is None:
            return
        namespaces = {rule.namespace for rule in config.rules} | {""}
        for namespace in namespaces:
            self._rules[namespace] = tuple(
                _Rule(
                    rule.name,
                    rule.matches,
                    *(_actions(rule.actions, handlers, variety) for variety in _VARIETIES),
                )
                for rule in config.rules_for(namespace)
            )

    @classmethod
    def empty(cls) -> Runtime:
        """No configuration yet: every check passes, reports go nowhere."""
        return cls(None, {})

    def summary(self) -> dict[str, int]:
        config = self.config
        if config is None:
            return {"rules": 0, "handlers": 0, "instances": 0}
        return {
            "rules": len(config.rules),
            "handlers": len(config.handlers),
            "instances": len(config.instances),
        }

    def rules_for(self, bag: AttributeBag) -> tuple[_Rule, ...]:
        rules = self._rules.get(identity_namespace(bag))
        return rules if rules is not None else self._rules.get("", ())

    def quota_charges(self, bag: AttributeBag) -> dict[str, QuotaArgs]:
        """The quotas the QuotaSpecs bound to the request's destination charge it."""
        if self.config is None:
            return {}
        return {name: QuotaArgs(amount) for name, amount in self.config.quota_charges(bag).items()}

    async def preconditions(self, bag: AttributeBag) -> Precondition:
        recording = bag.recording()
        status = _OK
        duration = DEFAULT_VALID_DURATION
        uses = DEFAULT_VALID_USE_COUNT
        for rule in self.rules_for(bag):
            if not rule.checks or not _matches(rule, recording):
                continue
            for action in rule.checks:
                for compiled in action.instances:
                    try:
                        fields = compiled.build(recording)
                    except EvaluationError as error:
                        raise DispatchError(str(error)) from None
                    result = await action.handler.check(
                        Instance(compiled.name, compiled.template, fields)
                    )
                    duration = min(duration, result.valid_duration)
                    uses = min(uses, result.valid_use_count)
                    if status.ok and not result.status.ok:
                        status = result.status
        return Precondition(status, duration, uses, recording.referenced)

    async def quotas(
        self, bag: AttributeBag, quotas: Mapping[str, QuotaArgs]
    ) -> dict[str, QuotaResult]:
        results: dict[str, QuotaResult] = {}
        for rule in self.rules_for(bag):
            if not rule.quotas or not _matches(rule, bag):
                continue
            for action in rule.quotas:
                for compiled in action.instances:
                    wanted = quotas.get(compiled.name) or quotas.get(_short(compiled.name))
                    if wanted is None:
                        continue
                    name = compiled.name if compiled.name in quotas else _short(compiled.name)
                    try:
                        fields = compiled.build(bag)
                    except EvaluationError as error:
                        raise DispatchError(str(error)) from None
                    result = await action.handler.quota(
                        Instance(compiled.name, compiled.template, fields), wanted
                    )
                    previous = results.get(name)
                    if previous is None or result.granted < previous.granted:
                        results[name] = result
        for name, args in quotas.items():
            # A quota no rule allocates is not limited, as with Istio's Mixer.
            results.setdefault(name, QuotaResult(args.amount, datetime.timedelta(0)))
        return results

    def report(self, bags: Sequence[AttributeBag]) -> None:
        batches: dict[int, tuple[Handler, list[Instance]]] = {}
        for bag in bags:
            for rule in self.rules_for(bag):
                if not rule.reports or not _matches(rule, bag):
                    continue
                for action in rule.reports:
                    batch = batches.get(id(action.handler))
                    if batch is None:
                        batch = batches[id(action.handler)] = (action.handler, [])
                    for compiled in action.instances:
                        try:
                            fields = compiled.build(bag)
                        except EvaluationError as error:
                            log.debug("report instance left out: %s", error)
                            continue
                        batch[1].append(Instance(compiled.name, compiled.template, fields))
        for handler, instances in batches.values():
            if instances:
                try:
                    handler.report(instances)
                except Exception:  # one adapter's bug must not lose the others' reports
                    log.exception("handler %s failed to take a report", type(handler).__name__)


_VARIETIES = (Variety.CHECK, Variety.QUOTA, Variety.REPORT)


def _actions(
    actions: Iterable[CompiledAction], handlers: Mapping[str, Handler], variety: Variety
) -> tuple[_Action, ...]:
    found = []
    for action in actions:
        handler = handlers.get(action.handler.name)
        instances = tuple(i for i in action.instances if i.variety is variety)
        if handler is not None and instances:
            found.append(_Action(handler, instances))
    return tuple(found)


def _matches(rule: _Rule, bag: Any) -> bool:
    try:
        return bool(rule.matches(bag))
    except EvaluationError as error:
        log.debug("rule %s skipped: %s", rule.name, error)
        return False


HandlerKey = tuple[str, str, str]  # (handler name, adapter, params as canonical JSON)


class HandlerPool:
    """Builds, reuses and closes handlers across configurations."""

    def __init__(self, env: Environment) -> None:
        self._env = env
        self._live: dict[HandlerKey, Handler] = {}
        self._in_force: set[HandlerKey] = set()

    async def runtime(self, resources: Iterable[Resource]) -> Runtime:
        """Compile and build; raises ConfigError (nothing changes) if anything is wrong."""
        config = compile_mixer_config(resources)
        if config.problems:
            raise ConfigError("; ".join(str(problem) for problem in config.problems))
        used = {action.handler.name for rule in config.rules for action in rule.actions}
        wanted: dict[str, HandlerKey] = {}
        problems: list[str] = []
        for name in sorted(used):
            compiled = config.handlers[name]
            if not compiled.compiled or compiled.adapter not in ADAPTERS:
                problems.append(
                    f"handler {name}: adapter {compiled.adapter!r} is not compiled into Mixer "
                    f"(it has {', '.join(sorted(ADAPTERS))})"
                )
                continue
            params = json.dumps(compiled.params, sort_keys=True, default=str)
            wanted[name] = (name, compiled.adapter, params)
        built: dict[HandlerKey, Handler] = {}
        for name, key in wanted.items():
            if key in self._live:
                continue
            try:
                built[key] = ADAPTERS[key[1]].build(config.handlers[name].params, self._env)
            except ParamsError as error:
                problems.append(f"handler {name}: params: {error}")
        if problems:
            await _close_all(built.values())
            raise ConfigError("; ".join(problems))
        started: list[Handler] = []
        try:
            for handler in built.values():
                await handler.start()
                started.append(handler)
        except BaseException:
            await _close_all(started)
            raise
        self._live.update(built)
        self._in_force = set(wanted.values())
        handlers = {name: self._live[key] for name, key in wanted.items()}
        return Runtime(config, handlers)

    async def retire_unused(self) -> None:
        """Close the handlers the configuration in force does not use."""
        unused = [key for key in self._live if key not in self._in_force]
        await _close_all(self._live.pop(key) for key in unused)

    async def close(self) -> None:
        await _close_all(self._live.values())
        self._live.clear()
        self._in_force.clear()


async def _close_all(handlers: Iterable[Handler]) -> None:
    for handler in list(handlers):
        try:
            await handler.close()
        except Exception:
            log.exception("closing handler %s failed", type(handler).__name__)
