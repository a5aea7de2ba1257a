"""Mixer's configuration compiled once per snapshot: handlers, instances and rules.

`compile_mixer_config(resources)` turns the config.istio.io resources of a snapshot (handler,
instance, rule, the legacy per-adapter and per-template kinds such as `denier` and
`listentry`, attribute manifests, QuotaSpec and QuotaSpecBinding) into an immutable
`MixerConfig`: every expression compiled and type-checked against the vocabulary, every
reference resolved. Like Mixer, a broken resource does not stop the others: it is left out and
its problems are in `MixerConfig.problems`, one ConfigValidationError per resource naming the
field path and the place in the expression. `validate_mixer_resources` is that list: galley
runs it over a candidate snapshot before accepting a change, mixer compiles the snapshot galley
accepted. Envoy's ext_authz sends no quotas (Istio's sidecar Mixer client read the QuotaSpecs),
so `MixerConfig.quota_charges(bag)` applies the bindings to the request's destination
(`meshconfig.policy.quota_charges`).

Names follow Istio: a resource is known as `name.kind.namespace` (`denyrequest.instance.
istio-system`, legacy `sourceip.listentry.default`). A rule refers to a handler or instance by
that full name, by `name.kind` or `name.namespace`, or by its bare name (a `handler` or
`instance` in the rule's namespace). Rules in the default config namespace (istio-system) apply
to every request; the others only to requests for services of their namespace.

Instances are built per request by `CompiledInstance.build(bag)`: the template's fields, each
from its expression, in a dict keyed by the proto field names (snake_case). Built-in templates
(`meshconfig.policy.templates`) have their field types checked; an instance of another
(out-of-process) template has every expression compiled with whatever type it has. Handlers
keep their params raw: each adapter validates its own (at run time, in mixer). Rule `sampling`
is kept raw, unevaluated.

An instance of an attribute-generating template (`kubernetes`) also has its
`attributeBindings` compiled: attribute name -> expression over the request's attributes and
the adapter's output, read as `$out.<field>` and typed by the template's outputs; each
expression must have the bound attribute's type. `CompiledInstance.bind(outputs, bag)` gives
the attributes an adapter's output sets. Other instances keep their bindings raw (an
out-of-process template declares outputs Mixer does not model).

This is the config language shared by galley (which validates with it) and mixer (which runs
it): it imports nothing from any service, and what it evaluates are pure functions of (config,
attributes). Handlers, dispatch and adapters are mixer's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from meshconfig import ConfigValidationError, FieldError, Resource
from meshconfig.policy import GROUP, LEGACY_ADAPTER_KINDS, LEGACY_TEMPLATE_KINDS
from meshconfig.policy.attributes import (
    ABSENT_MAP,
    ISTIO_VOCABULARY,
    Attributes,
    KeyLookup,
    ValueType,
    manifest_attributes,
)
from meshconfig.policy.expr import (
    CompiledExpression,
    EvaluationError,
    ExpressionError,
    compile_expression,
    referenced_names,
)
from meshconfig.policy.mixer import HandlerSpec, InstanceSpec, RuleSpec
from meshconfig.policy.quota_charges import (
    NO_QUOTAS,
    CompiledQuotaSpec,
    QuotaSpecs,
    compile_quota_binding,
    compile_quota_spec,
)
from meshconfig.policy.templates import (
    ADAPTER_TEMPLATES,
    OUTPUT_PREFIX,
    TEMPLATES,
    TEXT_TYPES,
    FieldType,
    MapOf,
    Template,
    Variety,
)

DEFAULT_NAMESPACE = "istio-system"


# -- the compiled model --------------------------------------------------------------------------

Builder = Callable[[Attributes], Any]


@dataclass(frozen=True, slots=True)
class CompiledHandler:
    """An adapter configured: `adapter` is the compiledAdapter's (or out-of-process) name."""

    name: str  # "whitelist.handler.default", legacy "whitelist.listchecker.default"
    namespace: str
    adapter: str
    compiled: bool  # compiledAdapter (in Mixer) rather than an out-of-process adapter
    params: Mapping[str, Any]
    resource: Resource


@dataclass(frozen=True, slots=True)
class CompiledInstance:
    """A template's fields, each computed per request from an expression."""

    name: str  # "requestcountquota.instance.istio-system"
    namespace: str
    template: str
    variety: Variety | None  # None: a template Mixer does not know (out of process)
    params: Mapping[str, Any]  # as written
    attribute_bindings: Mapping[str, str]  # as written
    expressions: Mapping[str, CompiledExpression]  # by field path ("dimensions.source")
    resource: Resource
    _build: Builder = field(repr=False, compare=False)
    # An attribute generator's bindings, compiled: attribute name -> expression (reads `$out`).
    bindings: Mapping[str, CompiledExpression] = field(default_factory=lambda: MappingProxyType({}))

    def bind(self, outputs: Mapping[str, Any], bag: Attributes) -> dict[str, Any]:
        """The attributes an adapter's `outputs` (the template's output fields; absent ones
        left out) set for one request: every binding that evaluates. A binding that cannot
        (an absent output or attribute with no default) sets nothing."""
        view = OutputAttributes(bag, outputs)
        values: dict[str, Any] = {}
        for name, expression in self.bindings.items():
            try:
                value = expression.evaluate(view)
            except EvaluationError:
                continue
            if value is not None:
                values[name] = value
        return values

    def build(self, bag: Attributes) -> dict[str, Any]:
        """The instance's field values for one request (fields left unset are absent).

        Raises EvaluationError naming the instance and field if an expression fails.
        """
        try:
            built: dict[str, Any] = self._build(bag)
        except EvaluationError as error:
            # Off the hot path: find which field failed (evaluation is deterministic).
            path = next((p for p, e in self.expressions.items() if _fails(e, bag)), "?")
            raise EvaluationError(
                f"instance {self.name}, field {path}: {error.message}", error.text, error.offset
            ) from None
        return built


class OutputAttributes:
    """`bag` with an attribute generator's `outputs` readable as `$out.<field>`."""

    __slots__ = ("_bag", "_outputs", "lookup")

    def __init__(self, bag: Attributes, outputs: Mapping[str, Any]) -> None:
        self._bag = bag
        self._outputs = outputs
        self.lookup: Callable[[str], Any] = self._lookup

    def _lookup(self, name: str) -> Any:
        if name.startswith(OUTPUT_PREFIX):
            return self._outputs.get(name[len(OUTPUT_PREFIX) :])
        return self._bag.lookup(name)

    def lookup_key(self, name: str, key: str) -> KeyLookup:
        if not name.startswith(OUTPUT_PREFIX):
            return self._bag.lookup_key(name, key)
        found = self._outputs.get(name[len(OUTPUT_PREFIX) :])
        if found is None:
            return ABSENT_MAP
        value: str | None = found.get(key)
        return value


def _fails(expression: CompiledExpression, bag: Attributes) -> bool:
    try:
        expression.evaluate(bag)
    except EvaluationError:
        return True
    return False


@dataclass(frozen=True, slots=True)
class CompiledAction:
    handler: CompiledHandler
    instances: tuple[CompiledInstance, ...]
    name: str | None = None  # lets header operations read `<name>.output.<field>`


@dataclass(frozen=True, slots=True)
class HeaderOperation:
    """A header change: `values` are STRING expressions over the bag and action outputs."""

    name: str
    values: tuple[CompiledExpression, ...]
    operation: str  # "REPLACE" (the default), "REMOVE" or "APPEND"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str  # "denyreviewsv3.rule.default"
    namespace: str
    match: CompiledExpression | None  # None: every request
    actions: tuple[CompiledAction, ...]
    request_header_operations: tuple[HeaderOperation, ...]
    response_header_operations: tuple[HeaderOperation, ...]
    sampling: Mapping[str, Any] | None
    resource: Resource

    def matches(self, bag: Attributes) -> bool:
        """Whether the rule applies; EvaluationError if the match cannot be evaluated (Istio
        then skips the rule)."""
        return True if self.match is None else bool(self.match.evaluate(bag))


@dataclass(frozen=True, slots=True)
class MixerConfig:
    """One snapshot's Mixer config, compiled; immutable. Look-ups are by full name."""

    handlers: Mapping[str, CompiledHandler]
    instances: Mapping[str, CompiledInstance]
    rules: tuple[CompiledRule, ...]
    quotas: QuotaSpecs
    vocabulary: Mapping[str, ValueType]
    default_namespace: str
    problems: tuple[ConfigValidationError, ...]
    _by_namespace: Mapping[str, tuple[CompiledRule, ...]] = field(repr=False, compare=False)

    def rules_for(self, namespace: str) -> tuple[CompiledRule, ...]:
        """The rules for a request to a service of `namespace`: the default namespace's rules
        (which apply to all requests) and that namespace's own."""
        common = self._by_namespace.get(self.default_namespace, ())
        if namespace == self.default_namespace:
            return common
        return common + self._by_namespace.get(namespace, ())

    def quota_charges(self, bag: Attributes) -> dict[str, int]:
        """Quota name -> amount a request is charged by the QuotaSpecs bound to its destination
        service (see `meshconfig.policy.quota_charges`)."""
        return self.quotas.charges(bag) if self.quotas else {}


def identity_namespace(bag: Attributes) -> str:
    """The namespace whose rules apply to a request, from its `destination.service.host`
    (`reviews.default.svc.cluster.local` -> `default`), as Mixer picks it; "" if unknown."""
    host = bag.lookup("destination.service.host")
    parts = host.split(".") if isinstance(host, str) else []
    return parts[1] if len(parts) > 1 else ""


# -- compiling -----------------------------------------------------------------------------------


def compile_mixer_config(
    resources: Iterable[Resource],
    *,
    vocabulary: Mapping[str, ValueType] = ISTIO_VOCABULARY,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> MixerConfig:
    """Compile the Mixer resources among `resources` (others are ignored); never raises for
    bad config: broken resources are left out and described in `problems`."""
    return _Compiler(list(resources), vocabulary, default_namespace).compile()


def validate_mixer_resources(
    resources: Iterable[Resource],
    *,
    vocabulary: Mapping[str, ValueType] = ISTIO_VOCABULARY,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> list[ConfigValidationError]:
    """Every problem of the Mixer resources among `resources`, taken together (a rule's
    handler must be among them): one ConfigValidationError per resource, `resource` its label."""
    config = compile_mixer_config(
        resources, vocabulary=vocabulary, default_namespace=default_namespace
    )
    return list(config.problems)


_CAMEL = re.compile(r"(?<!^)([A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


def _full_name(resource: Resource, kind: str) -> str:
    return f"{resource.metadata.name}.{kind}.{resource.metadata.namespace}"


class _Compiler:
    def __init__(
        self, resources: list[Resource], vocabulary: Mapping[str, ValueType], default_ns: str
    ) -> None:
        self.resources = [r for r in resources if r.kind.group == GROUP]
        self.default_namespace = default_ns
        self.problems: dict[tuple[str, str, str], tuple[Resource, list[FieldError]]] = {}
        self.vocabulary = self._vocabulary(vocabulary)
        self.handlers: dict[str, CompiledHandler] = {}
        self.instances: dict[str, CompiledInstance] = {}
        self.invalid: set[str] = set()  # full names of handlers/instances left out

    def problem(self, resource: Resource, path: str, message: str) -> None:
        entry = self.problems.setdefault(resource.key, (resource, []))
        entry[1].append(FieldError(path, message))

    def _vocabulary(self, base: Mapping[str, ValueType]) -> Mapping[str, ValueType]:
        extra: dict[str, ValueType] = {}
        for resource in self.resources:
            if resource.kind.kind == "attributemanifest":
                try:
                    extra.update(manifest_attributes(resource.spec_dict()))
                except ValueError as error:
                    self.problem(resource, "spec", str(error))
        return {**base, **extra}

    def compile(self) -> MixerConfig:
        by_kind: dict[str, list[Resource]] = {}
        for resource in self.resources:
            by_kind.setdefault(_role(resource), []).append(resource)
        for resource in by_kind.get("handler", []):
            self._handler(resource)
        for resource in by_kind.get("instance", []):
            self._instance(resource)
        rules = [rule for rule in map(self._rule, by_kind.get("rule", [])) if rule is not None]
        specs = {
            (spec.namespace, spec.name): spec
            for spec in map(self._quota_spec, by_kind.get("QuotaSpec", []))
        }
        bindings = tuple(map(compile_quota_binding, by_kind.get("QuotaSpecBinding", [])))
        quotas = QuotaSpecs(MappingProxyType(specs), bindings) if specs or bindings else NO_QUOTAS
        by_namespace: dict[str, list[CompiledRule]] = {}
        for rule in rules:
            by_namespace.setdefault(rule.namespace, []).append(rule)
        problems = tuple(
            ConfigValidationError(resource.label, errors, resource.source)
            for resource, errors in self.problems.values()
        )
        return MixerConfig(
            handlers=MappingProxyType(self.handlers),
            instances=MappingProxyType(self.instances),
            rules=tuple(rules),
            quotas=quotas,
            vocabulary=MappingProxyType(dict(self.vocabulary)),
            default_namespace=self.default_namespace,
            problems=problems,
            _by_namespace=MappingProxyType({ns: tuple(rs) for ns, rs in by_namespace.items()}),
        )

    # -- handlers ---------------------------------------------------------------------------

    def _handler(self, resource: Resource) -> None:
        spec = resource.spec
        if isinstance(spec, HandlerSpec):
            name = _full_name(resource, "handler")
            adapter = spec.compiled_adapter or spec.adapter or ""
            compiled, params = bool(spec.compiled_adapter), spec.params or {}
        else:  # a legacy per-adapter kind: the spec is the params
            name = _full_name(resource, resource.kind.kind)
            adapter, compiled, params = resource.kind.kind, True, resource.spec_dict()
        self.handlers[name] = CompiledHandler(
            name, resource.metadata.namespace, adapter, compiled, MappingProxyType(params), resource
        )

    # -- instances --------------------------------------------------------------------------

    def _instance(self, resource: Resource) -> None:
        spec = resource.spec
        if isinstance(spec, InstanceSpec):
            name = _full_name(resource, "instance")
            template_name = spec.compiled_template or spec.template or ""
            params, prefix = spec.params or {}, "spec.params"
            if spec.compiled_template and template_name not in TEMPLATES:
                known = ", ".join(sorted(TEMPLATES))
                self.problem(
                    resource,
                    "spec.compiledTemplate",
                    f"unknown template {template_name!r} (Mixer compiles in {known})",
                )
                self.invalid.add(name)
                return
            bindings = spec.attribute_bindings or {}
        else:  # a legacy per-template kind: the spec is the params
            name = _full_name(resource, resource.kind.kind)
            template_name, params, prefix = resource.kind.kind, resource.spec_dict(), "spec"
            bindings = {}
        template = TEMPLATES.get(template_name)
        expressions: dict[str, CompiledExpression] = {}
        before = len(self.problems.get(resource.key, (resource, []))[1])
        if template is not None:
            build = self._message(resource, template.fields, params, prefix, "", expressions)
        else:
            build = self._untyped(resource, params, prefix, "", expressions)
        compiled_bindings: Mapping[str, CompiledExpression] = {}
        if template is not None and template.variety is Variety.ATTRIBUTE_GENERATOR:
            compiled_bindings = self._bindings(resource, template, bindings)
        if len(self.problems.get(resource.key, (resource, []))[1]) > before:
            self.invalid.add(name)
            return
        self.instances[name] = CompiledInstance(
            name=name,
            namespace=resource.metadata.namespace,
            template=template_name,
            variety=template.variety if template is not None else None,
            params=MappingProxyType(dict(params)),
            attribute_bindings=MappingProxyType(dict(bindings)),
            expressions=MappingProxyType(expressions),
            resource=resource,
            _build=build,
            bindings=MappingProxyType(dict(compiled_bindings)),
        )

    def _bindings(
        self, resource: Resource, template: Template, bindings: Mapping[str, Any]
    ) -> dict[str, CompiledExpression]:
        """An attribute generator's `attributeBindings`, each typed as its attribute."""
        vocabulary = {
            **self.vocabulary,
            **{OUTPUT_PREFIX + output: kind for output, kind in template.outputs.items()},
        }
        compiled: dict[str, CompiledExpression] = {}
        for attribute, text in bindings.items():
            where = f"spec.attributeBindings.{attribute}"
            wanted = self.vocabulary.get(attribute)
            if wanted is None:
                self.problem(resource, where, f"unknown attribute {attribute!r}")
                continue
            if not isinstance(text, str):
                self.problem(resource, where, "must be an expression string")
                continue
            expression = self._expression(resource, text, where, wanted, vocabulary)
            if expression is not None:
                compiled[attribute] = expression
        return compiled

    def _expression(
        self,
        resource: Resource,
        text: str,
        where: str,
        expected: ValueType | frozenset[ValueType] | None,
        vocabulary: Mapping[str, ValueType] | None = None,
    ) -> CompiledExpression | None:
        try:
            return compile_expression(text, vocabulary or self.vocabulary, expected)
        except ExpressionError as error:
            self.problem(resource, where, str(error))
            return None

    def _field(
        self,
        resource: Resource,
        kind: FieldType,
        raw: Any,
        where: str,
        path: str,
        expressions: dict[str, CompiledExpression],
    ) -> Builder | None:
        """The builder of one template field from its raw params value (None if invalid)."""
        if isinstance(kind, MapOf):
            if not isinstance(raw, Mapping):
                self.problem(resource, where, "must be a map of expressions")
                return None
            entries = {
                key: self._field(
                    resource, kind.value, value, f"{where}.{key}", f"{path}.{key}", expressions
                )
                for key, value in raw.items()
            }
            return _map_builder(entries)
        if isinstance(kind, Mapping):
            if not isinstance(raw, Mapping):
                self.problem(resource, where, "must be a message of fields")
                return None
            return self._message(resource, kind, raw, where, path + ".", expressions)
        if not isinstance(raw, str):
            self.problem(resource, where, "must be an expression string")
            return None
        expected = TEXT_TYPES if kind is ValueType.STRING else kind
        compiled = self._expression(resource, raw, where, expected)
        if compiled is None:
            return None
        expressions[path] = compiled
        if kind is ValueType.STRING and compiled.type is not ValueType.STRING:  # text form
            evaluate = compiled.evaluate
            return lambda bag: str(evaluate(bag))
        return compiled.evaluate

    def _message(
        self,
        resource: Resource,
        fields: Mapping[str, FieldType],
        params: Mapping[str, Any],
        where: str,
        path: str,
        expressions: dict[str, CompiledExpression],
    ) -> Builder:
        entries: dict[str, Builder | None] = {}
        for key, raw in params.items():
            name = _snake(key)
            if name not in fields:
                known = ", ".join(sorted(fields)) or "none"
                self.problem(resource, f"{where}.{key}", f"unknown field (the fields: {known})")
                continue
            entries[name] = self._field(
                resource, fields[name], raw, f"{where}.{key}", path + name, expressions
            )
        return _map_builder(entries)

    def _untyped(
        self,
        resource: Resource,
        params: Mapping[str, Any],
        where: str,
        path: str,
        expressions: dict[str, CompiledExpression],
    ) -> Builder:
        """Params of a template Mixer does not know: every string is an expression."""
        entries: dict[str, Builder | None] = {}
        for key, raw in params.items():
            if isinstance(raw, Mapping):
                entries[key] = self._untyped(
                    resource, raw, f"{where}.{key}", f"{path}{key}.", expressions
                )
            else:
                entries[key] = self._field(
                    resource, None, raw, f"{where}.{key}", path + key, expressions
                )
        return _map_builder(entries)

    # -- rules ------------------------------------------------------------------------------

    def _resolve(
        self, resource: Resource, reference: str, kind: str, table: Mapping[str, Any], where: str
    ) -> Any:
        """The handler or instance `reference` names, from a rule in `resource`'s namespace."""
        namespace = resource.metadata.namespace
        parts = reference.split(".")
        if len(parts) == 1:
            candidates = [f"{reference}.{kind}.{namespace}"]
        elif len(parts) == 2:  # name.kind (legacy kinds) or name.namespace
            candidates = [f"{reference}.{namespace}", f"{parts[0]}.{kind}.{parts[1]}"]
        else:
            candidates = [reference]
        for candidate in candidates:
            if candidate in table:
                return table[candidate]
        if any(candidate in self.invalid for candidate in candidates):
            self.problem(resource, where, f"{kind} {reference!r} is invalid (see its errors)")
        else:
            self.problem(
                resource, where, f"{kind} {reference!r} not found (as {' or '.join(candidates)})"
            )
        return None

    def _rule(self, resource: Resource) -> CompiledRule | None:
        spec = resource.spec
        if not isinstance(spec, RuleSpec):
            return None
        before = len(self.problems.get(resource.key, (resource, []))[1])
        match = None
        if spec.match and spec.match.strip():
            match = self._expression(resource, spec.match, "spec.match", ValueType.BOOL)
        actions = [
            self._action(resource, index, action.handler, action.instances, action.name)
            for index, action in enumerate(spec.actions or [])
        ]
        outputs = self._outputs(spec)
        request_ops = self._header_operations(
            resource, spec.request_header_operations, "spec.requestHeaderOperations", outputs
        )
        response_ops = self._header_operations(
            resource, spec.response_header_operations, "spec.responseHeaderOperations", outputs
        )
        if len(self.problems.get(resource.key, (resource, []))[1]) > before:
            return None
        return CompiledRule(
            name=_full_name(resource, "rule"),
            namespace=resource.metadata.namespace,
            match=match,
            actions=tuple(a for a in actions if a is not None),
            request_header_operations=request_ops,
            response_header_operations=response_ops,
            sampling=spec.sampling.model_dump(by_alias=True, exclude_none=True)
            if spec.sampling is not None
            else None,
            resource=resource,
        )

    def _action(
        self,
        resource: Resource,
        index: int,
        handler_ref: str,
        instance_refs: Sequence[str],
        name: str | None,
    ) -> CompiledAction | None:
        where = f"spec.actions[{index}]"
        handler = self._resolve(resource, handler_ref, "handler", self.handlers, f"{where}.handler")
        instances = [
            self._resolve(
                resource, ref, "instance", self.instances, f"{where}.instances[{position}]"
            )
            for position, ref in enumerate(instance_refs)
        ]
        if handler is None or None in instances:
            return None
        supported = ADAPTER_TEMPLATES.get(handler.adapter) if handler.compiled else None
        for position, instance in enumerate(instances):
            if supported is not None and instance.template not in supported:
                self.problem(
                    resource,
                    f"{where}.instances[{position}]",
                    f"adapter {handler.adapter!r} of handler {handler.name} does not support "
                    f"template {instance.template!r} (it supports {', '.join(sorted(supported))})",
                )
        return CompiledAction(handler, tuple(instances), name)

    @staticmethod
    def _outputs(spec: RuleSpec) -> set[str]:
        """The prefixes of action outputs (`<action name>.output.`) header values may read."""
        return {f"{action.name}.output." for action in spec.actions or [] if action.name}

    def _header_operations(
        self, resource: Resource, operations: Any, where: str, outputs: set[str]
    ) -> tuple[HeaderOperation, ...]:
        compiled: list[HeaderOperation] = []
        for index, operation in enumerate(operations or []):
            values = []
            for position, text in enumerate(operation.values or []):
                at = f"{where}[{index}].values[{position}]"
                try:
                    names = referenced_names(text)
                except ExpressionError as error:
                    self.problem(resource, at, str(error))
                    continue
                # Action outputs are STRING attributes for header values (out-of-process
                # templates declare their outputs, which Mixer does not model).
                extra = {
                    n: ValueType.STRING for n in names if any(n.startswith(p) for p in outputs)
                }
                vocabulary = {**self.vocabulary, **extra} if extra else None
                value = self._expression(resource, text, at, TEXT_TYPES, vocabulary)
                if value is not None:
                    values.append(value)
            compiled.append(
                HeaderOperation(operation.name, tuple(values), operation.operation or "REPLACE")
            )
        return tuple(compiled)

    # -- quotas -----------------------------------------------------------------------------

    def _quota_spec(self, resource: Resource) -> CompiledQuotaSpec:
        return compile_quota_spec(
            resource, self.vocabulary, lambda path, message: self.problem(resource, path, message)
        )


def _role(resource: Resource) -> str:
    """What a config.istio.io resource is to Mixer: handler, instance, rule, ... or its kind."""
    kind = resource.kind.kind
    if kind in LEGACY_ADAPTER_KINDS:
        return "handler"
    if kind in LEGACY_TEMPLATE_KINDS:
        return "instance"
    return kind


def _map_builder(entries: Mapping[str, Builder | None]) -> Builder:
    items = tuple((key, builder) for key, builder in entries.items() if builder is not None)
    return lambda bag: {key: builder(bag) for key, builder in items}
