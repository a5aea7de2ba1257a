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

Before any of these, as Istio's preprocessing did, the matching rules' attribute-generating
instances (the `kubernetes` template) go to their handlers (`kubernetesenv`), whose outputs the
instances' compiled attribute bindings turn into attributes (`source.workload.name`,
`source.labels`, ...); check, quota and report rules (their matches and instances) then read
the request's attributes with those laid over them. Generation reads the request as it came
(the rules that apply are still those of its destination's namespace), and a Check's
referenced attributes are those of the request as it came: what generation read (source.ip,
source.uid, ...) and what the rules read that generation did not set. An instance that cannot
be built, or a handler that fails, generates nothing; the request goes on without.

Owned by the event loop; the pool owns the handlers' lifecycles.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshconfig import Resource
from meshconfig.policy.attributes import ABSENT_MAP, AttributeBag, Attributes, KeyLookup
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
from mixer.workloads import REGISTRY_KIND_IDS

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
    generators: tuple[_Action, ...]


_OK = Status()


class Runtime:
    """One configuration with live handlers; implements `mixer.checks.Dispatcher`."""

    def __init__(self, config: MixerConfig | None, handlers: Mapping[str, Handler]) -> None:
        self.config = config
        self._rules: dict[str, tuple[_Rule, ...]] = {}
        self._generating: dict[str, tuple[_Rule, ...]] = {}
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
            self._generating[namespace] = tuple(r for r in self._rules[namespace] if r.generators)

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

    def rules_for(self, bag: Attributes) -> tuple[_Rule, ...]:
        rules = self._rules.get(identity_namespace(bag))
        return rules if rules is not None else self._rules.get("", ())

    def generate(self, bag: Attributes, namespace: str | None = None) -> Attributes:
        """`bag` with the attributes the matching attribute generators set laid over it (`bag`
        itself when there are none). `namespace`: the request's (`identity_namespace`), when
        the caller knows it already."""
        if namespace is None:
            namespace = identity_namespace(bag)
        rules = self._generating.get(namespace)
        if rules is None:
            rules = self._generating.get("", ())
        if not rules:
            return bag
        generated: dict[str, Any] = {}
        for rule in rules:
            if not _matches(rule, bag):
                continue
            for action in rule.generators:
                for compiled in action.instances:
                    try:
                        fields = compiled.build(bag)
                    except EvaluationError as error:
                        log.debug("attribute generator left out: %s", error)
                        continue
                    try:
                        outputs = action.handler.generate(
                            Instance(compiled.name, compiled.template, fields)
                        )
                    except Exception:  # one adapter's bug must not fail the request
                        log.exception(
                            "handler %s failed to generate attributes",
                            type(action.handler).__name__,
                        )
                        continue
                    generated.update(compiled.bind(outputs, bag))
        return _Generated(bag, generated) if generated else bag

    def quota_charges(self, bag: AttributeBag) -> dict[str, QuotaArgs]:
        """The quotas the QuotaSpecs bound to the request's destination charge it."""
        if self.config is None:
            return {}
        return {name: QuotaArgs(amount) for name, amount in self.config.quota_charges(bag).items()}

    async def preconditions(self, bag: AttributeBag) -> Precondition:
        recording = bag.recording()
        rules = self.rules_for(bag)
        attributes: Attributes = recording
        if any(rule.checks for rule in rules):
            attributes = self.generate(recording, identity_namespace(bag))
        status = _OK
        duration = DEFAULT_VALID_DURATION
        uses = DEFAULT_VALID_USE_COUNT
        for rule in rules:
            if not rule.checks or not _matches(rule, attributes):
                continue
            for action in rule.checks:
                for compiled in action.instances:
                    try:
                        fields = compiled.build(attributes)
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
        rules = self.rules_for(bag)
        attributes = self.generate(bag) if any(rule.quotas for rule in rules) else bag
        for rule in rules:
            if not rule.quotas or not _matches(rule, attributes):
                continue
            for action in rule.quotas:
                for compiled in action.instances:
                    wanted = quotas.get(compiled.name) or quotas.get(_short(compiled.name))
                    if wanted is None:
                        continue
                    name = compiled.name if compiled.name in quotas else _short(compiled.name)
                    try:
                        fields = compiled.build(attributes)
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
            rules = self.rules_for(bag)
            if not any(rule.reports for rule in rules):
                continue
            attributes = self.generate(bag)
            for rule in rules:
                if not rule.reports or not _matches(rule, attributes):
                    continue
                for action in rule.reports:
                    batch = batches.get(id(action.handler))
                    if batch is None:
                        batch = batches[id(action.handler)] = (action.handler, [])
                    for compiled in action.instances:
                        try:
                            fields = compiled.build(attributes)
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


_VARIETIES = (Variety.CHECK, Variety.QUOTA, Variety.REPORT, Variety.ATTRIBUTE_GENERATOR)


class _Generated:
    """A request's attributes with generated ones laid over them. Reads of generated
    attributes are not passed on, so a recording bag below records only what came with the
    request (as Istio's preprocessed bag did)."""

    __slots__ = ("_base", "_values", "lookup")

    def __init__(self, base: Attributes, values: Mapping[str, Any]) -> None:
        self._base = base
        self._values = values
        self.lookup: Callable[[str], Any] = self._lookup

    def _lookup(self, name: str) -> Any:
        value = self._values.get(name)
        return value if value is not None else self._base.lookup(name)

    def lookup_key(self, name: str, key: str) -> KeyLookup:
        found = self._values.get(name)
        if found is None:
            return self._base.lookup_key(name, key)
        if not isinstance(found, Mapping):
            return ABSENT_MAP
        value: str | None = found.get(key)
        return value


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
        self._current: tuple[list[Resource], Runtime] | None = None

    async def runtime(self, resources: Iterable[Resource]) -> Runtime:
        """Compile and build; raises ConfigError (the rules in force stay) if anything is wrong.

        The registry among `resources` (Pods, WorkloadEntries) goes to the environment's
        workloads, which attribute generators read per request, whether or not the rest
        compiles; when only the registry changed, the runtime in force is returned as it is.
        """
        resources = list(resources)
        policy = [r for r in resources if r.kind.id not in REGISTRY_KIND_IDS]
        self._env.workloads.update(r for r in resources if r.kind.id in REGISTRY_KIND_IDS)
        if self._current is not None and self._current[0] == policy:
            return self._current[1]
        config = compile_mixer_config(policy)
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
        runtime = Runtime(config, handlers)
        self._current = (policy, runtime)
        return runtime

    async def retire_unused(self) -> None:
        """Close the handlers the configuration in force does not use."""
        unused = [key for key in self._live if key not in self._in_force]
        await _close_all(self._live.pop(key) for key in unused)

    async def close(self) -> None:
        await _close_all(self._live.values())
        self._live.clear()
        self._in_force.clear()
        self._current = None


async def _close_all(handlers: Iterable[Handler]) -> None:
    for handler in list(handlers):
        try:
            await handler.close()
        except Exception:
            log.exception("closing handler %s failed", type(handler).__name__)
