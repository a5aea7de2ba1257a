"""Turning a checked expression into nested Python closures, once, at config time.

Evaluating then costs a few closure calls per request and never walks the tree again. Each
node becomes a function of the bag; attributes and map lookups also get an "optional" form
returning None when absent, which is all the `|` operator needs: `a | b` is `a` when present,
else `b` (like Istio, only absence falls through; a failing function call is an error).
An absent attribute outside `|` is an EvaluationError naming it; an absent key of a present
map reads as "" (Istio 1.4's behaviour), so `source.labels["app"] == "x"` is just false.

Work that does not depend on the request is done here: literals and calls of pure builtins on
literals (`ip("10.0.0.1")`, `duration("5s")`) are computed once, their errors reported as
TypeCheckError at compile time; constant regex and glob patterns are prepared once.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

from meshconfig.policy.attributes import ABSENT_MAP, Attributes, ValueType
from meshconfig.policy.expr.checker import CONDITIONALS, Checked
from meshconfig.policy.expr.errors import EvaluationError, TypeCheckError
from meshconfig.policy.expr.functions import EQUALITY, glob_match, regex, to_duration, utc
from meshconfig.policy.expr.nodes import Attribute, Binary, Call, Index, Literal, Node, Unary

Evaluator = Callable[[Attributes], Any]


class _NotConstant:
    pass


_NOT_CONSTANT: Final = _NotConstant()
_ORDERINGS: Final = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def compile_checked(checked: Checked, text: str) -> Evaluator:
    """The evaluator of a type-checked expression."""
    return _Compiler(checked, text).value(checked.root)


def _constant_evaluator(value: Any) -> Evaluator:
    return lambda bag: value


class _Compiler:
    def __init__(self, checked: Checked, text: str) -> None:
        self.types = checked.types
        self.overloads = checked.overloads
        self.text = text

    def absent(self, name: str, node: Node) -> EvaluationError:
        return EvaluationError(
            f"attribute {name!r} is absent (give a default with '|')", self.text, node.offset
        )

    # -- constants ---------------------------------------------------------------------------

    def constant(self, node: Node) -> Any:
        """The value of `node` if it does not depend on the request, else _NOT_CONSTANT."""
        if isinstance(node, Literal):
            if self.types[node] is ValueType.DURATION:
                return to_duration(str(node.value))
            return node.value
        if isinstance(node, Call) and node in self.overloads:
            args = [self.constant(arg) for arg in _arguments(node)]
            if any(arg is _NOT_CONSTANT for arg in args):
                return _NOT_CONSTANT
            try:
                return self.overloads[node].impl(*args)
            except ValueError as error:
                raise TypeCheckError(str(error), self.text, node.offset) from None
        return _NOT_CONSTANT

    # -- the two forms -----------------------------------------------------------------------

    def value(self, node: Node) -> Evaluator:
        """Evaluates `node`; EvaluationError if it needs an absent attribute."""
        constant = self.constant(node)
        if constant is not _NOT_CONSTANT:
            return _constant_evaluator(constant)
        match node:
            case Attribute(name=name):
                return self._attribute(node, name)
            case Index():
                return self._index(node, optional=False)
            case Binary(op="|"):
                return self._default(node, optional=False)
            case Binary():
                return self._binary(node)
            case Unary(op="!"):
                operand = self.value(node.operand)
                return lambda bag: not operand(bag)
            case Unary():
                negated = self.value(node.operand)
                return lambda bag: -negated(bag)
            case Call():
                return self._call(node)
        raise TypeCheckError(f"cannot compile {type(node).__name__}", self.text, node.offset)

    def optional(self, node: Node) -> Evaluator:
        """Like `value`, but None instead of an error when an attribute (or map key) is absent."""
        match node:
            case Attribute(name=name):
                return lambda bag: bag.lookup(name)
            case Index():
                return self._index(node, optional=True)
            case Binary(op="|"):
                return self._default(node, optional=True)
        return self.value(node)

    # -- nodes -------------------------------------------------------------------------------

    def _attribute(self, node: Node, name: str) -> Evaluator:
        def attribute(bag: Attributes) -> Any:
            found = bag.lookup(name)
            if found is None:
                raise self.absent(name, node)
            return found

        return attribute

    def _index(self, node: Index, optional: bool) -> Evaluator:
        key_constant = self.constant(node.key)
        key = self.value(node.key)
        if isinstance(node.target, Attribute):
            return self._attribute_key(node.target, node.target.name, key_constant, key, optional)
        if optional:
            target_or_none = self.optional(node.target)

            def optional_key(bag: Attributes) -> Any:
                found = target_or_none(bag)
                return None if found is None else found.get(key(bag))

            return optional_key
        target = self.value(node.target)
        return lambda bag: target(bag).get(key(bag), "")

    def _attribute_key(
        self, node: Node, name: str, constant: Any, key: Evaluator, optional: bool
    ) -> Evaluator:
        """`attribute[key]`, read through `lookup_key` so recording sees the key."""
        if optional:
            if constant is not _NOT_CONSTANT:

                def optional_constant_key(bag: Attributes) -> Any:
                    found = bag.lookup_key(name, constant)
                    return None if found is ABSENT_MAP else found

                return optional_constant_key

            def optional_computed_key(bag: Attributes) -> Any:
                found = bag.lookup_key(name, key(bag))
                return None if found is ABSENT_MAP else found

            return optional_computed_key

        def required(found: Any) -> Any:
            if found is ABSENT_MAP:
                raise self.absent(name, node)
            return ""  # a present map without the key

        if constant is not _NOT_CONSTANT:

            def constant_key(bag: Attributes) -> Any:
                found = bag.lookup_key(name, constant)
                return found if found.__class__ is str else required(found)

            return constant_key

        def computed_key(bag: Attributes) -> Any:
            found = bag.lookup_key(name, key(bag))
            return found if found.__class__ is str else required(found)

        return computed_key

    def _default(self, node: Binary, optional: bool) -> Evaluator:
        first = self.optional(node.left)
        second = self.optional(node.right) if optional else self.value(node.right)

        def default(bag: Attributes) -> Any:
            found = first(bag)
            return second(bag) if found is None else found

        return default

    def _binary(self, node: Binary) -> Evaluator:
        left, right = self.value(node.left), self.value(node.right)
        operand_type = self.types[node.left]
        op = node.op
        if op == "&&":
            return lambda bag: left(bag) and right(bag)
        if op == "||":
            return lambda bag: left(bag) or right(bag)
        if op in ("==", "!="):
            equal = self._equality(node, operand_type, left, right)
            if op == "!=":
                return lambda bag: not equal(bag)
            return equal
        if op == "+":
            return lambda bag: left(bag) + right(bag)
        order = _ORDERINGS[op]
        if operand_type is ValueType.TIMESTAMP:
            return lambda bag: order(utc(left(bag)), utc(right(bag)))
        return lambda bag: order(left(bag), right(bag))

    def _equality(
        self, node: Binary, operand_type: ValueType, left: Evaluator, right: Evaluator
    ) -> Evaluator:
        typed = EQUALITY.get(operand_type)
        if typed is not None:
            return self._guarded(node, lambda bag: typed(left(bag), right(bag)))
        if operand_type is ValueType.TIMESTAMP:
            return lambda bag: utc(left(bag)) == utc(right(bag))
        constant = self.constant(node.right)
        if constant is _NOT_CONSTANT:
            return lambda bag: left(bag) == right(bag)
        target = node.left
        if isinstance(target, Index) and isinstance(target.target, Attribute):
            key = self.constant(target.key)
            if key is not _NOT_CONSTANT:
                return self._key_equals(target.target, target.target.name, key, constant)
        return lambda bag: left(bag) == constant

    def _key_equals(self, node: Node, name: str, key: str, constant: str) -> Evaluator:
        """`attribute["key"] == "value"`, the commonest rule clause, in one closure."""

        def key_equals(bag: Attributes) -> bool:
            found = bag.lookup_key(name, key)
            if found.__class__ is str:
                return found == constant
            if found is ABSENT_MAP:
                raise self.absent(name, node)
            return constant == ""

        return key_equals

    def _guarded(self, node: Node, evaluator: Evaluator) -> Evaluator:
        """`evaluator`, its ValueErrors (bad arguments) turned into EvaluationErrors at `node`."""
        text = self.text

        def guarded(bag: Attributes) -> Any:
            try:
                return evaluator(bag)
            except ValueError as error:
                if isinstance(error, EvaluationError):
                    raise
                raise EvaluationError(str(error), text, node.offset) from None

        return guarded

    def _call(self, node: Call) -> Evaluator:
        if node.name in CONDITIONALS and node.target is None:
            condition, then, otherwise = (self.value(arg) for arg in node.args)
            return lambda bag: then(bag) if condition(bag) else otherwise(bag)
        impl = self.overloads[node].impl
        args = _arguments(node)
        constants = [self.constant(arg) for arg in args]
        evaluators = [self.value(arg) for arg in args]
        special = self._prepared(node, constants, evaluators)
        if special is not None:
            return special
        if len(evaluators) == 1:
            (only,) = evaluators
            return self._guarded(node, lambda bag: impl(only(bag)))
        if len(evaluators) == 2:
            first, second = evaluators
            return self._guarded(node, lambda bag: impl(first(bag), second(bag)))
        return self._guarded(node, lambda bag: impl(*(arg(bag) for arg in evaluators)))

    def _prepared(
        self, node: Call, constants: list[Any], evaluators: list[Evaluator]
    ) -> Evaluator | None:
        """Calls whose constant pattern or affix is prepared once: matches, match, startsWith..."""
        if len(evaluators) != 2 or constants[0 if node.name == "matches" else 1] is _NOT_CONSTANT:
            return None
        if node.name == "matches":
            try:
                search = regex(constants[0]).search
            except ValueError as error:
                raise TypeCheckError(str(error), self.text, node.offset) from None
            subject = evaluators[1]
            return lambda bag: search(subject(bag)) is not None
        text, affix = evaluators[0], constants[1]
        if node.name == "startsWith":
            return lambda bag: text(bag).startswith(affix)
        if node.name == "endsWith":
            return lambda bag: text(bag).endswith(affix)
        if node.name == "match":
            return lambda bag: glob_match(text(bag), affix)
        return None


def _arguments(node: Call) -> tuple[Node, ...]:
    return (node.target, *node.args) if node.target is not None else node.args
